/**
 * Album-bound keys end to end: a real gateway in front of the fake Immich with a small library
 * (test/fake-immich/library.ts), undici as the client.
 */
import { randomBytes } from 'node:crypto'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { packageFile } from '../../../src/paths.js'
import { loadRouteTable } from '../../../src/routing/route-table.js'
import { treatmentOf } from '../../../policies/album-binding/index.js'
import { cacheKey } from '../../../policies/thumbnail-cache/key.js'
import { albumBinding } from '../../../src/auth/keys-file.js'
import type { Stack } from '../../support/stack.js'
import { rawGet } from '../api-key-auth/support.js'
import { assetIdsIn, call, gateway, makeWorld, type World } from './support.js'

let world: World
let stack: Stack
const extra: Stack[] = []

beforeAll(async () => {
  world = await makeWorld()
  stack = await gateway(world)
})
afterEach(async () => {
  for (const s of extra.splice(0)) await s.close()
})
afterAll(async () => {
  await stack?.close()
  await world?.immich.close()
})

const sorted = (ids: Iterable<string>) => [...ids].sort()
const hallway = () => sorted(world.hallway.assetIds)

describe('constrained routes: a bound key sees exactly its album', () => {
  it('search/metadata without albumIds: the album filter is forced', async () => {
    const r = await call(stack.url, world.keys.frame, 'POST', '/api/search/metadata', {
      size: 1000,
    })
    expect(r.status).toBe(200)
    expect(sorted(assetIdsIn(r.json))).toEqual(hallway())
    const sent = world.immich.requestsTo('/api/search/metadata').at(-1)!
    expect(JSON.parse(sent.body.toString()).albumIds).toEqual([world.hallway.id])
    // The same key unbound (same Immich user) sees the whole library.
    const all = await call(stack.url, world.keys.unbound, 'POST', '/api/search/metadata', {
      size: 1000,
    })
    expect(assetIdsIn(all.json).length).toBeGreaterThan(world.hallway.assetIds.size)
  })

  it('search/metadata paged, with its own filters kept', async () => {
    const seen: string[] = []
    for (let page = 1; page < 10; page++) {
      const r = await call(stack.url, world.keys.frame, 'POST', '/api/search/metadata', {
        page,
        size: 2,
        type: 'IMAGE',
      })
      seen.push(...assetIdsIn(r.json))
      if ((r.json as { assets: { nextPage: string | null } }).assets.nextPage === null) break
    }
    const images = hallway().filter((id) => world.library.assets.get(id)!.type === 'IMAGE')
    expect(sorted(seen)).toEqual(images)
  })

  it('search/metadata naming the bound album works; naming another album finds nothing', async () => {
    const own = await call(stack.url, world.keys.frame, 'POST', '/api/search/metadata', {
      albumIds: [world.hallway.id.toUpperCase()],
    })
    expect(sorted(assetIdsIn(own.json))).toEqual(hallway())
    const before = world.immich.requestsTo('/api/search/metadata').length
    const other = await call(stack.url, world.keys.frame, 'POST', '/api/search/metadata', {
      albumIds: [world.kitchen.id],
    })
    expect(other.status).toBe(200)
    expect(assetIdsIn(other.json)).toEqual([])
    expect((other.json as { assets: { total: number } }).assets.total).toBe(0)
    expect(world.immich.requestsTo('/api/search/metadata').length).toBe(before)
  })

  it('search/random returns only album assets', async () => {
    const seen = new Set<string>()
    for (let i = 0; i < 5; i++) {
      const r = await call(stack.url, world.keys.frame, 'POST', '/api/search/random', { size: 3 })
      expect(r.status).toBe(200)
      for (const id of assetIdsIn(r.json)) seen.add(id)
    }
    for (const id of seen) expect(world.hallway.assetIds.has(id)).toBe(true)
    expect(seen.size).toBeGreaterThan(2)
  })

  it('search/smart and search/statistics are forced too', async () => {
    const smart = await call(stack.url, world.keys.frame, 'POST', '/api/search/smart', {
      query: 'beach',
    })
    expect(sorted(assetIdsIn(smart.json))).toEqual(hallway())
    const stats = await call(stack.url, world.keys.frame, 'POST', '/api/search/statistics', {})
    expect(stats.json).toEqual({ total: world.hallway.assetIds.size })
    const outsideStats = await call(stack.url, world.keys.frame, 'POST', '/api/search/statistics', {
      albumIds: [world.hallway.id, world.kitchen.id],
    })
    expect(outsideStats.json).toEqual({ total: 0 })
  })

  it('smart search "like this asset" needs an asset of the album', async () => {
    const outside = await call(stack.url, world.keys.frame, 'POST', '/api/search/smart', {
      queryAssetId: world.outside[0],
    })
    expect(outside.status).toBe(404)
    const inside = await call(stack.url, world.keys.frame, 'POST', '/api/search/smart', {
      queryAssetId: [...world.hallway.assetIds][2],
    })
    expect(inside.status).toBe(200)
  })

  it('timeline buckets and bucket get albumId forced; another album is refused as Immich does', async () => {
    const buckets = await call(stack.url, world.keys.frame, 'GET', '/api/timeline/buckets')
    expect(buckets.status).toBe(200)
    const list = buckets.json as { timeBucket: string; count: number }[]
    expect(list.reduce((n, b) => n + b.count, 0)).toBe(world.hallway.assetIds.size)
    const seen: string[] = []
    for (const b of list) {
      const r = await call(
        stack.url,
        world.keys.frame,
        'GET',
        `/api/timeline/bucket?timeBucket=${b.timeBucket}&albumid=${world.kitchen.id}`
      )
      expect(r.status).toBe(200)
      seen.push(...assetIdsIn(r.json))
    }
    expect(sorted(seen)).toEqual(hallway())
    const other = await call(
      stack.url,
      world.keys.frame,
      'GET',
      `/api/timeline/buckets?albumId=${world.kitchen.id}`
    )
    expect(other.status).toBe(400)
    expect((other.json as { message: string }).message).toBe('Not found or no album.read access')
  })

  it('a key bound to two albums names one in a search; a random search draws from both', async () => {
    const ambiguous = await call(
      stack.url,
      world.keys.twoAlbums,
      'POST',
      '/api/search/metadata',
      {}
    )
    expect(ambiguous.status).toBe(400)
    const kitchen = await call(stack.url, world.keys.twoAlbums, 'POST', '/api/search/metadata', {
      albumIds: [world.kitchen.id],
    })
    expect(sorted(assetIdsIn(kitchen.json))).toEqual(sorted(world.kitchen.assetIds))
    const union = new Set([...world.hallway.assetIds, ...world.kitchen.assetIds])
    const seen = new Set<string>()
    for (let i = 0; i < 30 && seen.size < union.size; i++) {
      const r = await call(stack.url, world.keys.twoAlbums, 'POST', '/api/search/random', {
        size: 10,
      })
      for (const id of assetIdsIn(r.json)) seen.add(id)
    }
    expect(sorted(seen)).toEqual(sorted(union))
  })
})

