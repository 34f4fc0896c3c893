/**
 * The thumbnail cache end to end: a real fake Immich that answers each identity with its own bytes,
 * a real gateway (two, sharing Redis, for the shared tier), undici as the client.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import {
  expectedJpeg,
  expectedThumbnail,
  startFakeImmich,
  type FakeImmich,
} from '../fake-immich/server.js'
import { redisOrSkip, uniquePrefix, waitFor } from '../policies/rate-limit/support.js'
import { startStack, type Stack } from '../support/stack.js'

const sharedRedis = await redisOrSkip('thumbnail cache (Redis tier)')

const ADMIN = { 'x-api-key': 'fake-admin-key' }
const USER = { 'x-api-key': 'fake-user-key' }
const ASSET = '5f0b8a9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b'
const thumb = (id = ASSET, query = '?size=thumbnail') => `/api/assets/${id}/thumbnail${query}`

interface Answer {
  status: number
  headers: Record<string, string>
  body: Buffer
}

async function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method: 'GET' | 'HEAD' = 'GET'
): Promise<Answer> {
  const res = await request(`${base}${path}`, { method, headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  return { status: res.statusCode, headers: res.headers as Record<string, string>, body }
}

/** Asks twice: with the default minUses 2, the second answer is the one stored. Returns it. */
async function warm(base: string, path: string, headers: Record<string, string>): Promise<Answer> {
  const first = await get(base, path, headers)
  expect(first.headers['x-cache']).toBe('MISS')
  return get(base, path, headers)
}

async function send(
  base: string,
  method: string,
  path: string,
  json: unknown,
  headers: Record<string, string> = ADMIN
): Promise<number> {
  const res = await request(`${base}${path}`, {
    method: method as 'PUT',
    headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(json),
  })
  await res.body.dump()
  return res.statusCode
}

