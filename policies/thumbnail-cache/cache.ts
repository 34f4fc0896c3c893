import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context, MiddlewareHandler, Next } from 'hono'
import { Doorkeeper } from './admission.js'
import { Flights, type Flight } from './coalesce.js'
import { DiskStore } from './disk-store.js'
import { buildEntry, entryMatches, servableOnError, type CacheEntry } from './entry.js'
import { storagePlan, type StorageLimits } from './http.js'
import {
  INVALIDATION_RULES,
  MAX_ID_BODY_BYTES,
  idsFromJson,
  readSmallBody,
  type InvalidationRule,
} from './invalidation.js'
import { CACHEABLE_ROUTES, cacheKey, sharedLinkToken, type CacheClass } from './key.js'
import { MemoryStore } from './memory-store.js'
import { RedisStore } from './redis-store.js'
import type { CapturedAnswer, Env, RouteMatch } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { answerStatus, writeAnswer, writeHead } from '../../src/server/answer.js'
import type { ResponseSink } from '../../src/upstream/forward.js'
import type { Deps } from '../../src/deps.js'
import type { ThumbnailCacheOptions } from './schema.js'

type Result = 'hit' | 'miss' | 'bypass' | 'revalidated' | 'stale'
const X_CACHE: Record<Result, string> = {
  hit: 'HIT',
  miss: 'MISS',
  bypass: 'BYPASS',
  revalidated: 'REVALIDATED',
  stale: 'STALE',
}
const noop = (): void => {}
// Context variables are read with c.get(), never c.var: Hono's `c.var` copies every variable into a
// new object on each access (Object.fromEntries), which was a fifth of the CPU of a cache hit.

/**
 * The stored body. A body that came in one chunk is kept as it is, without a copy: the chunk is a view
 * of the socket read it arrived in, which Node sizes to the bytes read and never reuses. Not copying
 * spares an allocation per miss, and with it most of the garbage-collection cost of filling the cache.
 * A chunk that is a small view of a much larger buffer is copied, so it cannot pin the rest.
 */
function bodyOf(chunks: Buffer[], size: number): Buffer {
  const only = chunks.length === 1 ? chunks[0]! : undefined
  if (only !== undefined && only.buffer.byteLength <= 2 * only.length + 4096) return only
  return Buffer.concat(chunks, size)
}

/** Warns at most once a minute, whatever the number of failures in between. */
function rateLimitedWarning(logger: Deps['logger'], message: string): (err: unknown) => void {
  let last = 0
  return (err) => {
    const now = Date.now()
    if (now - last < 60_000) return
    last = now
    logger.warn({ err: (err as Error)?.message }, message)
  }
}

interface Lookup {
  key: string
  cls: CacheClass
  id: string
  route: string
  /** Memory invalidation sequence number when the lookup started. */
  seq: number
  /** Redis generations when the lookup started (undefined: do not write to Redis). */
  gens?: number[]
  maxAgeMs: number
  /** Asked for before (minUses): store the answer. */
  admit: boolean
  /** An entry past its TTL that may stand in for a failed answer (stale-if-error). */
  stale?: CacheEntry
}

/** Is this a failure a stale entry may stand in for (Immich unreachable, refused by the breaker, 5xx)? */
function upstreamFailure(err: unknown): boolean {
  return (
    err instanceof GatewayError &&
    err.status >= 502 &&
    err.status <= 504 &&
    err.code.startsWith('UPSTREAM_') &&
    err.code !== 'UPSTREAM_TOO_LARGE'
  )
}

/**
 * Caches thumbnails, person thumbnails and profile images per upstream identity (phase `cache`, after
 * authenticate, authorize and rate-limit). A hit is written straight to the Node response from header
 * lists built at store time; a miss streams through the forwarder while a tap keeps a copy (up to
 * `maxEntryBytes`). Concurrent misses for one key share one upstream fetch. Changes through the gateway
 * void the affected entries for every identity, in this replica, in Redis and (by pub/sub) in the others.
 * Entries outlive their TTL by Immich's `stale-if-error` (within the byte bounds): when Immich is
 * unreachable, its breaker open, or it answers 5xx, such an entry is served to the same key, marked
 * `X-Cache: STALE`. An optional disk tier keeps entries across restarts.
 */