describe('albums', () => {
  it('GET /api/albums lists only the bound albums', async () => {
    const r = await call(stack.url, world.keys.frame, 'GET', '/api/albums')
    expect(r.status).toBe(200)
    expect((r.json as { id: string }[]).map((a) => a.id)).toEqual([world.hallway.id])
    expect(r.headers.etag).toBeUndefined()
    const two = await call(stack.url, world.keys.twoAlbums, 'GET', '/api/albums?shared=false')
    expect(sorted((two.json as { id: string }[]).map((a) => a.id))).toEqual(
      sorted([world.hallway.id, world.kitchen.id])
    )
    const containing = await call(
      stack.url,
      world.keys.frame,
      'GET',
      `/api/albums?assetId=${world.outside[0]}`
    )
    expect(containing.json).toEqual([])
    const unbound = await call(stack.url, world.keys.unbound, 'GET', '/api/albums')
    expect((unbound.json as unknown[]).length).toBe(3)
  })

  it("a bound album's detail works, another's is 404 without asking Immich", async () => {
    const own = await call(stack.url, world.keys.frame, 'GET', `/api/albums/${world.hallway.id}`)
    expect(own.status).toBe(200)
    expect((own.json as { assetCount: number }).assetCount).toBe(world.hallway.assetIds.size)
    const before = world.immich.requestsTo(`/api/albums/${world.kitchen.id}`).length
    const other = await call(stack.url, world.keys.frame, 'GET', `/api/albums/${world.kitchen.id}`)
    expect(other.status).toBe(404)
    expect(other.json).toMatchObject({ message: 'Album not found', statusCode: 404 })
    expect(world.immich.requestsTo(`/api/albums/${world.kitchen.id}`).length).toBe(before)
  })
})

/** Every by-id route of the table, with `{id}` the asset and the other parameters filled in. */
const routes = loadRouteTable(packageFile('config/immich-routes.json'))
const byId = routes
  .filter((r) => treatmentOf(r.method, r.path) === 'asset')
  .map((r) => ({
    method: r.method,
    path: (id: string) =>
      r.path
        .replace('{id}', id)
        .replace('{sessionId}', '5f0b8a9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b')
        .replace('{variantIndex}', '0')
        .replace('{filename}', 'seg0.ts')
        .replace('{key}', 'mobile-app'),
  }))

