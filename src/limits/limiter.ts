/**
 * Counters shared by the rate-limit and login-guard policies: rate-limiter-flexible in memory, or in
 * Redis with a store-error mode (an in-memory insurance limiter, fail open, or fail closed).
 *
 * We handle the store error ourselves instead of handing the library an `insuranceLimiter`: the library
 * swallows the error, and we must count it (`rateLimitStoreErrors`) and show when the insurance stands
 * in (`rateLimitInsurance`). The insurance limiter is the same RateLimiterMemory the library would use.
 */
import type { Redis } from 'ioredis'
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes } from 'rate-limiter-flexible'
import { z } from 'zod'
import type { Deps } from '../deps.js'
import { GatewayError } from '../errors.js'

const STORE_ERROR_MODES = ['insurance', 'fail-open', 'fail-closed'] as const
export type StoreErrorMode = (typeof STORE_ERROR_MODES)[number]

/** The store options both limiter policies take (spread into their zod schemas). */
export const storeOptionsShape = {
  keyPrefix: z
    .string()
    .regex(/^[\w:.-]{1,64}$/, 'expected 1-64 characters of letters, digits, _ : . -')
    .describe(
      'Prefix of the Redis keys (and of the in-memory counters). Replicas sharing a budget must use the same one.'
    ),
  onStoreError: z
    .enum(STORE_ERROR_MODES)
    .default('insurance')
    .describe(
      "When Redis fails or is too slow: `insurance` counts in this process's memory until Redis answers again, " +
        '`fail-open` lets the request through uncounted, `fail-closed` answers 503. Without Redis this has no effect.'
    ),
  insuranceDivisor: z
    .number()
    .int()
    .min(1)
    .max(1000)
    .default(1)
    .describe(
      'While Redis is down each replica counts alone: its insurance budget is the budget divided by this. ' +
        'Set it to the number of replicas to keep the total budget; 1 lets each replica allow the full budget.'
    ),
  storeTimeoutMs: z
    .number()
    .int()
    .min(5)
    .max(10_000)
    .default(250)
    .describe(
      'A Redis call slower than this counts as a store error (a hung Redis must not hang requests).'
    ),
} as const

export interface StoreOptions {
  keyPrefix: string
  onStoreError: StoreErrorMode
  insuranceDivisor: number
  storeTimeoutMs: number
}

export interface Budget {
  points: number
  durationSeconds: number
  /** Once over budget, refuse for this long (login guard); default: until the window ends. */
  blockSeconds?: number
}

export interface LimitOutcome {
  allowed: boolean
  /** Points left in the window (0 when refused). */
  remaining: number
  /** Milliseconds until the window (or the block) ends. */
  resetMs: number
  /** Who answered: `memory` (no Redis configured), `redis`, `insurance`, or `open` (fail-open). */
  via: 'memory' | 'redis' | 'insurance' | 'open'
}

/** One budget, keyed by caller-chosen strings. Never rejects except with a GatewayError (fail-closed). */
export interface Limiter {
  /** Counts one point for `key`; `allowed` is false once the budget is spent. */
  consume(key: string): Promise<LimitOutcome>
  /** Gives `points` back (an attempt that turned out not to count). */
  reward(key: string, points?: number): Promise<void>
  /** Forgets `key` entirely (a successful login resets its account counter). */
  reset(key: string): Promise<void>
}

class StoreTimeout extends Error {
  override name = 'StoreTimeout'
}

/**
 * Redis health as the limiters see it, one per Redis client: counts errors, raises the insurance gauge
 * when the insurance answers in Redis's place and lowers it at the first Redis call that succeeds.
 */
class StoreHealth {
  private down = false
  private insuring = false

  constructor(private readonly deps: Deps) {}

