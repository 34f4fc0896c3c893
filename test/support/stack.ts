import { randomBytes } from 'node:crypto'
import { appendFileSync, mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { inject } from 'vitest'
import { Writable } from 'node:stream'
import type { MiddlewareHandler } from 'hono'
import { Registry } from 'prom-client'
import { resolveEnvironment } from '../../src/config/load.js'
import { configSchema, type GatewayConfig } from '../../src/config/schema.js'
import type { Env } from '../../src/env.js'
import { startGateway, type Gateway } from '../../src/gateway.js'
import { createLogger } from '../../src/observability/logging.js'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'

/** Every log line any test gateway of this file wrote, so a file can assert no secret was logged. */
export const capturedLogLines: string[] = []

/** The suite-wide audit (test/support/global-setup.ts): this file's log lines and secrets, appended. */
const auditDir = inject('secretsAuditDir')
const auditTag = `${process.pid}-${randomBytes(4).toString('hex')}`
export function auditLog(line: string): void {
  if (auditDir)
    appendFileSync(join(auditDir, `logs-${auditTag}`), line.endsWith('\n') ? line : `${line}\n`)
}
export function auditSecret(secret: string): void {
  if (auditDir) appendFileSync(join(auditDir, `secrets-${auditTag}`), `${secret}\n`)
}

export interface Stack {
  immich: FakeImmich
  gateway: Gateway
  url: string
  logs: string[]
  close(): Promise<void>
}

type DeepPartial<T> = {
  [K in keyof T]?: T[K] extends object | undefined ? DeepPartial<NonNullable<T[K]>> : T[K]
}

/** A real fake Immich and a real gateway in front of it, on ephemeral ports. */
export async function startStack(
  overrides: DeepPartial<GatewayConfig> & { policies?: Record<string, unknown> } = {},
  options: { immich?: FakeImmich; middleware?: MiddlewareHandler<Env>[] } = {}
): Promise<Stack> {
  const immich = options.immich ?? (await startFakeImmich())
  const config = buildConfig(immich.url, overrides)
  const logs: string[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      const line = chunk.toString()
      logs.push(line)
      capturedLogLines.push(line)
      auditLog(line)
      done()
    },
  })
  // The production logger (its redaction and serializers), writing to the capture.
  const logger = createLogger('info', sink)
  const gateway = await startGateway(config, {
    logger,
    registry: new Registry(),
    middleware: options.middleware,
  })
  return {
    immich,
    gateway,
    url: gateway.url,
    logs,
    async close() {
      await gateway.close()
      if (!options.immich) await immich.close()
    },
  }
}

/**
 * Redis key prefixes unique to this test file (each file loads its own copy of this module): suites
 * running at the same time against the machine's Redis never share counters or cache entries, while
 * the gateways of one file do, as replicas would.
 */
const RUN = randomBytes(4).toString('hex')
type Options = Record<string, unknown> & { redis?: Record<string, unknown> }
const REDIS_PREFIXES: Record<string, (o: Options) => Options> = {
  'rate-limit': (o) => ({ keyPrefix: `igw-test-${RUN}:rl`, ...o }),
  'login-guard': (o) => ({ keyPrefix: `igw-test-${RUN}:login`, ...o }),
  'thumbnail-cache': (o) => ({ ...o, redis: { keyPrefix: `igw-test-${RUN}:cache:`, ...o.redis } }),
}

function withTestPrefixes(policies: Record<string, unknown> = {}): Record<string, unknown> {
  const out: Record<string, unknown> = { ...policies }
  for (const [name, prefix] of Object.entries(REDIS_PREFIXES)) {
    const options = policies[name]
    if (options !== false) out[name] = prefix((options ?? {}) as Options)
  }
  return out
}

/** Config fields a test sets; the rest come from the schema's defaults. */
export type GatewayOverrides = Record<string, unknown> & {
  redis?: { url?: string } & Record<string, unknown>
  policies?: Record<string, unknown>
  server?: Record<string, unknown>
  upstream?: Record<string, unknown>
}

/**
 * The environment a test gateway sees: only the `IGW_TEST_*` variables the tests set themselves.
 * Nothing of the caller's environment (GATEWAY_KEYS_FILE, GATEWAY_CONFIG, IMMICH_URL...) and no file
 * of the working directory (no default keys file) reaches a test gateway.
 */
export function testEnvironment(): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const [name, value] of Object.entries(process.env))
    if (name.startsWith('IGW_TEST_') && value !== undefined) vars[name] = value
  return vars
}

const childDir = mkdtempSync(join(tmpdir(), 'igw-child-'))

/**
 * The environment of a gateway or CLI child process: PATH, a keys file in a fresh temp directory
 * (never the working directory's config/keys.yaml), the test's IGW_TEST_* variables, then `extra`.
 */
export function childEnv(
  extra: Record<string, string | undefined> = {}
): Record<string, string | undefined> {
  return {
    PATH: process.env.PATH ?? '',
    GATEWAY_KEYS_FILE: join(childDir, 'keys.yaml'),
    ...testEnvironment(),
    ...extra,
  }
}

export function buildConfig(upstreamUrl: string, overrides: GatewayOverrides = {}): GatewayConfig {
  const config = configSchema.parse({
    ...overrides,
    policies: overrides.redis?.url ? withTestPrefixes(overrides.policies) : overrides.policies,
    server: { host: '127.0.0.1', port: 0, shutdownGraceSeconds: 2, ...overrides.server },
    upstream: { url: upstreamUrl, ...overrides.upstream },
    logging: { level: 'info' },
  })
  return resolveEnvironment(config, testEnvironment())
}
