/**
 * Issue 4, "done when", with real Redis and real gateways: replicas share one budget, losing Redis
 * neither fails nor unlimits requests, and counting is shared again once Redis is back.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  startFakeImmich,
  type FakeImmich,
} from '../fake-immich/server.js'
import { childEnv, startStack, type Stack } from '../support/stack.js'
import {
  freePort,
  PrivateRedis,
  redisOrSkip,
  redisServerOrSkip,
  send,
  tally,
  uniquePrefix,
  waitFor,
} from '../policies/rate-limit/support.js'

const sharedUrl = await redisOrSkip('ratelimit e2e (shared Redis)')
const canSpawn = redisServerOrSkip('ratelimit e2e (Redis outage)')

let immich: FakeImmich
beforeAll(async () => {
  immich = await startFakeImmich({ maxRecordedRequests: 10_000 })
})
afterAll(() => immich.close())

const stacks: Stack[] = []
afterEach(async () => {
  for (const s of stacks.splice(0)) await s.close()
  immich.reset()
})

/**
 * A gateway on `redisUrl`. Both limiter policies get a fresh key prefix unless the test sets one: the
 * shared Redis also holds the counters of every other suite running now under the default prefixes.
 */
async function gateway(
  redisUrl: string,
  policies: Record<string, Record<string, unknown>>,
  server: Record<string, unknown> = {}
): Promise<Stack> {
  const fresh = {
    'rate-limit': { keyPrefix: uniquePrefix('rl'), ...policies['rate-limit'] },
    'login-guard': { keyPrefix: uniquePrefix('login'), ...policies['login-guard'] },
  }
  const stack = await startStack(
    { redis: { url: redisUrl }, server, policies: { ...policies, ...fresh } },
    { immich }
  )
  stacks.push(stack)
  await waitFor(() => stack.gateway.deps.redis?.status === 'ready', 10_000, 'gateway Redis ready')
  return stack
}

