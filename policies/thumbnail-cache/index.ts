import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context, Next } from 'hono'
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
import type { Env, RouteMatch } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { answerStatus, writeAnswer, writeHead } from '../../src/server/answer.js'
import type { CapturedResponse, ResponseSink } from '../../src/upstream/forward.js'
import { definePolicy } from '../types.js'
import { thumbnailCacheOptions } from './schema.js'

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
export const thumbnailCache = definePolicy({
  name: 'thumbnail-cache',
  phase: 'cache',
  options: thumbnailCacheOptions,
  async create(options, { deps, onClose }) {
    const { metrics, forwarder, logger, health } = deps
    const limits: StorageLimits = {
      ttlSeconds: options.ttlSeconds,
      heuristicTtlSeconds: options.heuristicTtlSeconds,
      revalidateNoCache: options.revalidateNoCache,
      staleIfErrorSeconds: options.staleIfErrorSeconds,
    }
    const holdMs = options.invalidationHoldSeconds * 1000
    const maxEntryBytes = options.maxEntryBytes
    const storedBytes = metrics.cacheStoredBytes.labels({ tier: 'memory' })
    const memory = new MemoryStore({
      maxBytes: options.memory.maxBytes,
      maxEntryBytes,
      onEvict: () => metrics.cacheEvictions.inc(),
      onSize: (bytes) => storedBytes.set(bytes),
    })
    storedBytes.set(0)

    let lastRedisWarning = 0
    const redisError = (err: unknown): void => {
      const now = Date.now()
      if (now - lastRedisWarning < 60_000) return
      lastRedisWarning = now
      logger.warn(
        { err: (err as Error)?.message },
        'thumbnail cache: Redis unavailable, treating lookups as misses'
      )
    }
    const redis =
      deps.redis && options.redis.enabled
        ? new RedisStore(deps.redis, {
            keyPrefix: options.redis.keyPrefix,
            maxTtlMs: options.ttlSeconds * 1000,
            timeoutMs: options.redis.timeoutMs,
            onError: redisError,
          })
        : undefined
    let lastDiskWarning = 0
    const diskBytes = metrics.cacheStoredBytes.labels({ tier: 'disk' })
    const disk =
      options.disk.dir !== undefined
        ? await DiskStore.open({
            dir: options.disk.dir,
            maxBytes: options.disk.maxBytes,
            current: (seq, cls, id) => memory.current(seq, cls, id),
            onSize: (bytes) => diskBytes.set(bytes),
            onError: (err) => {
              const now = Date.now()
              if (now - lastDiskWarning < 60_000) return
              lastDiskWarning = now
              logger.warn({ err: (err as Error)?.message }, 'thumbnail cache: disk tier error')
            },
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
    const flights = new Flights<CacheEntry>()
    const doorkeeper = options.minUses > 1 ? new Doorkeeper() : undefined

    // Every result of every route exported from the start (at 0), so a hit ratio has both sides.
    for (const route of CACHEABLE_ROUTES.keys())
      for (const result of Object.keys(X_CACHE)) metrics.cacheRequests.series(result, route)
    const count = (result: Result, route: string) =>
      metrics.cacheRequests.series(result, route).inc()

    /** Longest age an entry may be served at to this principal (native credentials are Immich's to revoke). */
    const maxAgeFor = (c: Context<Env>): number => {
      const kind = c.get('principal').kind
      return kind === 'native' || kind === 'shared-link'
        ? options.nativeTtlSeconds * 1000
        : Infinity
    }

    /** Writes an entry (or a 304 for it) straight to the socket. */
    function send(
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
      count(result, route)
      writeHead(c, notModified ? 304 : 200, headers)
      if (notModified || req.method === 'HEAD') {
        res.end()
        c.set('bytesOut', 0)
      } else {
        res.end(entry.body)
        c.set('bytesOut', entry.body.length)
        metrics.cacheServedBytes.inc(entry.body.length)
      }
      return RESPONSE_ALREADY_SENT
    }

    function bypass(c: Context<Env>, next: Next, route: string): Promise<void> {
      count('bypass', route)
      c.get('notes').cache = 'BYPASS'
      c.get('responseHeaders')['x-cache'] = 'BYPASS'
      return next()
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

    /** Forgets a key's entry in every tier (its answer changed to something else). */
    function drop(key: string): void {
      memory.delete(key)
      disk?.delete(key)
      redis?.delete(key)
    }

    /** Keeps a new entry in every tier this lookup may write to. */
    function keep(l: Lookup, entry: CacheEntry, at: number): void {
      memory.set(l.key, entry, l.cls, l.id)
      if (redis !== undefined && l.gens !== undefined) redis.store(l.key, entry, l.gens, at)
      if (disk !== undefined && memory.current(entry.seq, l.cls, l.id))
        disk.store(l.key, entry, l.cls, l.id)
    }

    /** Is this a failure a stale entry may stand in for (Immich unreachable, refused by the breaker, 5xx)? */
    const upstreamFailure = (err: unknown): boolean =>
      err instanceof GatewayError &&
      err.status >= 502 &&
      err.status <= 504 &&
      err.code.startsWith('UPSTREAM_') &&
      err.code !== 'UPSTREAM_TOO_LARGE'

    /** A miss: stream the answer through, keeping a copy when it may be stored and fits. */
    function fetchAndStore(
      c: Context<Env>,
      l: Lookup,
      flight?: Flight<CacheEntry>
    ): Promise<Response> {
      if (l.stale !== undefined) return refetch(c, l, l.stale, flight)
      count('miss', l.route)
      c.get('notes').cache = 'MISS'
      const head = c.get('upstream').method === 'HEAD'
      return forwarder.pipe(c, (status, headers): ResponseSink | undefined => {
        headers['x-cache'] = 'MISS'
        // Neither asked for before (minUses) nor awaited by another request: nothing will be stored,
        // so nothing is kept, and the flight ends now (a request for the key from here on leads its own).
        if (head || !(l.admit || flight?.waited === true)) {
          flight?.settle(undefined)
          return undefined
        }
        const plan = storagePlan(status, headers, limits)
        if (plan === undefined) return undefined
        plan.ttlMs = Math.min(plan.ttlMs, l.maxAgeMs)
        const now = Date.now()
        if (
          memory.held(l.cls, l.id, now, holdMs) ||
          (l.gens !== undefined && l.gens.some((g) => g > now - holdMs))
        )
          return undefined
        const declared =
          headers['content-length'] === undefined ? undefined : Number(headers['content-length'])
        if (declared !== undefined && !(declared <= maxEntryBytes)) return undefined
        let chunks: Buffer[] | undefined = []
        let size = 0
        return {
          start: noop,
          data(chunk) {
            if (chunks !== undefined) {
              size += chunk.length
              if (size > maxEntryBytes) chunks = undefined
              else chunks.push(chunk)
            }
            return true
          },
          end() {
            // Stored when asked for before (minUses), or by several at once (then the waiters get it too).
            if (chunks === undefined || (declared !== undefined && declared !== size))
              return flight?.settle(undefined)
            const at = Date.now()
            const entry = buildEntry(headers, bodyOf(chunks, size), plan, at, l.seq)
            keep(l, entry, at)
            flight?.settle(entry)
          },
          fail() {
            flight?.settle(undefined)
          },
        }
      })
    }

    /**
     * A `no-cache` entry (person thumbnails): ask Immich with the stored validators; a 304 serves the
     * stored bytes, anything else replaces or drops the entry.
     */
    async function revalidate(c: Context<Env>, l: Lookup, entry: CacheEntry): Promise<Response> {
      const edits = c.get('upstream').headerEdits
      edits['if-none-match'] = entry.headers.etag ?? null
      edits['if-modified-since'] = entry.headers['last-modified'] ?? null
      let answer
      try {
        answer = await forwarder.capture(c, maxEntryBytes)
      } catch (err) {
        if (upstreamFailure(err) && servableOnError(entry, Date.now()))
          return send(c, entry, 'stale', l.route, Date.now())
        if (!(err instanceof GatewayError && err.code === 'UPSTREAM_TOO_LARGE')) throw err
        // The image grew past the bound: fetch it again, streamed, the client's own conditionals restored.
        memory.delete(l.key)
        delete edits['if-none-match']
        delete edits['if-modified-since']
        return fetchAndStore(c, { ...l, gens: undefined, stale: undefined })
      }
      const now = Date.now()
      if (answer.status === 304) {
        entry.storedAt = now
        return send(c, entry, 'revalidated', l.route, now)
      }
      if (answer.status >= 500 && servableOnError(entry, now))
        return send(c, entry, 'stale', l.route, now)
      return answerCaptured(c, l, answer, now)
    }

    /**
     * The key has an entry past its TTL that may stand in for a failure: the answer is taken whole
     * (thumbnails are small), so a 5xx can still be replaced by the stale entry before anything is sent.
     */
    async function refetch(
      c: Context<Env>,
      l: Lookup,
      stale: CacheEntry,
      flight?: Flight<CacheEntry>
    ): Promise<Response> {
      let answer
      try {
        answer = await forwarder.capture(c, maxEntryBytes)
      } catch (err) {
        flight?.settle(undefined)
        if (upstreamFailure(err) && servableOnError(stale, Date.now()))
          return send(c, stale, 'stale', l.route, Date.now())
        if (!(err instanceof GatewayError && err.code === 'UPSTREAM_TOO_LARGE')) throw err
        memory.delete(l.key)
        return fetchAndStore(c, { ...l, gens: undefined, stale: undefined })
      }
      const now = Date.now()
      if (answer.status >= 500 && servableOnError(stale, now)) {
        flight?.settle(undefined)
        return send(c, stale, 'stale', l.route, now)
      }
      const response = answerCaptured(c, l, answer, now, flight)
      flight?.settle(undefined)
      return response
    }

    /**
     * Immich's whole answer for a key that had an entry: stored (and sent as a miss) when it may be,
     * otherwise sent as it is. Any answer but a 304 or a 5xx replaces the old entry: a 401 or 404 now
     * means the old bytes must not stand in for anything later.
     */
    function answerCaptured(
      c: Context<Env>,
      l: Lookup,
      answer: CapturedResponse,
      now: number,
      flight?: Flight<CacheEntry>
    ): Response {
      if (answer.status !== 304) drop(l.key)
      const plan =
        c.get('upstream').method === 'GET'
          ? storagePlan(answer.status, answer.headers, limits)
          : undefined
      if (plan !== undefined && l.admit && !memory.held(l.cls, l.id, now, holdMs)) {
        plan.ttlMs = Math.min(plan.ttlMs, l.maxAgeMs)
        const fresh = buildEntry(answer.headers, answer.body, plan, now, l.seq)
        keep(l, fresh, now)
        flight?.settle(fresh)
        return send(c, fresh, 'miss', l.route, now)
      }
      count('miss', l.route)
      c.get('notes').cache = 'MISS'
      return writeAnswer(c, answer.status, { ...answer.headers, 'x-cache': 'MISS' }, answer.body)
    }

    /** Serves from an entry that is fresh for this principal. */
    function use(
      c: Context<Env>,
      l: Lookup,
      entry: CacheEntry,
      now: number
    ): Response | Promise<Response> {
      return entry.revalidate ? revalidate(c, l, entry) : send(c, entry, 'hit', l.route, now)
    }

    /**
     * A lookup. Synchronous up to the upstream fetch (a memory hit is answered without an async
     * frame); Redis lookups and waits for another request's fetch are the async parts.
     */
    function serve(
      c: Context<Env>,
      next: Next,
      match: RouteMatch,
      cls: CacheClass
    ): Promise<Response | void> {
      const route = match.route.path
      const principal = c.get('principal')
      const maxAgeMs = maxAgeFor(c)
      if (
        principal.kind === 'anonymous' ||
        maxAgeMs === 0 ||
        c.env.incoming.headers.range !== undefined
      )
        return bypass(c, next, route)
      const id = (match.params.id ?? '').toLowerCase()
      const url = c.get('upstream').url
      const q = url.indexOf('?')
      const identity =
        principal.kind === 'shared-link'
          ? `${principal.upstreamIdentity}\0${sharedLinkToken(c.env.incoming.headers.cookie)}`
          : principal.upstreamIdentity
      const key = cacheKey(
        cls,
        id,
        identity,
        q === -1 ? '' : url.slice(q + 1),
        principal.albums?.tag
      )
      if (key === undefined) return bypass(c, next, route)
      const now = Date.now()
      const l: Lookup = { key, cls, id, route, seq: memory.snapshot(), maxAgeMs, admit: true }
      const entry = memory.get(key, cls, id, now)
      if (entry !== undefined) {
        if (entry.expiresAt > now && now - entry.storedAt < maxAgeMs)
          return Promise.resolve(use(c, l, entry, now))
        if (servableOnError(entry, now)) {
          // Immich known down: the stale entry at once, nothing waits on Immich.
          if (health.refusing) return Promise.resolve(send(c, entry, 'stale', route, now))
          l.stale = entry
        }
      }
      l.admit = doorkeeper === undefined || doorkeeper.seen(key)
      // HEAD misses pass through (no body to keep) and lead no fetch.
      if (c.get('upstream').method === 'HEAD') return fetchAndStore(c, l)

      const inFlight = flights.waitFor(key)
      if (inFlight !== undefined) return follow(c, l, inFlight)
      const flight = flights.lead(key)
      // Settled by the sink when the answer is stored; this covers every other ending (not storable,
      // refused upstream, aborted), so no follower waits forever.
      const unsettled = () => flight.settle(undefined)
      if (redis === undefined && disk === undefined)
        return fetchAndStore(c, l, flight).finally(unsettled)
      return lookupTiers(c, l, flight).finally(unsettled)
    }

    /** Another request is fetching this key: wait for its answer. */
    async function follow(
      c: Context<Env>,
      l: Lookup,
      inFlight: Promise<CacheEntry | undefined>
    ): Promise<Response> {
      metrics.cacheCoalesced.inc()
      const shared = await inFlight
      if (shared !== undefined) return send(c, shared, 'hit', l.route, Date.now())
      // The leader's answer was not storable: fetch alone (a fresh leader would serialize the waiters).
      return fetchAndStore(c, { ...l, seq: memory.snapshot() })
    }

    /**
     * Not fresh in memory: ask the disk tier, then the shared tier (Redis), then Immich. An entry past
     * its TTL found on the way is kept in memory as the stand-in for a failed answer.
     */
    async function lookupTiers(
      c: Context<Env>,
      l: Lookup,
      flight: Flight<CacheEntry>
    ): Promise<Response> {
      if (disk !== undefined) {
        const found = await disk.get(l.key, l.seq, Date.now())
        if (found !== undefined) {
          const served = useFound(c, l, flight, found)
          if (served !== undefined) return served
        }
      }
      if (redis !== undefined) {
        const found = await redis.lookup(l.key, l.cls, l.id, l.seq, Date.now())
        if (found?.entry !== undefined) {
          const served = useFound(c, l, flight, found.entry)
          if (served !== undefined) return served
        }
        l.gens = found?.gens
      }
      if (l.stale !== undefined && health.refusing) {
        flight.settle(undefined)
        return send(c, l.stale, 'stale', l.route, Date.now())
      }
      return fetchAndStore(c, l, flight)
    }

    /** An entry from a lower tier: served when fresh, else remembered as the lookup's stale stand-in. */
    function useFound(
      c: Context<Env>,
      l: Lookup,
      flight: Flight<CacheEntry>,
      found: CacheEntry
    ): Response | Promise<Response> | undefined {
      const now = Date.now()
      if (found.expiresAt > now && now - found.storedAt < l.maxAgeMs) {
        memory.set(l.key, found, l.cls, l.id)
        flight.settle(found.revalidate ? undefined : found)
        return use(c, l, found, now)
      }
      if (l.stale === undefined && servableOnError(found, now)) {
        memory.set(l.key, found, l.cls, l.id)
        l.stale = found
      }
      return undefined
    }

    /** Lets the change through, then voids what it touched (unless Immich refused it with a 4xx). */
    async function invalidateAfter(
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
      memory.invalidate(rule.cls, ids, at)
      disk?.invalidate(rule.cls, ids)
      // Not awaited (the answer is out; the access line should not wait for Redis). This replica's
      // next lookup still sees it: commands on one connection run in order.
      if (redis !== undefined) void redis.invalidate(rule.cls, ids, at)
    }

    // Requests the cache does not concern pass by synchronously.
    return function thumbnailCacheMiddleware(c, next) {
      const match = c.get('route')
      if (match === undefined || c.env.upgrade !== undefined || c.env.outgoing === undefined)
        return next()
      const method = c.get('upstream').method
      if (method === 'GET' || method === 'HEAD') {
        const cls = CACHEABLE_ROUTES.get(match.route.path)
        return cls === undefined ? next() : serve(c, next, match, cls)
      }
      const rule = INVALIDATION_RULES.get(`${method} ${match.route.path}`)
      return rule === undefined ? next() : invalidateAfter(c, next, rule, match)
    }
  },
})