describe('by-id routes', () => {
  it('the table has the by-id routes the issue names', () => {
    const templates = byId.map((r) => r.path('{id}'))
    for (const t of [
      '/api/assets/{id}/thumbnail',
      '/api/assets/{id}/original',
      '/api/assets/{id}/video/playback',
      '/api/assets/{id}/video/stream/main.m3u8',
      '/api/assets/{id}',
      '/api/assets/{id}/ocr',
      '/api/assets/{id}/metadata',
    ])
      expect(templates).toContain(t)
    expect(treatmentOf('GET', '/api/faces')).toBe('asset-query')
  })

  it('every by-id route refuses an outside asset with 404, and Immich is never asked', async () => {
    for (const id of [world.outside[3]!, world.library.uuid('does-not-exist')]) {
      for (const r of byId) {
        const path = r.path(id)
        const reply = await call(stack.url, world.keys.frame, r.method, path)
        expect(reply.status, `${r.method} ${path}`).toBe(404)
        expect(reply.json).toMatchObject({ message: 'Asset not found', statusCode: 404 })
        expect(world.immich.requestsTo(path).length, path).toBe(0)
      }
      const faces = await call(stack.url, world.keys.frame, 'GET', `/api/faces?id=${id}`)
      expect(faces.status).toBe(404)
    }
    // Legacy paths are judged as the current route they are rewritten to.
    const legacy = await call(
      stack.url,
      world.keys.frame,
      'GET',
      `/api/asset/thumbnail/${world.outside[3]}`
    )
    expect(legacy.status).toBe(404)
  })

  it('the same routes serve an asset of the album (and the motion part of its live photo)', async () => {
    const id = [...world.hallway.assetIds][2]!
    for (const path of [
      `/api/assets/${id}/thumbnail?size=preview`,
      `/api/assets/${id}/original`,
      `/api/assets/${id}`,
      `/api/faces?id=${id}`,
      `/api/assets/${world.motion}/video/playback`,
      `/api/asset/thumbnail/${id}`,
    ]) {
      const r = await call(stack.url, world.keys.frame, 'GET', path)
      expect(r.status, path).toBe(200)
    }
  })
})

describe('no id of an outside asset in any answer', () => {
  it("an asset's own answer drops a stack whose primary asset is outside; its own stack stays", async () => {
    const [, , , stacked, primary] = [...world.hallway.assetIds]
    const outsidePrimary = world.outside[2]!
    const unbound = await call(stack.url, world.keys.unbound, 'GET', `/api/assets/${stacked}`)
    expect((unbound.json as { stack: { primaryAssetId: string } }).stack.primaryAssetId).toBe(
      outsidePrimary
    )
    for (const path of [
      `/api/assets/${stacked}`,
      `/api/asset/${stacked}`,
      `/api/asset/assetById/${stacked}`,
    ]) {
      const r = await call(stack.url, world.keys.frame, 'GET', path)
      expect(r.status, path).toBe(200)
      expect((r.json as { id: string }).id).toBe(stacked)
      expect((r.json as { stack?: unknown }).stack ?? null, path).toBeNull()
      expect(r.text).not.toContain(outsidePrimary)
      expect(r.headers.etag).toBeUndefined()
    }
    const own = await call(stack.url, world.keys.frame, 'GET', `/api/assets/${primary}`)
    expect(own.json).toMatchObject({ stack: { primaryAssetId: primary, assetCount: 2 } })
    // The live photo keeps its motion part: it is in the album too.
    const first = [...world.hallway.assetIds][0]!
    const withMotion = await call(stack.url, world.keys.frame, 'GET', `/api/assets/${first}`)
    expect((withMotion.json as { livePhotoVideoId: string }).livePhotoVideoId).toBe(world.motion)
  })

  it('an asset answer Immich sends not as JSON is refused (502), not passed on', async () => {
    const id = [...world.hallway.assetIds][1]!
    const remove = world.immich.setHandler('GET', `/api/assets/${id}`, (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"id": "truncat')
    })
    try {
      const r = await call(stack.url, world.keys.frame, 'GET', `/api/assets/${id}`)
      expect(r.status).toBe(502)
      expect(r.text).not.toContain('truncat')
      expect(r.json).toMatchObject({ statusCode: 502, correlationId: expect.any(String) })
    } finally {
      remove()
    }
  })

  it('every answer a frame key can get names only album assets and bound albums', async () => {
    const ids = [...world.hallway.assetIds]
    const forbidden = [
      ...world.outside,
      world.kitchen.id,
      ...[...world.library.albums.values()]
        .filter((a) => a.id !== world.hallway.id)
        .map((a) => a.id),
      ...[...world.kitchen.assetIds].filter((id) => !world.hallway.assetIds.has(id)),
    ]
    const calls: [string, string, unknown?][] = [
      ['GET', '/api/albums'],
      ['GET', `/api/albums/${world.hallway.id}`],
      ['POST', '/api/search/metadata', {}],
      ['POST', '/api/search/metadata', { withStacked: true, size: 1000 }],
      ['POST', '/api/search/random', { size: 50 }],
      ['POST', '/api/search/smart', { query: 'x' }],
      ['POST', '/api/search/statistics', {}],
      ['GET', '/api/timeline/buckets'],
      ...['2026-01-01', '2026-02-01', '2026-03-01'].map(
        (month) =>
          ['GET', `/api/timeline/bucket?timeBucket=${month}T00:00:00.000Z`] as [string, string]
      ),
      ...ids.flatMap((id) => [
        ['GET', `/api/assets/${id}`] as [string, string],
        ['GET', `/api/asset/${id}`] as [string, string],
        ['GET', `/api/faces?id=${id}`] as [string, string],
      ]),
    ]
    for (const [method, path, body] of calls) {
      const r = await call(stack.url, world.keys.frame, method, path, body)
      expect(r.status, `${method} ${path}`).toBe(200)
      for (const id of forbidden) expect(r.text, `${method} ${path}`).not.toContain(id)
    }
  })
})

