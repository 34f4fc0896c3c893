/** The Redis tier against a real Redis: binary values, generations, pub/sub, and failure as a miss. */
import { Redis } from 'ioredis'
import { afterAll, describe, expect, it } from 'vitest'
import { buildEntry } from '../../../policies/thumbnail-cache/entry.js'
import { hashedKey } from '../../../policies/thumbnail-cache/key.js'
import {
  RedisStore,
  type InvalidationMessage,
} from '../../../policies/thumbnail-cache/redis-store.js'
import { redisOrSkip, uniquePrefix, waitFor } from '../rate-limit/support.js'

const url = await redisOrSkip('thumbnail cache Redis store')
const clients: Redis[] = []
afterAll(() => {
  for (const c of clients) c.disconnect()
})

function client(at = url!): Redis {
  const r = new Redis(at, { enableOfflineQueue: false, maxRetriesPerRequest: 1 })
  r.on('error', () => {})
  clients.push(r)
  return r
}

const headers = { 'content-type': 'image/webp', etag: 'W/"a"' }
const plan = { ttlMs: 60_000, revalidate: false, staleMs: 0 }

describe.runIf(url)('RedisStore', () => {
  async function ready(r: Redis) {
    await waitFor(() => r.status === 'ready', 5000, 'redis ready')
    return r
  }
  const errors: unknown[] = []
  const make = async (keyPrefix = `${uniquePrefix('cache-store')}:`) => {
    const redis = await ready(client())
    return {
      redis,
      keyPrefix,
      store: new RedisStore(redis, {
        keyPrefix,
        maxTtlMs: 3_600_000,
        timeoutMs: 500,
        onError: (e) => errors.push(e),
      }),
    }
  }

  it('stores and finds binary bodies byte for byte', async () => {
    const { store, redis, keyPrefix } = await make()
    const body = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256))
    const now = Date.now()
    const first = await store.lookup('k', 'a', 'id1', 0, now)
    expect(first).toEqual({ gens: [0, 0] })
    store.store('k', buildEntry(headers, body, plan, now, 0), first!.gens, now)
    await waitFor(
      async () => (await redis.exists(`${keyPrefix}e:${hashedKey('k')}`)) === 1,
      2000,
      'stored'
    )
    const found = await store.lookup('k', 'a', 'id1', 3, now)
    expect(found?.entry?.body.equals(body)).toBe(true)
    expect(found?.entry?.seq).toBe(3)
    const ttl = await redis.pttl(`${keyPrefix}e:${hashedKey('k')}`)
    expect(ttl).toBeGreaterThan(55_000)
    expect(ttl).toBeLessThanOrEqual(60_000)
  })

  it('an invalidation voids entries whose fetch started before it, and tells the other replicas', async () => {
    const { store, keyPrefix, redis } = await make()
    const other = await make(keyPrefix)
    const heard: InvalidationMessage[] = []
    let resyncs = 0
    const stop = other.store.subscribe(
      (m) => heard.push(m),
      () => resyncs++
    )
    await waitFor(
      async () =>
        ((await redis.pubsub('NUMSUB', `${keyPrefix}invalidate`)) as [string, number])[1] > 0,
      5000,
      'subscription'
    )
    const now = Date.now()
    const before = await store.lookup('k', 'a', 'id1', 0, now)
    await store.invalidate('a', ['ID1'], now)
    store.store('k', buildEntry(headers, Buffer.from('old'), plan, now, 0), before!.gens, now)
    await redis.ping() // one connection runs its commands in order: the write is in
    const after = await store.lookup('k', 'a', 'id1', 0, now)
    expect(after?.entry).toBeUndefined()
    expect(after!.gens[1]).toBeGreaterThanOrEqual(now)
    // A second invalidation in the same millisecond still moves the generation.
    await store.invalidate('a', ['id1'], now)
    expect((await store.lookup('k', 'a', 'id1', 0, now))!.gens[1]).toBe(after!.gens[1]! + 1)
    await waitFor(() => heard.length === 2, 2000, 'pub/sub message')
    expect(heard[0]).toEqual({ cls: 'a', ids: ['ID1'], at: now })
    expect(resyncs).toBe(0)
    stop()
  })

  it('a class invalidation voids every asset', async () => {
    const { store, redis } = await make()
    const now = Date.now()
    const gens = (await store.lookup('k', 'a', 'x', 0, now))!.gens
    store.store('k', buildEntry(headers, Buffer.from('b'), plan, now, 0), gens, now)
    await redis.ping() // one connection runs its commands in order: the write is in
    expect((await store.lookup('k', 'a', 'x', 0, now))?.entry).toBeDefined()
    await store.invalidate('a', undefined, now)
    expect((await store.lookup('k', 'a', 'x', 0, now))?.entry).toBeUndefined()
  })

  it('Redis down is a miss, never an error', async () => {
    const dead = client('redis://127.0.0.1:1')
    const seen: unknown[] = []
    const store = new RedisStore(dead, {
      keyPrefix: 'x:',
      maxTtlMs: 1000,
      timeoutMs: 100,
      onError: (e) => seen.push(e),
    })
    expect(await store.lookup('k', 'a', 'id', 0, Date.now())).toBeUndefined()
    store.store('k', buildEntry(headers, Buffer.from('b'), plan, Date.now(), 0), [0, 0], Date.now())
    await store.invalidate('a', ['id'], Date.now())
    await waitFor(() => seen.length >= 2, 2000, 'both failures reported')
  })
})