export class ThumbnailCache {
  private readonly metrics: Deps['metrics']
  private readonly forwarder: Deps['forwarder']
  private readonly health: Deps['health']
  private readonly limits: StorageLimits
  private readonly holdMs: number
  private readonly maxEntryBytes: number
  private readonly nativeTtlMs: number
  private readonly flights = new Flights<CacheEntry>()
  private readonly doorkeeper: Doorkeeper | undefined

  private constructor(
    options: ThumbnailCacheOptions,
    deps: Deps,
    private readonly memory: MemoryStore,
    private readonly redis: RedisStore | undefined,
    private readonly disk: DiskStore | undefined
  ) {
    this.metrics = deps.metrics
    this.forwarder = deps.forwarder
    this.health = deps.health
    this.limits = {
      ttlSeconds: options.ttlSeconds,
      heuristicTtlSeconds: options.heuristicTtlSeconds,
      revalidateNoCache: options.revalidateNoCache,
      staleIfErrorSeconds: options.staleIfErrorSeconds,
    }
    this.holdMs = options.invalidationHoldSeconds * 1000
    this.maxEntryBytes = options.maxEntryBytes
    this.nativeTtlMs = options.nativeTtlSeconds * 1000
    this.doorkeeper = options.minUses > 1 ? new Doorkeeper() : undefined
    // Every result of every route exported from the start (at 0), so a hit ratio has both sides.
    for (const route of CACHEABLE_ROUTES.keys())
      for (const result of Object.keys(X_CACHE)) this.metrics.cacheRequests.series(result, route)
  }

  /** Opens the tiers (memory; Redis when configured; the disk directory when set). */
  static async open(
    options: ThumbnailCacheOptions,
    deps: Deps,
    onClose: (fn: () => void) => void
  ): Promise<ThumbnailCache> {
    const { metrics, logger } = deps
    const storedBytes = metrics.cacheStoredBytes.labels({ tier: 'memory' })
    const memory = new MemoryStore({
      maxBytes: options.memory.maxBytes,
      maxEntryBytes: options.maxEntryBytes,
      onEvict: () => metrics.cacheEvictions.inc(),
      onSize: (bytes) => storedBytes.set(bytes),
    })
    storedBytes.set(0)
    const redis =
      deps.redis && options.redis.enabled
        ? new RedisStore(deps.redis, {
            keyPrefix: options.redis.keyPrefix,
            maxTtlMs: options.ttlSeconds * 1000,
            timeoutMs: options.redis.timeoutMs,
            onError: rateLimitedWarning(
              logger,
              'thumbnail cache: Redis unavailable, treating lookups as misses'
            ),
          })
        : undefined
    const diskBytes = metrics.cacheStoredBytes.labels({ tier: 'disk' })
    const disk =
      options.disk.dir !== undefined
        ? await DiskStore.open({
            dir: options.disk.dir,
            maxBytes: options.disk.maxBytes,
            current: (seq, cls, id) => memory.current(seq, cls, id),
            onSize: (bytes) => diskBytes.set(bytes),
            onError: rateLimitedWarning(logger, 'thumbnail cache: disk tier error'),
          })
        : undefined
    if (disk) diskBytes.set(disk.size)
    if (redis) {
      onClose(
        redis.subscribe(
          (m) => {
            memory.invalidate(m.cls, m.ids, m.at)
            disk?.invalidate(m.cls, m.ids)
          },
          () => {
            memory.clear()
            disk?.clear()
          }
        )
      )
    }
    return new ThumbnailCache(options, deps, memory, redis, disk)
  }

