// A photo library for the fake Immich: assets, albums and album membership, answered like Immich
// 3.1 does on the routes that list or search them (album list and detail, album asset changes,
// search metadata/random/smart/statistics with `albumIds`, timeline buckets). Installed on a running
// fake as handler overrides, so the built-in routes stay as they are for every other test; installed
// again after `fake.reset()`.
import { createHash } from 'node:crypto'
import type { IncomingMessage } from 'node:http'
import type { FakeImmich, HandlerContext } from './server.js'

export interface LibraryAsset {
  id: string
  ownerId: string
  type: 'IMAGE' | 'VIDEO'
  /** ISO date-time; the timeline groups by its month. */
  localDateTime: string
  visibility: 'timeline' | 'archive' | 'hidden' | 'locked'
  isFavorite: boolean
  livePhotoVideoId: string | null
  /** The stack the asset is in (Immich shows it in the asset's own answer, with its primary asset). */
  stack?: { id: string; primaryAssetId: string; assetCount: number } | null
}

export interface LibraryAlbum {
  id: string
  ownerId: string
  albumName: string
  assetIds: Set<string>
  /** Users the album is shared with (they may read it). */
  sharedWith: string[]
}

export interface FakeLibrary {
  assets: Map<string, LibraryAsset>
  albums: Map<string, LibraryAlbum>
  /** A UUID derived from `seed` (stable across runs). */
  uuid(seed: string): string
  addAsset(seed: string, ownerId: string, extra?: Partial<LibraryAsset>): LibraryAsset
  addAlbum(
    seed: string,
    ownerId: string,
    assetIds: string[],
    extra?: Partial<LibraryAlbum>
  ): LibraryAlbum
  /** Make the album searches answer this status (a broken or overloaded Immich); null → normal. */
  failSearch(status: number | null): void
  /** (Re)installs the handlers (after `fake.reset()`). */
  install(): void
}

const ts = '2026-11-22T11:31:31.389Z'
const NO_ACCESS_ALBUM = 'Not found or no album.read access'
const NO_ACCESS_ASSET = 'Not found or no asset.read access'

function uuid(seed: string): string {
  const h = createHash('sha1').update(seed).digest('hex')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
}