describe('refused routes', () => {
  it('routes that would show outside assets answer 403', async () => {
    for (const [method, path] of [
      ['GET', '/api/people'],
      ['GET', '/api/memories'],
      ['GET', '/api/map/markers'],
      ['GET', '/api/duplicates'],
      ['GET', '/api/search/explore'],
      ['POST', '/api/download/archive'],
      ['PUT', `/api/assets/${[...world.hallway.assetIds][0]}`],
      ['GET', '/api/albums/statistics'],
    ] as const) {
      const r = await call(
        stack.url,
        world.keys.frame,
        method,
        path,
        method === 'GET' ? undefined : {}
      )
      expect(r.status, `${method} ${path}`).toBe(403)
      expect((r.json as { message: string }).message).toBe('album-bound keys cannot use this route')
    }
    const server = await call(stack.url, world.keys.frame, 'GET', '/api/server/version')
    expect(server.status).toBe(200)
  })
})

describe('membership changes', () => {
  it('a change made elsewhere is seen within the TTL', async () => {
    const s = await gateway(world, { ttlSeconds: 1 })
    extra.push(s)
    const newcomer = world.library.addAsset('late-arrival', 'u-user').id
    expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${newcomer}`)).status).toBe(404)
    world.hallway.assetIds.add(newcomer)
    try {
      expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${newcomer}`)).status).toBe(
        404
      )
      await new Promise((r) => setTimeout(r, 1100))
      expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${newcomer}`)).status).toBe(
        200
      )
    } finally {
      world.hallway.assetIds.delete(newcomer)
    }
  })

  it('a change made through the gateway is seen at once, by any client', async () => {
    const s = await gateway(world, { ttlSeconds: 3600 })
    extra.push(s)
    const id = world.outside[4]!
    expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}`)).status).toBe(404)
    // The bound key cannot add what it cannot see...
    const sneak = await call(
      s.url,
      world.keys.frame,
      'PUT',
      `/api/albums/${world.hallway.id}/assets`,
      {
        ids: [id],
      }
    )
    expect(sneak.status).toBe(404)
    expect(world.hallway.assetIds.has(id)).toBe(false)
    // ...another client can, and the bound key sees it on its next request.
    const add = await call(
      s.url,
      world.keys.unbound,
      'PUT',
      `/api/albums/${world.hallway.id}/assets`,
      {
        ids: [id],
      }
    )
    expect(add.status).toBe(200)
    expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}`)).status).toBe(200)
    // The bound key removes it from its own album: gone at once.
    const remove = await call(
      s.url,
      world.keys.frame,
      'DELETE',
      `/api/albums/${world.hallway.id}/assets`,
      { ids: [id] }
    )
    expect(remove.status).toBe(200)
    expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}`)).status).toBe(404)
  })

  it('memberships are cached: one album search serves many by-id requests', async () => {
    const s = await gateway(world)
    extra.push(s)
    const before = world.immich.requestsTo('/api/search/metadata').length
    for (const id of world.hallway.assetIds)
      expect(
        (await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}/thumbnail`)).status
      ).toBe(200)
    expect(world.immich.requestsTo('/api/search/metadata').length - before).toBe(1)
  })
})

describe('fail closed', () => {
  it('a membership Immich will not give refuses the request (503), never lets it through', async () => {
    const s = await gateway(world)
    extra.push(s)
    const id = [...world.hallway.assetIds][0]!
    const hits = world.immich.thumbnailHits(id)
    world.library.failSearch(500)
    try {
      const r = await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}/thumbnail`)
      expect(r.status).toBe(503)
      expect((r.json as { message: string }).message).toBe('Album membership unavailable')
      expect(world.immich.thumbnailHits(id)).toBe(hits)
    } finally {
      world.library.failSearch(null)
    }
    expect((await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}/thumbnail`)).status).toBe(
      200
    )
  })

  it('Immich unreachable → refused', async () => {
    const lone = await makeWorld()
    const s = await gateway(lone)
    await lone.immich.close()
    try {
      const id = [...lone.hallway.assetIds][0]!
      const r = await call(s.url, lone.keys.frame, 'GET', `/api/assets/${id}/thumbnail`)
      expect(r.status).toBe(503)
      const random = await call(s.url, lone.keys.twoAlbums, 'POST', '/api/search/random', {})
      expect(random.status).toBe(503)
    } finally {
      await s.close()
    }
  })
})

describe('the rest of the gateway, for bound keys', () => {
  it('the thumbnail cache serves a bound key, under a key of its own', async () => {
    const id = [...world.hallway.assetIds][3]!
    const path = `/api/assets/${id}/thumbnail?size=thumbnail`
    // Stored the second time it is asked for (minUses 2), served from memory the third.
    await call(stack.url, world.keys.frame, 'GET', path)
    await call(stack.url, world.keys.frame, 'GET', path)
    const third = await call(stack.url, world.keys.frame, 'GET', path)
    expect(third.status).toBe(200)
    expect(third.headers['x-cache']).toBe('HIT')
    const hits = world.immich.thumbnailHits(id)
    // The unbound key of the same Immich user does not share the bound key's entry.
    const unbound = await call(stack.url, world.keys.unbound, 'GET', path)
    expect(unbound.headers['x-cache']).toBe('MISS')
    expect(world.immich.thumbnailHits(id)).toBe(hits + 1)
    const binding = albumBinding([world.hallway.id])
    expect(cacheKey('a', id, 'u:x', 'size=thumbnail', binding.tag)).not.toBe(
      cacheKey('a', id, 'u:x', 'size=thumbnail')
    )
    expect(albumBinding([world.hallway.id.toUpperCase()]).tag).toBe(binding.tag)
  })

  it('rate limits count a bound key like any other', async () => {
    const s = await gateway(
      world,
      {},
      {
        policies: { 'rate-limit': { clients: { frame: { thumbnails: { points: 3 } } } } },
      }
    )
    extra.push(s)
    const id = [...world.hallway.assetIds][4]!
    const statuses: number[] = []
    for (let i = 0; i < 5; i++)
      statuses.push(
        (await call(s.url, world.keys.frame, 'GET', `/api/assets/${id}/thumbnail`)).status
      )
    expect(statuses).toEqual([200, 200, 200, 429, 429])
  })

  it('metrics and access logs label bound requests by client', async () => {
    await call(stack.url, world.keys.frame, 'GET', '/api/people')
    const text = await stack.gateway.deps.metrics.registry.metrics()
    expect(text).toMatch(/client="frame"/)
    const line = stack.logs.find((l) => l.includes('"client":"frame"') && l.includes('/api/people'))
    expect(line).toContain('ALBUM_BOUND_REFUSED')
  })

  it('the websocket is refused (its events tell of every asset of the user)', async () => {
    const upgrade = () =>
      rawGet(stack.url, 'GET', '/api/socket.io/?EIO=4&transport=websocket', {
        'x-api-key': world.keys.frame,
        upgrade: 'websocket',
        connection: 'Upgrade',
        'sec-websocket-key': randomBytes(16).toString('base64'),
        'sec-websocket-version': '13',
      })
    const before = world.immich.requests.filter((r) => r.upgrade).length
    const bound = await upgrade()
    expect(bound.status).toBe(403)
    expect(bound.body).toContain('album-bound keys cannot use this route')
    expect(world.immich.requests.filter((r) => r.upgrade).length).toBe(before)
  })
})