  /** The policy's middleware. Requests the cache does not concern pass by synchronously. */
  readonly middleware: MiddlewareHandler<Env> = (c, next) => {
    const match = c.get('route')
    if (match === undefined || c.env.upgrade !== undefined || c.env.outgoing === undefined)
      return next()
    const method = c.get('upstream').method
    if (method === 'GET' || method === 'HEAD') {
      const cls = CACHEABLE_ROUTES.get(match.route.path)
      return cls === undefined ? next() : this.serve(c, next, match, cls)
    }
    const rule = INVALIDATION_RULES.get(`${method} ${match.route.path}`)
    return rule === undefined ? next() : this.invalidateAfter(c, next, rule, match)
  }

  private count(result: Result, route: string): void {
    this.metrics.cacheRequests.series(result, route).inc()
  }

  /** Longest age an entry may be served at to this principal (native credentials are Immich's to revoke). */
  private maxAgeFor(c: Context<Env>): number {
    const kind = c.get('principal').kind
    return kind === 'native' || kind === 'shared-link' ? this.nativeTtlMs : Infinity
  }

  /** Writes an entry (or a 304 for it) straight to the socket. */
  private send(
    c: Context<Env>,
    entry: CacheEntry,
    result: Result,
    route: string,
    now: number
  ): Response {
    const res = c.env.outgoing!
    const req = c.env.incoming
    const label = X_CACHE[result]
    const notModified = entryMatches(entry, req.headers)
    const headers = (notModified ? entry.flatNotModified : entry.flat).concat(
      'age',
      String(Math.max(0, Math.floor((now - entry.storedAt) / 1000))),
      'x-cache',
      label,
      'x-correlation-id',
      c.get('requestId')
    )
    c.get('notes').cache = label
    this.count(result, route)
    writeHead(c, notModified ? 304 : 200, headers)
    if (notModified || req.method === 'HEAD') {
      res.end()
      c.set('bytesOut', 0)
    } else {
      res.end(entry.body)
      c.set('bytesOut', entry.body.length)
      this.metrics.cacheServedBytes.inc(entry.body.length)
    }
    return RESPONSE_ALREADY_SENT
  }

  private bypass(c: Context<Env>, next: Next, route: string): Promise<void> {
    this.count('bypass', route)
    c.get('notes').cache = 'BYPASS'
    c.get('responseHeaders')['x-cache'] = 'BYPASS'
    return next()
  }

  /** Forgets a key's entry in every tier (its answer changed to something else). */
  private drop(key: string): void {
    this.memory.delete(key)
    this.disk?.delete(key)
    this.redis?.delete(key)
  }

  /** Keeps a new entry in every tier this lookup may write to. */
  private keep(l: Lookup, entry: CacheEntry, at: number): void {
    this.memory.set(l.key, entry, l.cls, l.id)
    if (this.redis !== undefined && l.gens !== undefined) this.redis.store(l.key, entry, l.gens, at)
    if (this.disk !== undefined && this.memory.current(entry.seq, l.cls, l.id))
      this.disk.store(l.key, entry, l.cls, l.id)
  }

