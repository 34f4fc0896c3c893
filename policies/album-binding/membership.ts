import { createHash, randomBytes } from 'node:crypto'
import type { Redis } from 'ioredis'
import { LRUCache } from 'lru-cache'

/** The assets of one album as one Immich user sees them, and when that was learned. */
export interface Membership {
  ids: ReadonlySet<string>
  fetchedAt: number
}

/** Asks Immich for an album's asset ids (with the requesting client's own credential). */
export type MembershipFetcher = (albumId: string) => Promise<Set<string>>

export interface MembershipCacheOptions {
  ttlMs: number
  /** Bound of the memory tier, in asset ids held over all albums. */
  maxIds: number
  redis?: { client: Redis; keyPrefix: string; timeoutMs: number; onError(err: unknown): void }
}

/** Fetching the membership failed: the request is refused (fail closed). */
export class MembershipUnavailable extends Error {
  override name = 'MembershipUnavailable'
}

const digest = (s: string) => createHash('sha256').update(s).digest('base64url').slice(0, 22)

/**
 * Album memberships: a memory LRU bounded by the number of ids it holds, a TTL, one fetch at a time
 * per album and identity (concurrent requests wait for it), and — with Redis — a shared tier plus
 * change notices, so a change made through any replica is seen by all of them at once.
 *
 * Entries are per (upstream identity, album): Immich answers an album's search with what that user
 * may see. A change to an album (`changed`) drops its entries of every identity; an epoch per album
 * keeps a fetch that started before the change from storing what it read.
 */
export class MembershipCache {
  private readonly memory: LRUCache<string, Membership>
  private readonly flights = new Map<string, Promise<Membership>>()
  private readonly epochs = new Map<string, number>()
  private readonly instance = randomBytes(6).toString('base64url')
  private readonly channel: string | undefined

  constructor(private readonly options: MembershipCacheOptions) {
    this.memory = new LRUCache<string, Membership>({
      maxSize: options.maxIds,
      sizeCalculation: (m) => m.ids.size + 1,
      ttl: options.ttlMs,
      ttlAutopurge: false,
    })
    this.channel = options.redis ? `${options.redis.keyPrefix}changed` : undefined
  }

  /** A fresh membership from memory, or undefined (the synchronous fast path). */
  peek(identity: string, albumId: string): Membership | undefined {
    return this.memory.get(`${identity}\0${albumId}`)
  }

  /** The membership: memory, else Redis, else one fetch shared by every concurrent caller. */
  get(identity: string, albumId: string, fetch: MembershipFetcher): Promise<Membership> {
    const key = `${identity}\0${albumId}`
    const found = this.memory.get(key)
    if (found !== undefined) return Promise.resolve(found)
    let flight = this.flights.get(key)
    if (flight === undefined) {
      flight = this.load(key, identity, albumId, fetch).finally(() => this.flights.delete(key))
      this.flights.set(key, flight)
    }
    return flight
  }

  /** An album changed through the gateway: every identity's copy is stale from now on. */
  async changed(albumId: string): Promise<void> {
    this.dropLocal(albumId)
    const redis = this.options.redis
    if (redis === undefined) return
    try {
      await redis.client
        .multi()
        .set(`${redis.keyPrefix}c:${albumId}`, String(Date.now()), 'PX', this.options.ttlMs * 2)
        .publish(this.channel!, `${this.instance} ${albumId}`)
        .exec()
    } catch (err) {
      redis.onError(err)
    }
  }

  /** Listens for other replicas' changes on a second connection; returns the closer. */
  subscribe(): () => void {
    const redis = this.options.redis
    if (redis === undefined) return () => {}
    const sub = redis.client.duplicate({ enableAutoPipelining: false })
    let connectedBefore = false
    sub.on('error', () => {})
    // Subscribed once connected (the client has no offline queue). Notices sent while the connection
    // was down are lost: after a reconnect, everything held in memory is dropped.
    sub.on('ready', () => {
      if (connectedBefore) this.memory.clear()
      connectedBefore = true
      sub.subscribe(this.channel!).catch(redis.onError)
    })
    sub.on('message', (_channel: string, message: string) => {
      const [from, albumId] = message.split(' ')
      if (from !== this.instance && albumId) this.dropLocal(albumId)
    })
    return () => sub.disconnect()
  }

  private dropLocal(albumId: string): void {
    this.epochs.set(albumId, (this.epochs.get(albumId) ?? 0) + 1)
    if (this.epochs.size > 10_000) this.epochs.clear()
    const suffix = `\0${albumId}`
    for (const key of [...this.memory.keys()]) if (key.endsWith(suffix)) this.memory.delete(key)
    for (const key of this.flights.keys()) if (key.endsWith(suffix)) this.flights.delete(key)
  }

  private async load(
    key: string,
    identity: string,
    albumId: string,
    fetch: MembershipFetcher
  ): Promise<Membership> {
    const epoch = this.epochs.get(albumId) ?? 0
    const shared = await this.lookupShared(identity, albumId)
    if (shared !== undefined) {
      if ((this.epochs.get(albumId) ?? 0) === epoch) this.memory.set(key, shared)
      return shared
    }
    // The fetch's start, not its end, dates it: a change made while it ran makes it stale.
    const startedAt = Date.now()
    let ids: Set<string>
    try {
      ids = await fetch(albumId)
    } catch (err) {
      throw err instanceof MembershipUnavailable
        ? err
        : new MembershipUnavailable((err as Error).message)
    }
    const membership: Membership = { ids, fetchedAt: startedAt }
    if ((this.epochs.get(albumId) ?? 0) === epoch) {
      this.memory.set(key, membership)
      void this.storeShared(identity, albumId, membership)
    }
    return membership
  }

  private redisKey(identity: string, albumId: string): string {
    return `${this.options.redis!.keyPrefix}m:${digest(identity)}:${albumId}`
  }

  /** Entry and the album's change mark in one round trip; an entry older than the mark is stale. */
  private async lookupShared(identity: string, albumId: string): Promise<Membership | undefined> {
    const redis = this.options.redis
    if (redis === undefined) return undefined
    try {
      const [entry, changedAt] = await withTimeout(
        redis.client.mget(this.redisKey(identity, albumId), `${redis.keyPrefix}c:${albumId}`),
        redis.timeoutMs
      )
      if (!entry) return undefined
      const bar = entry.indexOf('|')
      const fetchedAt = Number(entry.slice(0, bar))
      if (!(fetchedAt > Number(changedAt ?? 0))) return undefined
      if (Date.now() - fetchedAt >= this.options.ttlMs) return undefined
      const list = entry.slice(bar + 1)
      return { ids: new Set(list === '' ? [] : list.split(',')), fetchedAt }
    } catch (err) {
      redis.onError(err)
      return undefined
    }
  }

  private async storeShared(identity: string, albumId: string, m: Membership): Promise<void> {
    const redis = this.options.redis
    if (redis === undefined) return
    const ttl = this.options.ttlMs - (Date.now() - m.fetchedAt)
    if (ttl <= 0) return
    try {
      await redis.client.set(
        this.redisKey(identity, albumId),
        `${m.fetchedAt}|${[...m.ids].join(',')}`,
        'PX',
        ttl
      )
    } catch (err) {
      redis.onError(err)
    }
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('Redis lookup timed out')), ms)
    }),
  ]).finally(() => clearTimeout(timer))
}
