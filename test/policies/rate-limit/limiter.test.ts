/**
 * src/limits/limiter.ts against a real Redis: shared counting between two clients, and each
 * store-error mode with a private redis-server that is killed, hung and restarted.
 */
import { defaultCatalogue } from '../../../src/auth/scopes.js'
import { Redis } from 'ioredis'
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { configSchema } from '../../../src/config/schema.js'
import type { Deps } from '../../../src/deps.js'
import { GatewayError } from '../../../src/errors.js'
import { createLimiter, type StoreOptions } from '../../../src/limits/limiter.js'
import { Metrics } from '../../../src/observability/metrics.js'
import { DEFAULT_ROUTES_FILE } from '../../../src/gateway.js'
import { compileRouteTable, loadRouteTable } from '../../../src/routing/route-table.js'
import { createForwarder } from '../../../src/upstream/forward.js'
import { createUpstreamHealth } from '../../../src/upstream/health.js'
import { PrivateRedis, redisOrSkip, redisServerOrSkip, uniquePrefix, waitFor } from './support.js'

const sharedUrl = await redisOrSkip('limiter (shared Redis)')
const canSpawn = redisServerOrSkip('limiter (store errors)')

const opened: { close(): Promise<void> | void }[] = []
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close()
})

const routes = compileRouteTable(loadRouteTable(DEFAULT_ROUTES_FILE))

/** Deps as the gateway builds them: a Redis client without offline queue, fresh metrics. */
function makeDeps(redisUrl?: string): Deps {
  const forwarder = createForwarder(configSchema.parse({}))
  opened.push({ close: () => forwarder.close() })
  let redis: Redis | undefined
  if (redisUrl) {
    const client = new Redis(redisUrl, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      retryStrategy: () => 50,
    })
    client.on('error', () => {})
    opened.push({ close: () => client.disconnect() })
    redis = client
  }
  const logger = pino({ level: 'silent' })
  const metrics = new Metrics(new Registry(), { processMetrics: false })
  const health = createUpstreamHealth(configSchema.parse({}), { metrics, logger })
  return { logger, metrics, forwarder, routes, catalogue: defaultCatalogue(), redis, health }
}

function store(keyPrefix: string, extra: Partial<StoreOptions> = {}): StoreOptions {
  return {
    keyPrefix,
    onStoreError: 'insurance',
    insuranceDivisor: 1,
    storeTimeoutMs: 250,
    ...extra,
  }
}

async function ready(deps: Deps): Promise<void> {
  await waitFor(() => deps.redis!.status === 'ready', 10_000, 'ioredis ready')
}

async function gauge(deps: Deps): Promise<number> {
  return (await deps.metrics.rateLimitInsurance.get()).values[0]?.value ?? 0
}

async function storeErrors(deps: Deps): Promise<number> {
  return (await deps.metrics.rateLimitStoreErrors.get()).values[0]?.value ?? 0
}

async function consumeN(limiter: ReturnType<typeof createLimiter>, key: string, n: number) {
  const out = []
  for (let i = 0; i < n; i++) out.push(await limiter.consume(key))
  return out
}

describe('limiter in memory', () => {
  it('counts per key within the window, reports remaining and reset', async () => {
    const limiter = createLimiter({ points: 2, durationSeconds: 10 }, store('m'), makeDeps())
    const [a, b, c] = await consumeN(limiter, 'k', 3)
    expect([a!.allowed, b!.allowed, c!.allowed]).toEqual([true, true, false])
    expect([a!.remaining, b!.remaining, c!.remaining]).toEqual([1, 0, 0])
    expect(a!.via).toBe('memory')
    expect(c!.resetMs).toBeGreaterThan(9000)
    expect((await limiter.consume('other')).allowed).toBe(true)
    await limiter.reset('k')
    expect((await limiter.consume('k')).remaining).toBe(1)
  })
})