  /** A miss: stream the answer through, keeping a copy when it may be stored and fits. */
  private fetchAndStore(
    c: Context<Env>,
    l: Lookup,
    flight?: Flight<CacheEntry>
  ): Promise<Response> {
    if (l.stale !== undefined) return this.refetch(c, l, l.stale, flight)
    this.count('miss', l.route)
    c.get('notes').cache = 'MISS'
    const head = c.get('upstream').method === 'HEAD'
    return this.forwarder.pipe(c, (status, headers): ResponseSink | undefined => {
      headers['x-cache'] = 'MISS'
      // Neither asked for before (minUses) nor awaited by another request: nothing will be stored,
      // so nothing is kept, and the flight ends now (a request for the key from here on leads its own).
      if (head || !(l.admit || flight?.waited === true)) {
        flight?.settle(undefined)
        return undefined
      }
      const plan = storagePlan(status, headers, this.limits)
      if (plan === undefined) return undefined
      plan.ttlMs = Math.min(plan.ttlMs, l.maxAgeMs)
      const now = Date.now()
      if (
        this.memory.held(l.cls, l.id, now, this.holdMs) ||
        (l.gens !== undefined && l.gens.some((g) => g > now - this.holdMs))
      )
        return undefined
      const declared =
        headers['content-length'] === undefined ? undefined : Number(headers['content-length'])
      if (declared !== undefined && !(declared <= this.maxEntryBytes)) return undefined
      let chunks: Buffer[] | undefined = []
      let size = 0
      return {
        start: noop,
        data: (chunk) => {
          if (chunks !== undefined) {
            size += chunk.length
            if (size > this.maxEntryBytes) chunks = undefined
            else chunks.push(chunk)
          }
          return true
        },
        end: () => {
          // Stored when asked for before (minUses), or by several at once (then the waiters get it too).
          if (chunks === undefined || (declared !== undefined && declared !== size))
            return flight?.settle(undefined)
          const at = Date.now()
          const entry = buildEntry(headers, bodyOf(chunks, size), plan, at, l.seq)
          this.keep(l, entry, at)
          flight?.settle(entry)
        },
        fail: () => {
          flight?.settle(undefined)
        },
      }
    })
  }

  /**
   * A `no-cache` entry (person thumbnails): ask Immich with the stored validators; a 304 serves the
   * stored bytes, anything else replaces or drops the entry.
   */
  private async revalidate(c: Context<Env>, l: Lookup, entry: CacheEntry): Promise<Response> {
    const edits = c.get('upstream').headerEdits
    edits['if-none-match'] = entry.headers.etag ?? null
    edits['if-modified-since'] = entry.headers['last-modified'] ?? null
    let answer
    try {
      answer = await this.forwarder.capture(c, this.maxEntryBytes)
    } catch (err) {
      if (upstreamFailure(err) && servableOnError(entry, Date.now()))
        return this.send(c, entry, 'stale', l.route, Date.now())
      if (!(err instanceof GatewayError && err.code === 'UPSTREAM_TOO_LARGE')) throw err
      // The image grew past the bound: fetch it again, streamed, the client's own conditionals restored.
      this.memory.delete(l.key)
      delete edits['if-none-match']
      delete edits['if-modified-since']
      return this.fetchAndStore(c, { ...l, gens: undefined, stale: undefined })
    }
    const now = Date.now()
    if (answer.status === 304) {
      entry.storedAt = now
      return this.send(c, entry, 'revalidated', l.route, now)
    }
    if (answer.status >= 500 && servableOnError(entry, now))
      return this.send(c, entry, 'stale', l.route, now)
    return this.answerCaptured(c, l, answer, now)
  }

  /**
   * The key has an entry past its TTL that may stand in for a failure: the answer is taken whole
   * (thumbnails are small), so a 5xx can still be replaced by the stale entry before anything is sent.
   */
  private async refetch(
    c: Context<Env>,
    l: Lookup,
    stale: CacheEntry,
    flight?: Flight<CacheEntry>
  ): Promise<Response> {
    let answer
    try {
      answer = await this.forwarder.capture(c, this.maxEntryBytes)
    } catch (err) {
      flight?.settle(undefined)
      if (upstreamFailure(err) && servableOnError(stale, Date.now()))
        return this.send(c, stale, 'stale', l.route, Date.now())
      if (!(err instanceof GatewayError && err.code === 'UPSTREAM_TOO_LARGE')) throw err
      this.memory.delete(l.key)
      return this.fetchAndStore(c, { ...l, gens: undefined, stale: undefined })
    }
    const now = Date.now()
    if (answer.status >= 500 && servableOnError(stale, now)) {
      flight?.settle(undefined)
      return this.send(c, stale, 'stale', l.route, now)
    }
    const response = this.answerCaptured(c, l, answer, now, flight)
    flight?.settle(undefined)
    return response
  }

