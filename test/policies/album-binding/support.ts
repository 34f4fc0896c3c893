import { join } from 'node:path'
import { request } from 'undici'
import { startFakeImmich, type FakeImmich } from '../../fake-immich/server.js'
import { installLibrary, type FakeLibrary, type LibraryAlbum } from '../../fake-immich/library.js'
import { startStack, type GatewayOverrides, type Stack } from '../../support/stack.js'
import { client, tempDir, writeKeys } from '../api-key-auth/support.js'

/** The Immich user behind the fake's `fake-user-key` (what the test clients' keys inject). */
export const USER = 'u-user'

export interface World {
  immich: FakeImmich
  library: FakeLibrary
  /**
   * The frame's album: six photos, one a live photo with its hidden motion part; the fourth is in a
   * stack whose primary asset is outside the album, the fifth is the primary of its own stack.
   */
  hallway: LibraryAlbum
  /** A second album of the same user, with one photo of the hallway too. */
  kitchen: LibraryAlbum
  /** The rest of the user's library. */
  outside: string[]
  /** The hidden motion part of the live photo in the hallway album. */
  motion: string
  keysFile: string
  /** Gateway keys: bound to the hallway; bound to hallway + kitchen; not bound. */
  keys: { frame: string; twoAlbums: string; unbound: string }
}

/** A fake Immich with a small library, and a keys file with bound and unbound clients. */
export async function makeWorld(): Promise<World> {
  const immich = await startFakeImmich()
  const library = installLibrary(immich)
  const motion = library.addAsset('motion', USER, { type: 'VIDEO', visibility: 'hidden' }).id
  const inHallway = Array.from({ length: 6 }, (_, i) =>
    library.addAsset(`hall-${i}`, USER, {
      localDateTime: `2026-0${(i % 3) + 1}-1${i}T10:00:00.000Z`,
      ...(i === 0 ? { livePhotoVideoId: motion } : {}),
      ...(i === 5 ? { type: 'VIDEO' as const } : {}),
    })
  ).map((a) => a.id)
  const outside = Array.from(
    { length: 5 },
    (_, i) =>
      library.addAsset(`out-${i}`, USER, { localDateTime: `2025-0${i + 1}-01T10:00:00.000Z` }).id
  )
  // Two stacks: the fourth hallway photo's primary is outside the album; the fifth is its own primary.
  library.assets.get(inHallway[3]!)!.stack = {
    id: library.uuid('stack:outside'),
    primaryAssetId: outside[2]!,
    assetCount: 2,
  }
  library.assets.get(outside[2]!)!.stack = library.assets.get(inHallway[3]!)!.stack
  library.assets.get(inHallway[4]!)!.stack = {
    id: library.uuid('stack:inside'),
    primaryAssetId: inHallway[4]!,
    assetCount: 2,
  }
  const inKitchen = library.addAsset('kitchen-0', USER).id
  const hallway = library.addAlbum('Hallway', USER, inHallway)
  const kitchen = library.addAlbum('Kitchen', USER, [inKitchen, inHallway[1]!])
  library.addAlbum('Private', USER, outside.slice(0, 2))
  const dir = tempDir('igw-albums-')
  const keysFile = join(dir, 'keys.yaml')
  const frame = client({ name: 'frame', scopes: ['all'], albums: [hallway.id] })
  const twoAlbums = client({ name: 'frame2', scopes: ['all'], albums: [hallway.id, kitchen.id] })
  const unbound = client({ name: 'admin-script', scopes: ['all'] })
  writeKeys(keysFile, [frame.entry, twoAlbums.entry, unbound.entry])
  return {
    immich,
    library,
    hallway,
    kitchen,
    outside,
    motion,
    keysFile,
    keys: { frame: frame.key, twoAlbums: twoAlbums.key, unbound: unbound.key },
  }
}

export function gateway(
  world: World,
  albumBinding: Record<string, unknown> = {},
  extra: GatewayOverrides = {}
): Promise<Stack> {
  return startStack(
    {
      ...extra,
      policies: {
        'api-key-auth': { keysFile: world.keysFile },
        'album-binding': albumBinding,
        ...extra.policies,
      },
    },
    { immich: world.immich }
  )
}

export interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
  json: unknown
}

/** One call through the gateway with a gateway key. */
export async function call(
  base: string,
  key: string,
  method: string,
  path: string,
  body?: unknown
): Promise<Reply> {
  const res = await request(`${base}${path}`, {
    method: method as 'GET',
    headers: {
      'x-api-key': key,
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
    },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  const buf = Buffer.from(await res.body.arrayBuffer())
  const text = buf.toString('utf8')
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    json = undefined
  }
  return { status: res.statusCode, headers: res.headers, text, json }
}

/** Asset ids in an answer of any listing shape (search envelope, array, timeline columns). */
export function assetIdsIn(json: unknown): string[] {
  if (Array.isArray(json))
    return json.map((a) => (a as { id?: string }).id).filter((id): id is string => !!id)
  const o = json as {
    assets?: { items?: { id: string }[] }
    id?: unknown
  }
  if (o?.assets?.items) return o.assets.items.map((a) => a.id)
  if (Array.isArray(o?.id)) return o.id as string[]
  return []
}