async function metric(stack: Stack, name: string, labels = ''): Promise<number> {
  const text = await stack.gateway.deps.metrics.registry.metrics()
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `))
  return line === undefined ? 0 : Number(line.split(' ').pop())
}

const stacks: Stack[] = []
let immich: FakeImmich | undefined
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close()
  await immich?.close()
  immich = undefined
})

async function stack(
  policies: Record<string, unknown> = {},
  extra: Record<string, unknown> = {}
): Promise<Stack> {
  immich ??= await startFakeImmich()
  const s = await startStack({ ...extra, policies }, { immich })
  stacks.push(s)
  return s
}

describe('identities never share entries', () => {
  it('two API keys asking for one asset id each get their own bytes, every time', async () => {
    const s = await stack()
    const admin = expectedThumbnail(ASSET, 'thumbnail', 'u-admin')
    const user = expectedThumbnail(ASSET, 'thumbnail', 'u-user')
    expect(admin.equals(user)).toBe(false)
    const seen: string[] = []
    for (let i = 0; i < 3; i++) {
      const a = await get(s.url, thumb(), ADMIN)
      const u = await get(s.url, thumb(), USER)
      expect(a.status).toBe(200)
      expect(a.body.equals(admin)).toBe(true)
      expect(u.body.equals(user)).toBe(true)
      seen.push(a.headers['x-cache']!, u.headers['x-cache']!)
    }
    // Stored on the second request (minUses 2), then served from memory, each identity its own.
    expect(seen).toEqual(['MISS', 'MISS', 'MISS', 'MISS', 'HIT', 'HIT'])
    expect(immich!.thumbnailHits(ASSET)).toBe(4)
  })

  it('native session, API key and shared link are three identities', async () => {
    const s = await stack()
    const viaShare = await warm(s.url, thumb(ASSET, '?size=thumbnail&key=fake-share-key'), {})
    const viaSession = await warm(s.url, thumb(), { 'x-immich-user-token': 'fake-session-token' })
    const viaKey = await warm(s.url, thumb(), USER)
    expect(viaShare.headers['x-cache']).toBe('MISS')
    expect(viaSession.headers['x-cache']).toBe('MISS')
    expect(viaKey.headers['x-cache']).toBe('MISS')
    expect(
      viaShare.body.equals(expectedThumbnail(ASSET, 'thumbnail', 'share:fake-share-key'))
    ).toBe(true)
    expect(viaSession.body.equals(expectedThumbnail(ASSET, 'thumbnail', 'u-admin'))).toBe(true)
    expect(
      (await get(s.url, thumb(ASSET, '?key=fake-share-key&size=thumbnail'))).headers['x-cache']
    ).toBe('HIT')
    expect(
      (await get(s.url, thumb(), { 'x-immich-user-token': 'fake-session-token' })).headers[
        'x-cache'
      ]
    ).toBe('HIT')
    expect(immich!.thumbnailHits(ASSET)).toBe(6)
  })

  it('a password-protected shared link: the password cookie is part of the identity', async () => {
    const s = await stack()
    const path = thumb(ASSET, '?size=thumbnail&key=fake-share-key-protected')
    const unlocked = { cookie: 'immich_shared_link_token=fake-shared-link-token' }
    await warm(s.url, path, unlocked)
    expect((await get(s.url, path, unlocked)).headers['x-cache']).toBe('HIT')
    // The bare link, without the password: Immich's answer, never the cached image.
    const bare = await get(s.url, path)
    expect(bare.status).toBe(401)
    expect(bare.headers['x-cache']).toBe('MISS')
    const wrong = await get(s.url, path, { cookie: 'immich_shared_link_token=guess' })
    expect(wrong.status).toBe(401)
  })

  it.runIf(sharedRedis)(
    'through the Redis tier: a second gateway with an empty memory serves each identity its own bytes',
    async () => {
      const keyPrefix = `${uniquePrefix('cache')}:`
      const policies = { 'thumbnail-cache': { redis: { keyPrefix } } }
      const a = await stack(policies, { redis: { url: sharedRedis } })
      const b = await stack(policies, { redis: { url: sharedRedis } })
      await waitFor(
        () => a.gateway.deps.redis!.status === 'ready' && b.gateway.deps.redis!.status === 'ready',
        5000,
        'redis ready'
      )
      const admin = expectedThumbnail(ASSET, 'thumbnail', 'u-admin')
      const user = expectedThumbnail(ASSET, 'thumbnail', 'u-user')
      expect((await warm(a.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
      expect((await warm(a.url, thumb(), USER)).headers['x-cache']).toBe('MISS')
      await waitFor(
        async () => (await a.gateway.deps.redis!.keys(`${keyPrefix}e:*`)).length === 2,
        2000,
        'entries in Redis'
      )
      // B has never seen either: both come from Redis, each to its own identity, in either order.
      const u = await get(b.url, thumb(), USER)
      const ad = await get(b.url, thumb(), ADMIN)
      expect(u.headers['x-cache']).toBe('HIT')
      expect(ad.headers['x-cache']).toBe('HIT')
      expect(u.body.equals(user)).toBe(true)
      expect(ad.body.equals(admin)).toBe(true)
      expect(u.headers['content-type']).toBe('image/webp')
      expect(u.headers.etag).toMatch(/^W\//)
      expect(immich!.thumbnailHits(ASSET)).toBe(4)
      // No credential and no raw query in any Redis key name.
      const names = await a.gateway.deps.redis!.keys(`${keyPrefix}*`)
      expect(names.join(' ')).not.toMatch(/fake-|size=/)
    }
  )
})

describe('legacy aliases', () => {
  it('an old thumbnail path meets the same entry as its modern twin, with its own Deprecation headers', async () => {
    const s = await stack()
    await warm(s.url, thumb(), ADMIN)
    const legacy = await get(s.url, `/api/asset/thumbnail/${ASSET}?format=WEBP`, ADMIN)
    expect(legacy.status).toBe(200)
    expect(legacy.headers['x-cache']).toBe('HIT')
    expect(legacy.headers.deprecation).toBeTruthy()
    expect(legacy.body.equals(expectedThumbnail(ASSET, 'thumbnail', 'u-admin'))).toBe(true)
    expect(immich!.thumbnailHits(ASSET)).toBe(2)
  })
})

describe('admission', () => {
  it('stores on the second request by default (one-off requests are not stored), on the first with minUses 1', async () => {
    const s = await stack()
    const other = '0a0b0c0d-0000-4000-8000-000000000002'
    expect((await get(s.url, thumb(other), ADMIN)).headers['x-cache']).toBe('MISS')
    expect(await metric(s, 'immich_gateway_cache_stored_bytes', 'tier="memory"')).toBe(0)
    expect((await get(s.url, thumb(other), ADMIN)).headers['x-cache']).toBe('MISS')
    expect(await metric(s, 'immich_gateway_cache_stored_bytes', 'tier="memory"')).toBeGreaterThan(
      40960
    )
    expect((await get(s.url, thumb(other), ADMIN)).headers['x-cache']).toBe('HIT')
    const eager = await stack({ 'thumbnail-cache': { minUses: 1 } })
    expect((await get(eager.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    expect((await get(eager.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
  })
})

describe('coalescing', () => {
  it('50 concurrent first requests for one thumbnail reach Immich once', async () => {
    const s = await stack()
    const expected = expectedThumbnail(ASSET, 'preview', 'u-admin')
    const answers = await Promise.all(
      Array.from({ length: 50 }, () => get(s.url, thumb(ASSET, '?size=preview'), ADMIN))
    )
    expect(immich!.thumbnailHits(ASSET)).toBe(1)
    for (const a of answers) {
      expect(a.status).toBe(200)
      expect(a.body.equals(expected)).toBe(true)
    }
    expect(answers.filter((a) => a.headers['x-cache'] === 'MISS')).toHaveLength(1)
    const coalesced = await metric(s, 'immich_gateway_cache_coalesced_total')
    const hits = await metric(
      s,
      'immich_gateway_cache_requests_total',
      'result="hit",route="/api/assets/{id}/thumbnail"'
    )
    expect(hits).toBe(49)
    expect(coalesced).toBeGreaterThan(0)
  })

  it('waiters whose leader got an uncacheable answer ask for themselves', async () => {
    const s = await stack()
    let calls = 0
    immich!.setHandler('GET', /^\/api\/assets\/[^/]+\/thumbnail$/, async (_req, res) => {
      calls++
      await new Promise((r) => setTimeout(r, 50))
      res.writeHead(404, { 'content-type': 'application/json' })
      res.end('{"message":"Not found"}')
    })
    const answers = await Promise.all(Array.from({ length: 5 }, () => get(s.url, thumb(), ADMIN)))
    expect(answers.map((a) => a.status)).toEqual([404, 404, 404, 404, 404])
    expect(calls).toBe(5)
  })
})

describe('invalidation through the gateway', () => {
  it('after a bulk delete, the next read is a MISS for every identity', async () => {
    const s = await stack()
    await warm(s.url, thumb(), ADMIN)
    await warm(s.url, thumb(), USER)
    expect((await get(s.url, thumb(), USER)).headers['x-cache']).toBe('HIT')
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
    expect(
      await send(s.url, 'DELETE', '/api/assets', { ids: [ASSET.toUpperCase()], force: false })
    ).toBe(204)
    expect(immich!.requestsTo('/api/assets', 'DELETE')[0]!.json).toEqual({
      ids: [ASSET.toUpperCase()],
      force: false,
    })
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    expect((await get(s.url, thumb(), USER)).headers['x-cache']).toBe('MISS')
  })

  it('after a regenerate-thumbnail job, the next read is a MISS, and nothing is stored while it may still run', async () => {
    const s = await stack({ 'thumbnail-cache': { invalidationHoldSeconds: 0.3 } })
    immich!.setHandler('POST', '/api/assets/jobs', (_req, res) => {
      res.writeHead(204)
      res.end()
    })
    await warm(s.url, thumb(), ADMIN)
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
    expect(
      await send(s.url, 'POST', '/api/assets/jobs', {
        assetIds: [ASSET],
        name: 'regenerate-thumbnail',
      })
    ).toBe(204)
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    await new Promise((r) => setTimeout(r, 350))
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
  })

  it('an update of one asset leaves the others cached; a refused change invalidates nothing', async () => {
    const s = await stack()
    const other = '0a0b0c0d-0000-4000-8000-000000000001'
    await warm(s.url, thumb(), ADMIN)
    await warm(s.url, thumb(other), ADMIN)
    expect(await send(s.url, 'PUT', `/api/assets/${other}`, { isFavorite: true }, {})).toBe(401)
    expect((await get(s.url, thumb(other), ADMIN)).headers['x-cache']).toBe('HIT')
    expect(await send(s.url, 'PUT', `/api/assets/${other}`, { isFavorite: true })).toBe(200)
    expect((await get(s.url, thumb(other), ADMIN)).headers['x-cache']).toBe('MISS')
    expect((await get(s.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
  })

  it('a logout voids every cached thumbnail: a dead session must not keep its images', async () => {
    const s = await stack()
    immich!.setHandler('POST', '/api/auth/logout', (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end('{"successful":true,"redirectUri":"/auth/login?autoLaunch=0"}')
    })
    const session = { 'x-immich-user-token': 'fake-session-token' }
    await warm(s.url, thumb(), session)
    expect((await get(s.url, thumb(), session)).headers['x-cache']).toBe('HIT')
    const res = await request(`${s.url}/api/auth/logout`, { method: 'POST', headers: session })
    await res.body.dump()
    expect(res.statusCode).toBeLessThan(300)
    expect((await get(s.url, thumb(), session)).headers['x-cache']).toBe('MISS')
  })

  it.runIf(sharedRedis)(
    'a delete through one replica is a MISS on the other (Redis generations and pub/sub)',
    async () => {
      const keyPrefix = `${uniquePrefix('cache-inv')}:`
      const policies = { 'thumbnail-cache': { redis: { keyPrefix } } }
      const a = await stack(policies, { redis: { url: sharedRedis } })
      const b = await stack(policies, { redis: { url: sharedRedis } })
      await waitFor(
        () => a.gateway.deps.redis!.status === 'ready' && b.gateway.deps.redis!.status === 'ready',
        5000,
        'redis ready'
      )
      await warm(a.url, thumb(), ADMIN)
      await waitFor(
        async () => (await a.gateway.deps.redis!.keys(`${keyPrefix}e:*`)).length === 1,
        2000,
        'entry in Redis'
      )
      expect((await get(b.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
      expect((await get(b.url, thumb(), ADMIN)).headers['x-cache']).toBe('HIT')
      expect(await send(a.url, 'DELETE', '/api/assets', { ids: [ASSET] })).toBe(204)
      // B's memory copy is voided by the pub/sub message; its Redis copy by the generation.
      await waitFor(
        async () => (await get(b.url, thumb(), ADMIN)).headers['x-cache'] === 'MISS',
        2000,
        'MISS on B'
      )
      expect((await get(a.url, thumb(), ADMIN)).headers['x-cache']).toBe('MISS')
    }
  )
})

describe('HTTP semantics', () => {
  it('answers If-None-Match and If-Modified-Since with a 304 from the cache', async () => {
    const s = await stack()
    const first = await warm(s.url, thumb(), ADMIN)
    const etag = first.headers.etag!
    const inm = await get(s.url, thumb(), { ...ADMIN, 'if-none-match': etag.replace(/^W\//, '') })
    expect(inm.status).toBe(304)
    expect(inm.headers['x-cache']).toBe('HIT')
    expect(inm.headers.etag).toBe(etag)
    expect(inm.body.length).toBe(0)
    const ims = await get(s.url, thumb(), {
      ...ADMIN,
      'if-modified-since': first.headers['last-modified']!,
    })
    expect(ims.status).toBe(304)
    const stale = await get(s.url, thumb(), { ...ADMIN, 'if-none-match': 'W/"other"' })
    expect(stale.status).toBe(200)
    expect(stale.body.equals(first.body)).toBe(true)
    expect(immich!.thumbnailHits(ASSET)).toBe(2)
  })

  it('replays the stored headers with Age, and HEAD gets headers only', async () => {
    const s = await stack()
    const miss = await warm(s.url, thumb(), ADMIN)
    const hit = await get(s.url, thumb(), ADMIN)
    expect(hit.headers['x-cache']).toBe('HIT')
    for (const name of [
      'content-type',
      'content-length',
      'etag',
      'last-modified',
      'cache-control',
      'content-disposition',
    ]) {
      expect(hit.headers[name], name).toBe(miss.headers[name])
    }
    expect(hit.headers.age).toMatch(/^\d+$/)
    expect(hit.headers['x-request-id']).toBeTruthy()
    expect(hit.headers['x-request-id']).not.toBe(miss.headers['x-request-id'])
    const head = await get(s.url, thumb(), ADMIN, 'HEAD')
    expect(head.headers['x-cache']).toBe('HIT')
    expect(head.headers['content-length']).toBe(String(miss.body.length))
    expect(head.body.length).toBe(0)
    expect(immich!.thumbnailHits(ASSET)).toBe(2)
  })

  it('bypasses ranges', async () => {
    const s = await stack()
    await warm(s.url, thumb(), ADMIN)
    const range = await get(s.url, thumb(), { ...ADMIN, range: 'bytes=0-9' })
    expect(range.status).toBe(206)
    expect(range.headers['x-cache']).toBe('BYPASS')
    expect(range.body.length).toBe(10)
  })

  it('streams answers larger than maxEntryBytes through uncached', async () => {
    immich = await startFakeImmich({ thumbnailSize: 64 * 1024 })
    const keyPrefix = `${uniquePrefix('cache-big')}:`
    const s = await stack(
      { 'thumbnail-cache': { maxEntryBytes: 32 * 1024, redis: { keyPrefix } } },
      sharedRedis ? { redis: { url: sharedRedis } } : {}
    )
    if (sharedRedis)
      await waitFor(() => s.gateway.deps.redis!.status === 'ready', 5000, 'redis ready')
    const expected = expectedThumbnail(ASSET, 'thumbnail', 'u-admin', 64 * 1024)
    for (let i = 0; i < 3; i++) {
      const a = await get(s.url, thumb(), ADMIN)
      expect(a.headers['x-cache']).toBe('MISS')
      expect(a.body.equals(expected)).toBe(true)
    }
    expect(immich.thumbnailHits(ASSET)).toBe(3)
    expect(await metric(s, 'immich_gateway_cache_stored_bytes', 'tier="memory"')).toBe(0)
    if (sharedRedis) expect(await s.gateway.deps.redis!.keys(`${keyPrefix}e:*`)).toEqual([])
  })

  it('revalidates person thumbnails (no-cache) with Immich: a 304 upstream serves the stored bytes', async () => {
    const s = await stack()
    const person = '9e8d7c6b-0000-4000-8000-00000000abcd'
    const path = `/api/people/${person}/thumbnail`
    const first = await warm(s.url, path, ADMIN)
    expect(first.headers['x-cache']).toBe('MISS')
    const second = await get(s.url, path, ADMIN)
    expect(second.headers['x-cache']).toBe('REVALIDATED')
    expect(second.body.equals(expectedJpeg(`person:${person}`))).toBe(true)
    const upstream = immich!.requestsTo(path)
    expect(upstream).toHaveLength(3)
    expect(upstream[2]!.headers['if-none-match']).toBe(first.headers.etag)
    expect(upstream[2]!.status).toBe(304)
  })

  it('keeps profile images (no Cache-Control) for the heuristic TTL', async () => {
    const s = await stack()
    const path = '/api/users/u-user/profile-image'
    await warm(s.url, path, USER)
    const hit = await get(s.url, path, USER)
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.body.equals(expectedJpeg('profile:u-user'))).toBe(true)
  })
})
