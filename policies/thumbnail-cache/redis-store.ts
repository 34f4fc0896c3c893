import { randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { decodeEntry, encodeEntry, type CacheEntry } from './entry.js'
import { hashedKey, type CacheClass } from './key.js'

/**
 * Sets each generation key to max(now, current + 1) — a monotonic per-key clock, so the value also
 * tells when the asset was last invalidated — and tells the other replicas, in one round trip.
 */
const INVALIDATE = `
local t = tonumber(ARGV[1])
for _, k in ipairs(KEYS) do
  local cur = tonumber(redis.call('GET', k) or '0') or 0
  local v = t
  if v <= cur then v = cur + 1 end
  redis.call('SET', k, v, 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1`

export interface RedisLookup {
  entry?: CacheEntry
  /** Generations current now: stored with a new entry, compared on every later lookup. */
  gens: number[]
}

/** An invalidation another replica made, for this replica's memory tier. */
export interface InvalidationMessage {
  cls: CacheClass
  ids?: string[]
  at: number
}

export interface RedisStoreOptions {
  keyPrefix: string
  /** Longest entry TTL: generation keys outlive every entry stored before them. */
  maxTtlMs: number
  /** A lookup slower than this counts as a miss. */
  timeoutMs: number
  onError(err: unknown): void
}

/**
 * The shared tier. An entry is one binary value (encodeEntry) under a hashed key with a PX TTL.
 * Invalidation uses generations: `g:<class>` and `g:a:<assetId>` hold a monotonic clock bumped on
 * each invalidation; an entry records the generations current when its fetch started and is valid
 * only while they are unchanged. Entry and generations come in one MGET, so a lookup is one round
 * trip, invalidation is O(ids) whatever the number of identities, and a fetch racing an invalidation
 * can never come back as current. Other replicas learn of invalidations by pub/sub for their memory tier.
 */
export class RedisStore {
  private readonly instance = randomBytes(6).toString('base64url')
  private readonly channel: string

  constructor(
    private readonly redis: Redis,
    private readonly options: RedisStoreOptions
  ) {
    this.channel = `${options.keyPrefix}invalidate`
  }

  private genKeys(cls: CacheClass, id: string): string[] {
    const p = this.options.keyPrefix
    return cls === 'a' ? [`${p}g:a`, `${p}g:a:${id}`] : [`${p}g:${cls}`]
  }

  /** Undefined when Redis failed or was too slow: a miss, and nothing is written back. */
  async lookup(
    key: string,
    cls: CacheClass,
    id: string,
    seq: number,
    now: number
  ): Promise<RedisLookup | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined
    try {
      const reply = await Promise.race([
        this.redis.mgetBuffer(
          `${this.options.keyPrefix}e:${hashedKey(key)}`,
          ...this.genKeys(cls, id)
        ),
        new Promise<undefined>((resolve) => {
          timer = setTimeout(() => resolve(undefined), this.options.timeoutMs)
        }),
      ])
      if (reply === undefined) throw new Error('redis lookup timed out')
      const gens = reply.slice(1).map((b) => (b === null ? 0 : Number(b.toString()) || 0))
      const raw = reply[0]
      if (raw === null || raw === undefined) return { gens }
      const decoded = decodeEntry(raw, seq)
      if (decoded === undefined || decoded.entry.expiresAt <= now) return { gens }
      const same =
        decoded.gens.length === gens.length && decoded.gens.every((g, i) => g === gens[i])
      return same ? { entry: decoded.entry, gens } : { gens }
    } catch (err) {
      this.options.onError(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  /** Fire and forget: a failed write only costs a later miss. */
  store(key: string, entry: CacheEntry, gens: readonly number[], now: number): void {
    // Only for its TTL: Redis has no byte bound the gateway controls, so the stale-if-error window
    // (30 days from Immich) is kept in the bounded tiers, memory and disk, not here.
    const ttl = entry.expiresAt - now
    if (ttl <= 0) return
    this.redis
      .set(`${this.options.keyPrefix}e:${hashedKey(key)}`, encodeEntry(entry, gens), 'PX', ttl)
      .catch(this.options.onError)
  }

  /** Fire and forget: removes one key's entry. */
  delete(key: string): void {
    this.redis.del(`${this.options.keyPrefix}e:${hashedKey(key)}`).catch(this.options.onError)
  }

  /** Bumps the generations (all of the class without ids) and tells the other replicas. */
  async invalidate(cls: CacheClass, ids: readonly string[] | undefined, at: number): Promise<void> {
    const p = this.options.keyPrefix
    const keys =
      ids === undefined || cls !== 'a'
        ? [`${p}g:${cls}`]
        : ids.map((id) => `${p}g:a:${id.toLowerCase()}`)
    const message = JSON.stringify({
      o: this.instance,
      c: cls,
      i: cls === 'a' ? ids : undefined,
      t: at,
    })
    const px = String(this.options.maxTtlMs + 60_000)
    try {
      await this.redis.eval(INVALIDATE, keys.length, ...keys, String(at), px, this.channel, message)
    } catch (err) {
      this.options.onError(err)
    }
  }

  /**
   * Listens for other replicas' invalidations on a second connection (a subscribed connection can
   * do nothing else). After a lost connection the messages sent meanwhile are gone, so `onResync`
   * is called to drop what the memory tier may hold stale. Returns the closer.
   */
  subscribe(onMessage: (m: InvalidationMessage) => void, onResync: () => void): () => void {
    const sub = this.redis.duplicate({ enableAutoPipelining: false }) // a subscriber sends no commands worth batching
    let connectedBefore = false
    sub.on('error', () => {})
    sub.on('ready', () => {
      if (connectedBefore) onResync()
      connectedBefore = true
      sub.subscribe(this.channel).catch(this.options.onError)
    })
    sub.on('message', (_channel: string, text: string) => {
      let m: { o?: string; c?: string; i?: unknown; t?: number }
      try {
        m = JSON.parse(text) as typeof m
      } catch {
        return
      }
      if (m.o === this.instance || (m.c !== 'a' && m.c !== 'p' && m.c !== 'u')) return
      const ids = Array.isArray(m.i)
        ? m.i.filter((x): x is string => typeof x === 'string')
        : undefined
      onMessage({ cls: m.c, ids, at: typeof m.t === 'number' ? m.t : Date.now() })
    })
    return () => sub.disconnect()
  }
}