export function installLibrary(fake: FakeImmich): FakeLibrary {
  const assets = new Map<string, LibraryAsset>()
  const albums = new Map<string, LibraryAlbum>()
  let searchFailure: number | null = null

  const canReadAlbum = (album: LibraryAlbum, userId: string) =>
    album.ownerId === userId || album.sharedWith.includes(userId)

  /** What Immich's search sees for a user: own assets; with `albumIds`, the albums' assets (access checked). */
  function searchable(userId: string, body: Record<string, unknown>): LibraryAsset[] | string {
    const albumIds = Array.isArray(body.albumIds) ? (body.albumIds as string[]) : []
    let pool: LibraryAsset[]
    if (albumIds.length > 0) {
      const found = albumIds.map((id) => albums.get(id))
      if (found.some((a) => a === undefined || !canReadAlbum(a, userId))) return NO_ACCESS_ALBUM
      // Immich ANDs albumIds: an asset must be in every album named.
      pool = [...found[0]!.assetIds]
        .filter((id) => found.every((a) => a!.assetIds.has(id)))
        .map((id) => assets.get(id)!)
    } else {
      pool = [...assets.values()].filter((a) => a.ownerId === userId)
    }
    const visibility = body.visibility
    return pool.filter(
      (a) =>
        (visibility === undefined ? a.visibility !== 'locked' : a.visibility === visibility) &&
        (body.type === undefined || a.type === body.type) &&
        (body.isFavorite === undefined || a.isFavorite === body.isFavorite) &&
        (typeof body.id !== 'string' || a.id === body.id)
    )
  }

  function assetDto(a: LibraryAsset) {
    return {
      id: a.id,
      createdAt: ts,
      ownerId: a.ownerId,
      libraryId: null,
      type: a.type,
      originalPath: `/data/upload/${a.ownerId}/${a.id}.jpg`,
      originalFileName: `${a.id}.jpg`,
      originalMimeType: a.type === 'IMAGE' ? 'image/jpeg' : 'video/mp4',
      thumbhash: 'HwgCDYA0jNuEdUe3mmp+cPZ4CDjF',
      fileCreatedAt: a.localDateTime,
      fileModifiedAt: a.localDateTime,
      localDateTime: a.localDateTime,
      updatedAt: ts,
      isFavorite: a.isFavorite,
      isArchived: a.visibility === 'archive',
      isTrashed: false,
      visibility: a.visibility,
      duration: a.type === 'VIDEO' ? 3000 : null,
      livePhotoVideoId: a.livePhotoVideoId,
      people: [],
      checksum: createHash('sha1').update(a.id).digest('base64'),
      isOffline: false,
      hasMetadata: true,
      duplicateId: null,
      resized: true,
      width: 64,
      height: 48,
      isEdited: false,
    }
  }

  function albumDto(album: LibraryAlbum) {
    const inAlbum = [...album.assetIds].map((id) => assets.get(id)!)
    const dates = inAlbum.map((a) => a.localDateTime).sort()
    return {
      id: album.id,
      albumName: album.albumName,
      description: '',
      albumThumbnailAssetId: inAlbum[0]?.id ?? null,
      createdAt: ts,
      updatedAt: ts,
      shared: album.sharedWith.length > 0,
      hasSharedLink: false,
      assetCount: album.assetIds.size,
      albumUsers: [
        { user: { id: album.ownerId, name: album.ownerId }, role: 'owner' },
        ...album.sharedWith.map((id) => ({ user: { id, name: id }, role: 'editor' })),
      ],
      isActivityEnabled: true,
      order: 'desc',
      startDate: dates[0] ?? null,
      endDate: dates[dates.length - 1] ?? null,
      lastModifiedAssetTimestamp: null,
    }
  }

  async function jsonBody(ctx: HandlerContext): Promise<Record<string, unknown>> {
    const raw = await ctx.readBody()
    if (raw.length === 0) return {}
    const parsed = JSON.parse(raw.toString('utf8')) as unknown
    return parsed !== null && typeof parsed === 'object' ? (parsed as Record<string, unknown>) : {}
  }

  function authed(ctx: HandlerContext): string | undefined {
    const auth = ctx.auth()
    if (!auth.ok) {
      ctx.sendJson(auth.status, { message: auth.message })
      return undefined
    }
    return auth.user.id
  }

  function page(list: LibraryAsset[], body: Record<string, unknown>) {
    const size = typeof body.size === 'number' && body.size > 0 ? Math.min(body.size, 1000) : 250
    const number = typeof body.page === 'number' && body.page > 0 ? body.page : 1
    const items = list.slice((number - 1) * size, number * size).map(assetDto)
    return {
      albums: { total: 0, count: 0, items: [], facets: [] },
      assets: {
        total: items.length,
        count: items.length,
        items,
        facets: [],
        nextPage: number * size < list.length ? String(number + 1) : null,
      },
    }
  }

  const search =
    (answer: (list: LibraryAsset[], body: Record<string, unknown>) => unknown) =>
    async (_req: IncomingMessage, _res: unknown, ctx: HandlerContext) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const body = await jsonBody(ctx)
      if (searchFailure !== null) return ctx.sendJson(searchFailure, { message: 'Search failed' })
      const list = searchable(userId, body)
      if (typeof list === 'string') return ctx.sendJson(400, { message: list })
      list.sort((a, b) => (a.localDateTime < b.localDateTime ? 1 : -1))
      ctx.sendJson(200, answer(list, body))
    }

  function timelineAssets(ctx: HandlerContext, userId: string): LibraryAsset[] | undefined {
    const albumId = ctx.url.searchParams.get('albumId')
    if (albumId !== null) {
      const album = albums.get(albumId)
      if (album === undefined || !canReadAlbum(album, userId)) {
        ctx.sendJson(400, { message: NO_ACCESS_ALBUM })
        return undefined
      }
      return [...album.assetIds]
        .map((id) => assets.get(id)!)
        .filter((a) => a.visibility !== 'hidden')
    }
    return [...assets.values()].filter((a) => a.ownerId === userId && a.visibility === 'timeline')
  }

  const bucketOf = (a: LibraryAsset) => `${a.localDateTime.slice(0, 7)}-01`

  function install(): void {
    fake.setHandler('GET', '/api/albums', (_req, _res, ctx) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const q = ctx.url.searchParams
      const assetId = q.get('assetId')
      const shared = q.get('isShared') ?? q.get('shared')
      const list = [...albums.values()].filter(
        (a) =>
          canReadAlbum(a, userId) &&
          (assetId === null || a.assetIds.has(assetId)) &&
          (shared === null || (shared === 'true') === a.sharedWith.length > 0)
      )
      ctx.sendJson(200, list.map(albumDto))
    })
    fake.setHandler('GET', /^\/api\/albums\/([^/]+)$/, (_req, _res, ctx) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const album = albums.get(decodeURIComponent(ctx.match[1]!))
      if (album === undefined || !canReadAlbum(album, userId))
        return ctx.sendJson(400, { message: NO_ACCESS_ALBUM })
      ctx.sendJson(200, albumDto(album))
    })
    const change = (add: boolean) => async (_req: unknown, _res: unknown, ctx: HandlerContext) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const body = await jsonBody(ctx)
      const album = albums.get(decodeURIComponent(ctx.match[1]!))
      if (album === undefined || !canReadAlbum(album, userId))
        return ctx.sendJson(400, { message: NO_ACCESS_ALBUM })
      const ids = Array.isArray(body.ids) ? (body.ids as string[]) : []
      ctx.sendJson(
        200,
        ids.map((id) => {
          const asset = assets.get(id)
          if (add) {
            if (asset === undefined || asset.ownerId !== userId)
              return { id, success: false, error: 'no_permission' }
            if (album.assetIds.has(id)) return { id, success: false, error: 'duplicate' }
            album.assetIds.add(id)
            return { id, success: true }
          }
          if (!album.assetIds.delete(id)) return { id, success: false, error: 'not_found' }
          return { id, success: true }
        })
      )
    }
    fake.setHandler('PUT', /^\/api\/albums\/([^/]+)\/assets$/, change(true))
    fake.setHandler('DELETE', /^\/api\/albums\/([^/]+)\/assets$/, change(false))
    fake.setHandler(
      'POST',
      '/api/search/metadata',
      search((list, body) => page(list, body))
    )
    fake.setHandler(
      'POST',
      '/api/search/smart',
      search((list, body) => page(list, body))
    )
    fake.setHandler(
      'POST',
      '/api/search/random',
      search((list, body) => {
        const size = typeof body.size === 'number' && body.size > 0 ? body.size : 250
        const shuffled = [...list].sort(() => Math.random() - 0.5)
        return shuffled.slice(0, size).map(assetDto)
      })
    )
    fake.setHandler(
      'POST',
      '/api/search/statistics',
      search((list) => ({ total: list.length }))
    )
    fake.setHandler('GET', '/api/timeline/buckets', (_req, _res, ctx) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const list = timelineAssets(ctx, userId)
      if (list === undefined) return
      const counts = new Map<string, number>()
      for (const a of list) counts.set(bucketOf(a), (counts.get(bucketOf(a)) ?? 0) + 1)
      ctx.sendJson(
        200,
        [...counts]
          .sort()
          .reverse()
          .map(([timeBucket, count]) => ({ timeBucket, count }))
      )
    })
    fake.setHandler('GET', '/api/timeline/bucket', (_req, _res, ctx) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const list = timelineAssets(ctx, userId)
      if (list === undefined) return
      const bucket = ctx.url.searchParams.get('timeBucket') ?? ''
      const inBucket = list.filter((a) => bucketOf(a) === bucket.slice(0, 10))
      ctx.sendJson(200, {
        id: inBucket.map((a) => a.id),
        ownerId: inBucket.map((a) => a.ownerId),
        isImage: inBucket.map((a) => a.type === 'IMAGE'),
        isFavorite: inBucket.map((a) => a.isFavorite),
        ratio: inBucket.map(() => 64 / 48),
        livePhotoVideoId: inBucket.map((a) => a.livePhotoVideoId),
        localDateTime: inBucket.map((a) => a.localDateTime),
        visibility: inBucket.map((a) => a.visibility),
      })
    })
    fake.setHandler('GET', /^\/api\/assets\/([^/]+)$/, (_req, _res, ctx) => {
      const userId = authed(ctx)
      if (userId === undefined) return
      const asset = assets.get(decodeURIComponent(ctx.match[1]!))
      const visible =
        asset !== undefined &&
        (asset.ownerId === userId ||
          [...albums.values()].some((a) => a.assetIds.has(asset.id) && canReadAlbum(a, userId)))
      if (!visible) return ctx.sendJson(400, { message: NO_ACCESS_ASSET })
      // Only the asset's own answer carries its stack (Immich maps it with `withStack`).
      ctx.sendJson(200, { ...assetDto(asset), stack: asset.stack ?? null })
    })
  }

  install()
  return {
    assets,
    albums,
    uuid,
    addAsset(seed, ownerId, extra = {}) {
      const asset: LibraryAsset = {
        id: uuid(`asset:${seed}`),
        ownerId,
        type: 'IMAGE',
        localDateTime: '2026-11-22T11:31:30.845Z',
        visibility: 'timeline',
        isFavorite: false,
        livePhotoVideoId: null,
        ...extra,
      }
      assets.set(asset.id, asset)
      return asset
    },
    addAlbum(seed, ownerId, assetIds, extra = {}) {
      const album: LibraryAlbum = {
        id: uuid(`album:${seed}`),
        ownerId,
        albumName: seed,
        assetIds: new Set(assetIds),
        sharedWith: [],
        ...extra,
      }
      albums.set(album.id, album)
      return album
    },
    failSearch(status) {
      searchFailure = status
    },
    install,
  }
}