  /**
   * Immich's whole answer for a key that had an entry: stored (and sent as a miss) when it may be,
   * otherwise sent as it is. Any answer but a 304 or a 5xx replaces the old entry: a 401 or 404 now
   * means the old bytes must not stand in for anything later.
   */
  private answerCaptured(
    c: Context<Env>,
    l: Lookup,
    answer: CapturedAnswer,
    now: number,
    flight?: Flight<CacheEntry>
  ): Response {
    if (answer.status !== 304) this.drop(l.key)
    const plan =
      c.get('upstream').method === 'GET'
        ? storagePlan(answer.status, answer.headers, this.limits)
        : undefined
    if (plan !== undefined && l.admit && !this.memory.held(l.cls, l.id, now, this.holdMs)) {
      plan.ttlMs = Math.min(plan.ttlMs, l.maxAgeMs)
      const fresh = buildEntry(answer.headers, answer.body, plan, now, l.seq)
      this.keep(l, fresh, now)
      flight?.settle(fresh)
      return this.send(c, fresh, 'miss', l.route, now)
    }
    this.count('miss', l.route)
    c.get('notes').cache = 'MISS'
    return writeAnswer(c, answer.status, { ...answer.headers, 'x-cache': 'MISS' }, answer.body)
  }

  /** Serves from an entry that is fresh for this principal. */
  private use(
    c: Context<Env>,
    l: Lookup,
    entry: CacheEntry,
    now: number
  ): Response | Promise<Response> {
    return entry.revalidate
      ? this.revalidate(c, l, entry)
      : this.send(c, entry, 'hit', l.route, now)
  }

  /**
   * A lookup. Synchronous up to the upstream fetch (a this.memory hit is answered without an async
   * frame); Redis lookups and waits for another request's fetch are the async parts.
   */
  private serve(
    c: Context<Env>,
    next: Next,
    match: RouteMatch,
    cls: CacheClass
  ): Promise<Response | void> {
    const route = match.route.path
    const principal = c.get('principal')
    const maxAgeMs = this.maxAgeFor(c)
    if (
      principal.kind === 'anonymous' ||
      maxAgeMs === 0 ||
      c.env.incoming.headers.range !== undefined
    )
      return this.bypass(c, next, route)
    const id = (match.params.id ?? '').toLowerCase()
    const url = c.get('upstream').url
    const q = url.indexOf('?')
    const identity =
      principal.kind === 'shared-link'
        ? `${principal.upstreamIdentity}\0${sharedLinkToken(c.env.incoming.headers.cookie)}`
        : principal.upstreamIdentity
    const key = cacheKey(cls, id, identity, q === -1 ? '' : url.slice(q + 1), principal.albums?.tag)
    if (key === undefined) return this.bypass(c, next, route)
    const now = Date.now()
    const l: Lookup = { key, cls, id, route, seq: this.memory.snapshot(), maxAgeMs, admit: true }
    const entry = this.memory.get(key, cls, id, now)
    if (entry !== undefined) {
      if (entry.expiresAt > now && now - entry.storedAt < maxAgeMs)
        return Promise.resolve(this.use(c, l, entry, now))
      if (servableOnError(entry, now)) {
        // Immich known down: the stale entry at once, nothing waits on Immich.
        if (this.health.refusing) return Promise.resolve(this.send(c, entry, 'stale', route, now))
        l.stale = entry
      }
    }
    l.admit = this.doorkeeper === undefined || this.doorkeeper.seen(key)
    // HEAD misses pass through (no body to this.keep) and lead no fetch.
    if (c.get('upstream').method === 'HEAD') return this.fetchAndStore(c, l)

    const inFlight = this.flights.waitFor(key)
    if (inFlight !== undefined) return this.follow(c, l, inFlight)
    const flight = this.flights.lead(key)
    // Settled by the sink when the answer is stored; this covers every other ending (not storable,
    // refused upstream, aborted), so no follower waits forever.
    const unsettled = () => flight.settle(undefined)
    if (this.redis === undefined && this.disk === undefined)
      return this.fetchAndStore(c, l, flight).finally(unsettled)
    return this.lookupTiers(c, l, flight).finally(unsettled)
  }