describe.runIf(sharedUrl)('limiter in Redis', () => {
  it('two clients (two replicas) share one budget', async () => {
    const prefix = uniquePrefix('shared')
    const one = makeDeps(sharedUrl)
    const two = makeDeps(sharedUrl)
    await Promise.all([ready(one), ready(two)])
    const a = createLimiter({ points: 10, durationSeconds: 30 }, store(prefix), one)
    const b = createLimiter({ points: 10, durationSeconds: 30 }, store(prefix), two)
    const outcomes = await Promise.all(
      Array.from({ length: 15 }, (_, i) => (i % 2 ? a : b).consume('client'))
    )
    expect(outcomes.filter((o) => o.allowed)).toHaveLength(10)
    expect(outcomes.every((o) => o.via === 'redis')).toBe(true)
    const ttl = await one.redis!.pttl(`${prefix}:client`)
    expect(ttl).toBeGreaterThan(25_000)
  })

  it('a burst in one event-loop turn is one Redis command, and exactly the budget passes, in arrival order', async () => {
    const prefix = uniquePrefix('burst')
    const deps = makeDeps(sharedUrl)
    await ready(deps)
    const limiter = createLimiter({ points: 10, durationSeconds: 30 }, store(prefix), deps)
    const commands: string[] = []
    const monitor = await deps.redis!.duplicate().monitor()
    opened.push({ close: () => void monitor.disconnect() })
    let monitoring = false
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.some((a) => a === `${prefix}:probe`)) {
        monitoring = true
        return
      }
      // Scripts only: MONITOR also lists the commands a script runs inside Redis.
      const name = args[0]!.toLowerCase()
      if ((name === 'eval' || name === 'evalsha') && args.some((a) => a.includes(prefix)))
        commands.push(name)
    })
    // MONITOR is on once it reports a command of ours.
    await waitFor(
      async () => {
        await deps.redis!.get(`${prefix}:probe`)
        return monitoring
      },
      2000,
      'MONITOR on'
    )
    // 4 first (one turn), then 8 more (another turn): the second batch crosses the budget midway.
    const first = await Promise.all(Array.from({ length: 4 }, () => limiter.consume('client')))
    const second = await Promise.all(Array.from({ length: 8 }, () => limiter.consume('client')))
    expect(first.map((o) => o.allowed)).toEqual([true, true, true, true])
    expect(first.map((o) => o.remaining)).toEqual([9, 8, 7, 6])
    expect(second.map((o) => o.allowed)).toEqual([true, true, true, true, true, true, false, false])
    expect(second.map((o) => o.remaining)).toEqual([5, 4, 3, 2, 1, 0, 0, 0])
    expect(Number(await deps.redis!.get(`${prefix}:client`))).toBe(12)
    await waitFor(() => commands.length >= 2, 2000, 'commands seen by MONITOR')
    expect(commands).toHaveLength(2) // one per turn, not one per request
    // Past the budget: refused (from rate-limiter-flexible's in-memory block, Redis not asked again).
    const third = await Promise.all(Array.from({ length: 3 }, () => limiter.consume('client')))
    expect(third.map((o) => o.allowed)).toEqual([false, false, false])
    expect(third.every((o) => o.resetMs > 25_000)).toBe(true)
  })

  it('a block (login guard) outlasts the window and a reset clears it everywhere', async () => {
    const prefix = uniquePrefix('block')
    const deps = makeDeps(sharedUrl)
    await ready(deps)
    const limiter = createLimiter(
      { points: 2, durationSeconds: 5, blockSeconds: 60 },
      store(prefix),
      deps
    )
    const out = await consumeN(limiter, 'k', 3)
    expect(out.map((o) => o.allowed)).toEqual([true, true, false])
    expect(out[2]!.resetMs).toBeGreaterThan(55_000)
    await limiter.reset('k')
    expect((await limiter.consume('k')).allowed).toBe(true)
  })
})

describe.runIf(canSpawn)('limiter when Redis fails', () => {
  async function privateRedis(): Promise<PrivateRedis> {
    const redis = await PrivateRedis.start()
    opened.push({ close: () => redis.stop() })
    return redis
  }

  it('insurance: counts in memory (budget / insuranceDivisor) while Redis is down, then hands back', async () => {
    const r = await privateRedis()
    const deps = makeDeps(r.url)
    await ready(deps)
    const limiter = createLimiter(
      { points: 10, durationSeconds: 60 },
      store(uniquePrefix('ins'), { insuranceDivisor: 2 }),
      deps
    )
    expect((await consumeN(limiter, 'k', 3)).every((o) => o.allowed && o.via === 'redis')).toBe(
      true
    )
    expect(await gauge(deps)).toBe(0)

    await r.kill()
    const during = await consumeN(limiter, 'k', 7)
    expect(during.every((o) => o.via === 'insurance')).toBe(true)
    // 10 / 2 = 5 per replica while Redis is away.
    expect(during.map((o) => o.allowed)).toEqual([true, true, true, true, true, false, false])
    expect(await gauge(deps)).toBe(1)
    expect(await storeErrors(deps)).toBe(7)

    await r.start()
    await ready(deps)
    const after = await limiter.consume('k')
    expect(after.via).toBe('redis')
    // A fresh Redis (no persistence): counting starts over, shared again.
    expect(after.allowed).toBe(true)
    expect(await gauge(deps)).toBe(0)
  }, 30_000)

  it('fail-open lets requests through uncounted; fail-closed refuses with 503', async () => {
    const r = await privateRedis()
    const deps = makeDeps(r.url)
    await ready(deps)
    const open = createLimiter(
      { points: 1, durationSeconds: 60 },
      store(uniquePrefix('open'), { onStoreError: 'fail-open' }),
      deps
    )
    const closed = createLimiter(
      { points: 1, durationSeconds: 60 },
      store(uniquePrefix('closed'), { onStoreError: 'fail-closed' }),
      deps
    )
    await r.kill()
    const opens = await consumeN(open, 'k', 3)
    expect(opens.every((o) => o.allowed && o.via === 'open')).toBe(true)
    const refused = await closed.consume('k').catch((e: unknown) => e)
    expect(refused).toBeInstanceOf(GatewayError)
    expect((refused as GatewayError).status).toBe(503)
    expect(await storeErrors(deps)).toBe(4)
    // Not insurance: the gauge stays down.
    expect(await gauge(deps)).toBe(0)
  })

  it('a hung Redis (SIGSTOP) costs at most storeTimeoutMs per call, then the insurance answers', async () => {
    const r = await privateRedis()
    const deps = makeDeps(r.url)
    await ready(deps)
    const limiter = createLimiter(
      { points: 5, durationSeconds: 60 },
      store(uniquePrefix('hung'), { storeTimeoutMs: 100 }),
      deps
    )
    expect((await limiter.consume('k')).via).toBe('redis')
    r.pause()
    try {
      const started = Date.now()
      const outcome = await limiter.consume('k')
      const took = Date.now() - started
      expect(outcome.via).toBe('insurance')
      expect(outcome.allowed).toBe(true)
      expect(took).toBeGreaterThanOrEqual(95)
      expect(took).toBeLessThan(1000)
      expect(await gauge(deps)).toBe(1)
    } finally {
      r.resume()
    }
    await waitFor(
      async () => (await limiter.consume('probe')).via === 'redis',
      10_000,
      'Redis answering again'
    )
    expect(await gauge(deps)).toBe(0)
  }, 30_000)
})
