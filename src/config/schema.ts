import { isIP } from 'node:net'
import { z } from 'zod'
import { addressEntryProblem } from '../net.js'

const seconds = (def: number, what: string) =>
  z
    .number()
    .positive()
    .max(86_400 * 7)
    .default(def)
    .describe(what)

/**
 * An http(s) URL with no path beyond `/`, no query and no user:password: Immich must be served at the
 * root of its host, and the URL is logged at start.
 */
const upstreamUrl = z
  .string()
  .url('expected an http(s) URL like http://immich-server:2283')
  .refine(
    (u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol),
    'expected an http:// or https:// URL'
  )
  .refine((u) => {
    if (!URL.canParse(u)) return true
    const url = new URL(u)
    return url.pathname === '/' && !url.search && !url.hash
  }, 'expected no path, query or fragment: Immich is served at the root of its host (http://immich-server:2283)')
  .refine((u) => {
    if (!URL.canParse(u)) return true
    const url = new URL(u)
    return !url.username && !url.password
  }, 'expected no user:password in the URL (the gateway authenticates to Immich with API keys)')

/** A list of IP addresses and CIDR ranges; each bad entry is named with its index. */
const addressList = z.array(
  z.string().superRefine((entry, ctx) => {
    const problem = addressEntryProblem(entry)
    if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
  })
)

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*$/

/** An address to listen on: an IP address or a host name (resolved by the listener). */
const listenHost = z
  .string()
  .min(1)
  .refine((h) => isIP(h) !== 0 || HOSTNAME.test(h), 'expected an IP address or a host name')

export const serverSchema = z
  .object({
    host: listenHost.default('0.0.0.0').describe('Address to listen on (env HOST).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(8080)
      .describe('Port to listen on (env PORT).'),
    trustedProxies: addressList
      .default([])
      .describe(
        'CIDRs or addresses of proxies in front of the gateway whose X-Forwarded-For is believed.'
      ),
    shutdownGraceSeconds: seconds(
      30,
      'On SIGTERM, how long in-flight requests may take to finish.'
    ),
    maxHeaderBytes: z
      .number()
      .int()
      .min(1024)
      .max(1_048_576)
      .default(32_768)
      .describe(
        'Largest request header block accepted (all header lines together, repeated names included); larger gets 431.'
      ),
    maxHeaders: z
      .number()
      .int()
      .min(16)
      .max(10_000)
      .default(200)
      .describe('Most header lines a request may carry; more gets 431.'),
    headersTimeoutSeconds: seconds(
      30,
      'A client must send its whole request head within this time, else 408 and the connection is closed (nginx: client_header_timeout).'
    ),
    maxConnectionsPerAddress: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(256)
      .describe(
        'Open connections one client address may hold at once; past it new ones are closed at once. Trusted proxies are exempt.'
      ),
  })
  .strict()

export const upstreamSchema = z
  .object({
    url: upstreamUrl
      .default('http://127.0.0.1:2283')
      .describe('The Immich server (env IMMICH_URL).'),
    headersTimeoutSeconds: seconds(
      600,
      'Answer 504 when Immich sends no response headers within this time (Immich docs advise 600 s).'
    ),
    connectTimeoutSeconds: seconds(
      10,
      'Answer 502 when a connection to Immich cannot be opened within this time.'
    ),
    connections: z
      .number()
      .int()
      .min(1)
      .max(4096)
      .default(256)
      .describe('Keep-alive connections per upstream.'),
    keepAliveTimeoutSeconds: seconds(
      4,
      "Idle keep-alive sockets are closed after this (below Immich's own 5 s)."
    ),
  })
  .strict()

export const metricsSchema = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe('Record request metrics (off only to measure their cost; /metrics still answers).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .optional()
      .describe('Serve /metrics on its own listener at this port (env METRICS_PORT).'),
    host: listenHost
      .default('127.0.0.1')
      .describe(
        'Address of the metrics listener; loopback by default so it is never public by accident.'
      ),
    bearerTokenEnv: z
      .string()
      .regex(/^[A-Z_][A-Z0-9_]*$/, 'expected an environment variable name')
      .optional()
      .describe(
        'Also serve /metrics on the main port, to requests bearing the token held in this env var.'
      ),
  })
  .strict()

export const configSchema = z
  .object({
    server: serverSchema.default(serverSchema.parse({})),
    upstream: upstreamSchema.default(upstreamSchema.parse({})),
    logging: z
      .object({
        level: z
          .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
          .default('info')
          .describe('env LOG_LEVEL'),
        accessLog: z.boolean().default(true).describe('One JSON line per request (at level info).'),
      })
      .strict()
      .default({ level: 'info', accessLog: true }),
    metrics: metricsSchema.default(metricsSchema.parse({})),
    redis: z
      .object({
        url: z
          .string()
          .url('expected a URL like redis://redis:6379')
          .refine(
            (u) => URL.canParse(u) && /^rediss?:$/.test(new URL(u).protocol),
            'expected a redis:// or rediss:// URL'
          )
          .optional()
          .describe('Redis for shared limits and cache (env REDIS_URL); unset → in memory.'),
      })
      .strict()
      .default({}),
    /** Policy options, validated by each policy's own schema (policies/index.ts). */
    policies: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()

export type GatewayConfig = z.infer<typeof configSchema>