  failed(err: unknown, insured: boolean): void {
    this.deps.metrics.rateLimitStoreErrors.inc({ store: 'redis' })
    if (!this.down) {
      this.down = true
      this.deps.logger.warn(
        { err: (err as Error)?.message },
        insured
          ? 'rate-limit store failing: counting in memory (insurance)'
          : 'rate-limit store failing'
      )
    }
    if (insured && !this.insuring) {
      this.insuring = true
      this.deps.metrics.rateLimitInsurance.set(1)
    }
  }

  succeeded(): void {
    if (!this.down) return
    this.down = false
    if (this.insuring) {
      this.insuring = false
      this.deps.metrics.rateLimitInsurance.set(0)
    }
    this.deps.logger.info('rate-limit store answering again: shared counting resumed')
  }
}

const healthByClient = new WeakMap<Redis, StoreHealth>()

function healthOf(deps: Deps, redis: Redis): StoreHealth {
  let health = healthByClient.get(redis)
  if (!health) healthByClient.set(redis, (health = new StoreHealth(deps)))
  return health
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new StoreTimeout(`no answer within ${ms} ms`)), ms)
    promise.then(
      (value) => {
        clearTimeout(timer)
        resolve(value)
      },
      (err: unknown) => {
        clearTimeout(timer)
        reject(err)
      }
    )
  })
}

function memoryLimiter(
  budget: Budget,
  keyPrefix: string,
  points = budget.points
): RateLimiterMemory {
  return new RateLimiterMemory({
    keyPrefix,
    points,
    duration: budget.durationSeconds,
    blockDuration: budget.blockSeconds ?? 0,
  })
}

/** RateLimiterMemory's consume: resolves within the budget, rejects with a RateLimiterRes past it. */
async function consumeMemory(
  limiter: RateLimiterMemory,
  key: string,
  via: LimitOutcome['via']
): Promise<LimitOutcome> {
  try {
    const res = await limiter.consume(key)
    return { allowed: true, remaining: res.remainingPoints, resetMs: res.msBeforeNext, via }
  } catch (res) {
    return { allowed: false, remaining: 0, resetMs: (res as RateLimiterRes).msBeforeNext, via }
  }
}

/** A limiter in this process's memory only, whether or not Redis is configured. */
export function createLocalLimiter(budget: Budget, keyPrefix: string): Limiter {
  const memory = memoryLimiter(budget, keyPrefix)
  return {
    consume: (key) => consumeMemory(memory, key, 'memory'),
    async reward(key, points = 1) {
      await memory.reward(key, points)
    },
    async reset(key) {
      await memory.delete(key)
    },
  }
}

/**
 * Builds one limiter for `budget`: in memory without `deps.redis`, in Redis (shared by every replica
 * using the same `keyPrefix`) with it. Build once per policy, at boot.
 */
