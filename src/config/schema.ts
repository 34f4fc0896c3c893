import { accessSync, constants, readFileSync } from 'node:fs'
import { isIP } from 'node:net'
import { createSecureContext } from 'node:tls'
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

function readable(file: string): boolean {
  try {
    accessSync(file, constants.R_OK)
    return true
  } catch {
    return false
  }
}

/** A file the gateway must be able to read at startup (certificates, keys, CA bundles). */
const readableFile = (what: string) =>
  z.string().min(1).refine(readable, 'file does not exist or is not readable').describe(what)

const port = (what: string) => z.number().int().min(0).max(65535).describe(what)

export const acmeSchema = z
  .object({
    email: z
      .string()
      .email()
      .describe('Contact address of the ACME account (expiry warnings from the CA go there).'),
    domains: z
      .array(z.string().min(1))
      .min(1)
      .describe(
        'Names the certificate covers; the first is its subject. Each must reach httpPort.'
      ),
    directoryUrl: z
      .string()
      .url()
      .default('https://acme-v02.api.letsencrypt.org/directory')
      .describe(
        "ACME directory (RFC 8555). Default Let's Encrypt production; staging: " +
          'https://acme-staging-v02.api.letsencrypt.org/directory.'
      ),
    storageDir: z
      .string()
      .min(1)
      .default('acme')
      .describe('Directory for the account key and certificates (created 0700, files 0600).'),
    caFile: readableFile(
      "PEM bundle trusted for the ACME server's own HTTPS (a private CA such as pebble's); " +
        'only the ACME client uses it.'
    ).optional(),
    renewBeforeFraction: z
      .number()
      .gt(0)
      .lt(1)
      .default(1 / 3)
      .describe('Renew when this fraction of the lifetime is left (1/3: at two thirds of it).'),
    retryMinSeconds: seconds(
      60,
      'First wait after a failed issuance; doubles up to retryMaxSeconds.'
    ),
    retryMaxSeconds: seconds(6 * 3600, 'Longest wait between failed issuance attempts.'),
  })
  .strict()

export const tlsSchema = z
  .object({
    certFile: readableFile(
      'PEM certificate, chain included (leaf first). Reloaded when the file changes.'
    ).optional(),
    keyFile: readableFile(
      'PEM private key of certFile. Reloaded when the file changes.'
    ).optional(),
    acme: acmeSchema.optional().describe('Obtain and renew the certificate from an ACME CA.'),
    http2: z
      .boolean()
      .default(true)
      .describe('Offer HTTP/2 by ALPN (HTTP/1.1 stays available on the same port).'),
    httpPort: port(
      'Plain HTTP listener answering ACME HTTP-01 challenges and redirecting the rest to https ' +
        '(80 in production); unset = none.'
    ).optional(),
    httpHost: z
      .string()
      .min(1)
      .optional()
      .describe('Address of the plain HTTP listener; default server.host.'),
    redirectPort: port(
      'Port written in the redirect Location; default server.port (omitted when 443). Set it when a ' +
        'port mapping publishes the gateway on another port.'
    ).optional(),
    hsts: z
      .object({
        maxAgeSeconds: z
          .number()
          .int()
          .min(0)
          .default(31_536_000)
          .describe('max-age of Strict-Transport-Security.'),
        includeSubDomains: z.boolean().default(false).describe('Add includeSubDomains.'),
      })
      .strict()
      .optional()
      .describe('Send Strict-Transport-Security on https answers; unset = no header.'),
    reloadCheckSeconds: seconds(
      5,
      'How often certFile/keyFile are checked for a change (polling: survives atomic renames).'
    ),
  })
  .strict()
  .superRefine((tls, ctx) => {
    const files = tls.certFile !== undefined || tls.keyFile !== undefined
    if (files && tls.acme)
      ctx.addIssue({
        code: 'custom',
        path: ['acme'],
        message: 'use either certFile/keyFile or acme',
      })
    if (!files && !tls.acme)
      ctx.addIssue({ code: 'custom', path: [], message: 'expected certFile and keyFile, or acme' })
    if (files && tls.certFile === undefined)
      ctx.addIssue({ code: 'custom', path: ['certFile'], message: 'keyFile needs certFile' })
    if (files && tls.keyFile === undefined)
      ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'certFile needs keyFile' })
    if (tls.certFile && tls.keyFile && readable(tls.certFile) && readable(tls.keyFile)) {
      try {
        createSecureContext({ cert: readFileSync(tls.certFile), key: readFileSync(tls.keyFile) })
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          path: ['certFile'],
          message: `cannot be used with keyFile: ${(err as Error).message}`,
        })
      }
    }
    if (tls.acme && tls.httpPort === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['httpPort'],
        message: 'acme answers HTTP-01 challenges on the plain listener: set httpPort (80)',
      })
  })

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
    tls: tlsSchema
      .optional()
      .describe('Serve HTTPS (and HTTP/2) on server.port; unset = plain HTTP. See docs/tls.md.'),
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
    host: listenHost
      .default('127.0.0.1')
      .describe(
        'Address of the metrics listener (env METRICS_HOST); loopback by default so it is never public by accident. In a container, 0.0.0.0 lets Prometheus in another container scrape it.'
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

/** The web console (docs/console.md): clients, keys and health in a browser, signed in with Immich. */
export const consoleSchema = z
  .object({
    enabled: z
      .boolean()
      .default(false)
      .describe('Serve the console on the main port (admins of Immich only).'),
    basePath: z
      .string()
      .regex(
        /^(\/[A-Za-z0-9._~-]+)+$/,
        'expected a path such as /gateway (no trailing slash, not the root)'
      )
      .refine((p) => !/^\/api(\/|$)/i.test(p), 'must not be under /api (that is Immich)')
      .default('/gateway')
      .describe('Where the console lives; every path under it belongs to the console, not Immich.'),
    token: z
      .string()
      .min(32, 'at least 32 characters (use: openssl rand -base64 32)')
      .optional()
      .describe(
        'For headless use without an Immich session: requests bearing `Authorization: Bearer <token>` act as a console admin (env GATEWAY_CONSOLE_TOKEN; keep it out of the config file).'
      ),
    sessionCacheSeconds: z
      .number()
      .int()
      .min(0)
      .max(300)
      .default(30)
      .describe(
        "How long Immich's answer about a session (who, admin or not) is reused before asking again."
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
    console: consoleSchema.default(consoleSchema.parse({})),
    /** Policy options, validated by each policy's own schema (policies/index.ts). */
    policies: z.record(z.string(), z.unknown()).default({}),
  })
  .strict()

/**
 * What loadConfig (src/config/load.ts, the only reader of the process environment) resolved from it.
 * A config built any other way (the tests' helpers) has none: it sees no variable and no file of the
 * working directory unless it names them.
 */
export interface ResolvedEnvironment {
  /** The variables, for the fields that name one (upstreamKeyEnv, secretEnv, publicKeyEnv...). */
  vars: Readonly<Record<string, string | undefined>>
  /** The keys file unless policies.api-key-auth.keysFile names one: env GATEWAY_KEYS_FILE, else config/keys.yaml in the working directory. Absolute. */
  keysFile?: string
  /** Scope presets unless a policy names its own file: env GATEWAY_SCOPES_FILE. Absolute. */
  presetsFile?: string
  /** The token held in the variable metrics.bearerTokenEnv names (secret: never logged). */
  metricsToken?: string
}

export type GatewayConfig = z.infer<typeof configSchema> & { environment?: ResolvedEnvironment }