  /** Another request is fetching this key: wait for its answer. */
  private async follow(
    c: Context<Env>,
    l: Lookup,
    inFlight: Promise<CacheEntry | undefined>
  ): Promise<Response> {
    this.metrics.cacheCoalesced.inc()
    const shared = await inFlight
    if (shared !== undefined) return this.send(c, shared, 'hit', l.route, Date.now())
    // The leader's answer was not storable: fetch alone (a fresh leader would serialize the waiters).
    return this.fetchAndStore(c, { ...l, seq: this.memory.snapshot() })
  }

  /**
   * Not fresh in memory: ask the this.disk tier, then the shared tier (Redis), then Immich. An entry past
   * its TTL found on the way is kept in this.memory as the stand-in for a failed answer.
   */
  private async lookupTiers(
    c: Context<Env>,
    l: Lookup,
    flight: Flight<CacheEntry>
  ): Promise<Response> {
    if (this.disk !== undefined) {
      const found = await this.disk.get(l.key, l.seq, Date.now())
      if (found !== undefined) {
        const served = this.useFound(c, l, flight, found)
        if (served !== undefined) return served
      }
    }
    if (this.redis !== undefined) {
      const found = await this.redis.lookup(l.key, l.cls, l.id, l.seq, Date.now())
      if (found?.entry !== undefined) {
        const served = this.useFound(c, l, flight, found.entry)
        if (served !== undefined) return served
      }
      l.gens = found?.gens
    }
    if (l.stale !== undefined && this.health.refusing) {
      flight.settle(undefined)
      return this.send(c, l.stale, 'stale', l.route, Date.now())
    }
    return this.fetchAndStore(c, l, flight)
  }

  /** An entry from a lower tier: served when fresh, else remembered as the lookup's stale stand-in. */
  private useFound(
    c: Context<Env>,
    l: Lookup,
    flight: Flight<CacheEntry>,
    found: CacheEntry
  ): Response | Promise<Response> | undefined {
    const now = Date.now()
    if (found.expiresAt > now && now - found.storedAt < l.maxAgeMs) {
      this.memory.set(l.key, found, l.cls, l.id)
      flight.settle(found.revalidate ? undefined : found)
      return this.use(c, l, found, now)
    }
    if (l.stale === undefined && servableOnError(found, now)) {
      this.memory.set(l.key, found, l.cls, l.id)
      l.stale = found
    }
    return undefined
  }

  /** Lets the change through, then voids what it touched (unless Immich refused it with a 4xx). */
  private async invalidateAfter(
    c: Context<Env>,
    next: Next,
    rule: InvalidationRule,
    match: RouteMatch
  ): Promise<void> {
    let ids: string[] | undefined
    if (rule.param !== undefined) {
      const id = match.params[rule.param]
      ids = id === undefined ? undefined : [id.toLowerCase()]
    } else if (rule.bodyFields !== undefined) {
      const body = await readSmallBody(c, MAX_ID_BODY_BYTES)
      if (body !== undefined) {
        ids = idsFromJson(body, rule.bodyFields)
      }
    }
    await next()
    const status = answerStatus(c)
    if (status >= 400 && status < 500) return
    const at = Date.now()
    this.memory.invalidate(rule.cls, ids, at)
    this.disk?.invalidate(rule.cls, ids)
    // Not awaited (the answer is out; the access line should not wait for Redis). This replica's
    // next lookup still sees it: commands on one connection run in order.
    if (this.redis !== undefined) void this.redis.invalidate(rule.cls, ids, at)
  }
}