export function createLimiter(budget: Budget, store: StoreOptions, deps: Deps): Limiter {
  const redis = deps.redis
  if (!redis) return createLocalLimiter(budget, store.keyPrefix)

  const health = healthOf(deps, redis)
  const insuredPoints = Math.max(1, Math.floor(budget.points / store.insuranceDivisor))
  const insurance =
    store.onStoreError === 'insurance'
      ? memoryLimiter(budget, store.keyPrefix, insuredPoints)
      : undefined
  const shared = new RateLimiterRedis({
    storeClient: redis,
    keyPrefix: store.keyPrefix,
    points: budget.points,
    duration: budget.durationSeconds,
    blockDuration: budget.blockSeconds ?? 0,
    // Don't even try while ioredis is reconnecting: fail over at once instead of per-call errors.
    rejectIfRedisNotReady: true,
    // A key past its budget stays refused until its window ends: answer it from memory, sparing Redis
    // the traffic of a client that keeps knocking. Not with a block: a reset must take effect at once.
    ...(budget.blockSeconds ? {} : { inMemoryBlockOnConsumed: budget.points + 1 }),
  })

  function storeFailed(err: unknown): void {
    health.failed(err, insurance !== undefined)
  }

  /** Redis failed or was too slow: the configured store-error mode answers. */
  function withoutStore(key: string, err: unknown): Promise<LimitOutcome> | LimitOutcome {
    storeFailed(err)
    if (insurance) return consumeMemory(insurance, key, 'insurance')
    if (store.onStoreError === 'fail-open')
      return {
        allowed: true,
        remaining: budget.points,
        resetMs: budget.durationSeconds * 1000,
        via: 'open',
      }
    throw new GatewayError(503, 'RATE_LIMIT_STORE_DOWN', 'Service temporarily unavailable', {
      'Retry-After': '1',
    })
  }

  /** One count in Redis, for one request. */
  async function consumeOne(key: string): Promise<LimitOutcome> {
    try {
      const res = await withTimeout(shared.consume(key), store.storeTimeoutMs)
      health.succeeded()
      return {
        allowed: true,
        remaining: res.remainingPoints,
        resetMs: res.msBeforeNext,
        via: 'redis',
      }
    } catch (err) {
      if (err instanceof RateLimiterRes) {
        health.succeeded()
        return { allowed: false, remaining: 0, resetMs: err.msBeforeNext, via: 'redis' }
      }
      return withoutStore(key, err)
    }
  }

  /**
   * A client's requests arrive in bursts (a timeline opens 50 thumbnails at once): the requests for
   * one key that arrive in the same event-loop turn are counted in Redis with one command of n
   * points. Still exact: Redis returns the total after adding n, so the i-th of the n (in arrival
   * order) is allowed exactly when total - n + i ≤ budget, as if each had been counted alone.
   * Not for blocking budgets (the login guard): a block is decided by Redis per attempt.
   */
  const turn = new Map<string, ((outcome: LimitOutcome | Error) => void)[]>()
  let flushScheduled = false
  function flushTurn(): void {
    flushScheduled = false
    for (const [key, waiters] of turn) void countBatch(key, waiters)
    turn.clear()
  }
  async function countBatch(
    key: string,
    waiters: ((outcome: LimitOutcome | Error) => void)[]
  ): Promise<void> {
    const n = waiters.length
    let total: number
    let resetMs: number
    try {
      const res = await withTimeout(shared.consume(key, n), store.storeTimeoutMs)
      ;({ consumedPoints: total, msBeforeNext: resetMs } = res)
      health.succeeded()
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) {
        for (const answer of waiters) {
          try {
            answer(await withoutStore(key, err))
          } catch (refusal) {
            answer(refusal as Error)
          }
        }
        return
      }
      health.succeeded()
      // consumedPoints 0: refused from the in-memory block without asking Redis (over budget already).
      total = err.consumedPoints === 0 ? Infinity : err.consumedPoints
      resetMs = err.msBeforeNext
    }
    waiters.forEach((answer, i) => {
      const count = total - n + i + 1
      answer({
        allowed: count <= budget.points,
        remaining: Math.max(0, budget.points - count),
        resetMs,
        via: 'redis',
      })
    })
  }
  function consumeInTurn(key: string): Promise<LimitOutcome> {
    return new Promise((resolve, reject) => {
      let waiters = turn.get(key)
      if (waiters === undefined) turn.set(key, (waiters = []))
      waiters.push((outcome) => (outcome instanceof Error ? reject(outcome) : resolve(outcome)))
      if (!flushScheduled) {
        flushScheduled = true
        // After the I/O callbacks of this turn: every request read in it has asked by then.
        setImmediate(flushTurn)
      }
    })
  }

  return {
    consume: budget.blockSeconds ? consumeOne : consumeInTurn,
    async reward(key, points = 1) {
      try {
        await withTimeout(shared.reward(key, points), store.storeTimeoutMs)
        health.succeeded()
      } catch (err) {
        storeFailed(err)
        await insurance?.reward(key, points)
      }
    },
    async reset(key) {
      try {
        await withTimeout(shared.delete(key), store.storeTimeoutMs)
        health.succeeded()
      } catch (err) {
        storeFailed(err)
      }
      // The insurance may hold counts from an outage: a reset clears those too.
      await insurance?.delete(key)
    },
  }
}
