import { freePort } from '../../support/http.js'

export { freePort }
/**
 * Test helpers for the limiter suites: a real Redis (the machine's shared one, or a private
 * `redis-server` child a test may kill and restart), free ports, a unique key prefix, plain requests.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { Redis } from 'ioredis'
import { request } from 'undici'

export const SHARED_REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379'

async function pings(url: string): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: 1000,
  })
  client.on('error', () => {})
  try {
    await client.connect()
    return (await client.ping()) === 'PONG'
  } catch {
    return false
  } finally {
    client.disconnect()
  }
}

/**
 * The shared Redis URL when one answers. Without one: with CI_REQUIRE_REDIS set, throws (the suite
 * must not pass by skipping); otherwise undefined, and the caller skips with a message.
 */
export async function redisOrSkip(suite: string): Promise<string | undefined> {
  if (await pings(SHARED_REDIS_URL)) return SHARED_REDIS_URL
  const message = `${suite}: no Redis answers at ${SHARED_REDIS_URL}`
  if (process.env.CI_REQUIRE_REDIS) throw new Error(`${message} and CI_REQUIRE_REDIS is set`)
  console.warn(`SKIPPED ${message} (set TEST_REDIS_URL, or CI_REQUIRE_REDIS=1 to make this fatal)`)
  return undefined
}

/** Whether a private redis-server can be started (the binary is on PATH); same skip/fail rules. */
export function redisServerOrSkip(suite: string): boolean {
  const found = spawnSync('redis-server', ['--version'], { stdio: 'ignore' }).status === 0
  if (found) return true
  const message = `${suite}: no redis-server binary to start a private Redis`
  if (process.env.CI_REQUIRE_REDIS) throw new Error(`${message} and CI_REQUIRE_REDIS is set`)
  console.warn(`SKIPPED ${message}`)
  return false
}

export function uniquePrefix(name: string): string {
  return `test:${name}:${randomBytes(6).toString('hex')}`
}

export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition'
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`timed out waiting for ${what}`)
}

/** A private Redis on its own port, no persistence: kill it and start it again on the same port. */
export class PrivateRedis {
  private child: ChildProcess | undefined
  private constructor(readonly port: number) {}

  static async start(): Promise<PrivateRedis> {
    const redis = new PrivateRedis(await freePort())
    await redis.start()
    return redis
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`
  }

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      {
        stdio: 'ignore',
      }
    )
    this.child = child
    await waitFor(() => pings(this.url), 10_000, `redis-server on port ${this.port}`)
  }

  /** SIGKILL: the connection drops at once, as when a Redis host dies. */
  async kill(): Promise<void> {
    const child = this.child
    if (!child || child.exitCode !== null) return
    const exited = new Promise((r) => child.once('exit', r))
    child.kill('SIGKILL')
    await exited
    this.child = undefined
  }

  /** SIGSTOP / SIGCONT: the connection stays open but nothing answers (a hung Redis). */
  pause(): void {
    this.child?.kill('SIGSTOP')
  }

  resume(): void {
    this.child?.kill('SIGCONT')
  }

  async stop(): Promise<void> {
    this.resume()
    await this.kill()
  }
}

export interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

/** One request with undici; the body read as text. */
export async function send(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {}
): Promise<Answer> {
  const res = await request(url, {
    method: (options.method ?? 'GET') as 'GET',
    headers: options.headers,
    body: options.body,
  })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

/** Status counts of a batch of answers. */
export function tally(answers: { status: number }[]): Record<number, number> {
  const out: Record<number, number> = {}
  for (const a of answers) out[a.status] = (out[a.status] ?? 0) + 1
  return out
}