/** `count` requests spread round-robin over the gateways, `concurrency` at a time. */
async function spread(
  urls: string[],
  count: number,
  path: string,
  headers: Record<string, string> = {},
  concurrency = 10
) {
  const answers: { status: number; via: number; headers: Record<string, unknown> }[] = []
  let next = 0
  async function worker() {
    while (next < count) {
      const i = next++
      const a = await send(`${urls[i % urls.length]}${path}`, { headers })
      answers.push({ status: a.status, via: i % urls.length, headers: a.headers })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return answers
}

describe.runIf(sharedUrl)('two gateways, one Redis', () => {
  it('budget 100, 150 requests split over two in-process gateways: exactly 100 pass', async () => {
    const policies = {
      'rate-limit': {
        keyPrefix: uniquePrefix('e2e'),
        classes: { api: { points: 100, durationSeconds: 60 } },
      },
    }
    const a = await gateway(sharedUrl!, policies)
    const b = await gateway(sharedUrl!, policies)
    const answers = await spread([a.url, b.url], 150, '/api/server/ping')
    expect(tally(answers)).toEqual({ 200: 100, 429: 50 })
    // Both replicas let some through and refused some: the budget is one, not two of 75.
    for (const via of [0, 1])
      expect(answers.filter((x) => x.via === via && x.status === 429).length).toBeGreaterThan(0)
    expect(immich.requestsTo('/api/server/ping')).toHaveLength(100)
  }, 30_000)

  it('login guard: failures on either replica count together', async () => {
    const policies = { 'login-guard': { keyPrefix: uniquePrefix('e2e-login') } }
    const a = await gateway(sharedUrl!, policies)
    const b = await gateway(sharedUrl!, policies)
    const attempt = (url: string, password: string) =>
      send(`${url}/api/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: ADMIN_EMAIL, password }),
      })
    for (let i = 0; i < 10; i++)
      expect((await attempt(i % 2 ? a.url : b.url, 'wrong')).status).toBe(401)
    expect((await attempt(a.url, ADMIN_PASSWORD)).status).toBe(429)
    expect((await attempt(b.url, ADMIN_PASSWORD)).status).toBe(429)
    expect(immich.loginAttempts()).toBe(10)
  }, 30_000)
})

describe.runIf(sharedUrl)('two gateway processes, one Redis', () => {
  const children: ChildProcess[] = []
  let dir: string | undefined
  afterAll(async () => {
    await Promise.all(
      children.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            child.once('exit', () => resolve())
            child.kill('SIGTERM')
          })
      )
    )
    if (dir) rmSync(dir, { recursive: true, force: true })
  })

  async function spawnGateway(configFile: string): Promise<string> {
    const port = await freePort()
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      cwd: join(import.meta.dirname, '../..'),
      env: childEnv({
        GATEWAY_CONFIG: configFile,
        IMMICH_URL: immich.url,
        REDIS_URL: sharedUrl,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
      }),
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
    children.push(child)
    const url = `http://127.0.0.1:${port}`
    await waitFor(
      async () => {
        if (child.exitCode !== null)
          throw new Error(`gateway process exited ${child.exitCode}: ${stderr}`)
        return (await send(`${url}/readyz`).catch(() => ({ status: 0 }))).status === 200
      },
      30_000,
      `gateway process on port ${port}`
    )
    return url
  }

  it('budget 100, 150 requests split over two `node src/main.ts` processes: exactly 100 pass', async () => {
    dir = mkdtempSync(join(tmpdir(), 'igw-ratelimit-'))
    const configFile = join(dir, 'gateway.yaml')
    writeFileSync(
      configFile,
      stringify({
        policies: {
          'rate-limit': {
            keyPrefix: uniquePrefix('e2e-proc'),
            classes: { api: { points: 100, durationSeconds: 60 } },
          },
        },
      })
    )
    const [a, b] = await Promise.all([spawnGateway(configFile), spawnGateway(configFile)])
    const answers = await spread([a!, b!], 150, '/api/server/ping')
    expect(tally(answers)).toEqual({ 200: 100, 429: 50 })
    for (const via of [0, 1])
      expect(answers.filter((x) => x.via === via && x.status === 429).length).toBeGreaterThan(0)
    const refused = answers.find((x) => x.status === 429)!
    expect(refused.headers['ratelimit-policy']).toBe('"api";q=100;w=60')
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0)
  }, 60_000)
})

describe.runIf(canSpawn)('Redis stopped mid-run', () => {
  let redis: PrivateRedis
  beforeAll(async () => {
    redis = await PrivateRedis.start()
  })
  afterAll(() => redis.stop())

  it('requests keep being served and limited per process; shared counting resumes when Redis is back', async () => {
    const policies = {
      'rate-limit': {
        keyPrefix: uniquePrefix('outage'),
        classes: { api: { points: 20, durationSeconds: 60 } },
      },
    }
    // Trusting the test's own address lets each phase speak as a different client (X-Forwarded-For).
    const server = { trustedProxies: ['127.0.0.1'] }
    const a = await gateway(redis.url, policies, server)
    const b = await gateway(redis.url, policies, server)
    const urls = [a.url, b.url]
    const as = (client: string) => ({ 'x-forwarded-for': client })
    const all: { status: number }[] = []

    // Redis up: one shared budget.
    const before = await spread(urls, 30, '/api/server/ping', as('198.51.100.1'))
    all.push(...before)
    expect(tally(before)).toEqual({ 200: 20, 429: 10 })

    // Redis killed while requests are in flight: every one is answered, 200 or 429, never an error.
    const pingsBefore = immich.requestsTo('/api/server/ping').length
    const inFlight = spread(urls, 60, '/api/server/ping', as('198.51.100.2'), 4)
    await waitFor(
      () => immich.requestsTo('/api/server/ping').length > pingsBefore,
      5000,
      'the second phase under way'
    )
    await redis.kill()
    all.push(...(await inFlight))
    await waitFor(
      () => a.gateway.deps.redis!.status !== 'ready' && b.gateway.deps.redis!.status !== 'ready',
      5000,
      'gateways see Redis down'
    )

    // Redis down: each process counts alone, the full budget each (insuranceDivisor 1).
    const downA = await spread([a.url], 25, '/api/server/ping', as('198.51.100.3'))
    const downB = await spread([b.url], 25, '/api/server/ping', as('198.51.100.3'))
    all.push(...downA, ...downB)
    expect(tally(downA)).toEqual({ 200: 20, 429: 5 })
    expect(tally(downB)).toEqual({ 200: 20, 429: 5 })
    for (const s of [a, b]) {
      const metrics = s.gateway.deps.metrics
      expect((await metrics.rateLimitInsurance.get()).values[0]?.value).toBe(1)
      expect((await metrics.rateLimitStoreErrors.get()).values[0]?.value).toBeGreaterThanOrEqual(25)
    }
    expect(a.logs.some((l) => l.includes('"rateLimitStore":"insurance"'))).toBe(true)

    // Redis back (empty: no persistence): one shared budget again.
    await redis.start()
    await waitFor(
      () => a.gateway.deps.redis!.status === 'ready' && b.gateway.deps.redis!.status === 'ready',
      15_000,
      'gateways reconnected'
    )
    const after = await spread(urls, 30, '/api/server/ping', as('198.51.100.4'))
    all.push(...after)
    expect(tally(after)).toEqual({ 200: 20, 429: 10 })
    for (const s of [a, b])
      expect((await s.gateway.deps.metrics.rateLimitInsurance.get()).values[0]?.value).toBe(0)

    expect(all.filter((x) => x.status !== 200 && x.status !== 429)).toEqual([])
  }, 60_000)
})
