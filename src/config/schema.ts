import { z } from 'zod'

const seconds = (def: number, what: string) =>
  z
    .number()
    .positive()
    .max(86_400 * 7)
    .default(def)
    .describe(what)

/** An http(s) URL with no path beyond `/`: Immich must be served at the root of its host. */
const upstreamUrl = z
  .string()
  .url('expected an http(s) URL like http://immich-server:2283')
  .refine(
    (u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol),
    'expected an http:// or https:// URL'
  )

export const serverSchema = z
  .object({
    host: z.string().min(1).default('0.0.0.0').describe('Address to listen on (env HOST).'),
    port: z
      .number()
      .int()
      .min(0)
      .max(65535)
      .default(8080)
      .describe('Port to listen on (env PORT).'),
    trustedProxies: z
      .array(z.string())
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
    // --- upstream health and circuit breaker (src/upstream/health.ts) ---
    health: z
      .object({
        intervalSeconds: z
          .number()
          .min(0.05)
          .max(300)
          .default(5)
          .describe(
            'How often `GET /api/server/ping` is asked (immich_gateway_upstream_up, /readyz, breaker recovery).'
          ),
        timeoutSeconds: z
          .number()
          .min(0.05)
          .max(60)
          .default(2)
          .describe('A probe without an answer within this time counts as Immich down.'),
      })
      .strict()
      .default({ intervalSeconds: 5, timeoutSeconds: 2 })
      .describe('The probe of Immich that tells whether it is up.'),
    breaker: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe(
            'Answer 503 at once (Retry-After) while Immich is known down, instead of waiting on it.'
          ),
        failureThreshold: z
          .number()
          .int()
          .min(1)
          .max(1000)
          .default(3)
          .describe(
            'Consecutive connect failures or timeouts of requests that open the breaker (a failed probe opens it at once).'
          ),
      })
      .strict()
      .default({ enabled: true, failureThreshold: 3 })
      .describe(
        'Circuit breaker: open after repeated failures or a failed probe, half-open (one trial request) after a probe succeeds.'
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
    host: z
      .string()
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
          .url()
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
