import { randomBytes, timingSafeEqual } from 'node:crypto'
import { Hono, type Context, type MiddlewareHandler, type Next } from 'hono'
import type { PolicyMiddlewares } from '../policies/index.js'
import type { GatewayConfig } from './config/schema.js'
import type { ConsoleHook } from './console/mount.js'
import type { Deps } from './deps.js'
import type { Env } from './env.js'
import { HTTPException } from 'hono/http-exception'
import { GatewayError, immichErrorBody, reasonPhrase } from './errors.js'
import { AddressSet, clientAddress, normalizeIp } from './net.js'
import { redactUrl } from './observability/logging.js'
import { requestRecorder } from './observability/metrics.js'
import { canonicalPath, isApiPath } from './routing/path.js'
import { rawStatusOf, writeAnswer, writeResponse } from './server/answer.js'
import { forwardWebsocket, isWebsocketPath } from './upstream/websocket.js'

/**
 * The whole request path, top to bottom. A request meets these in this order, each an ordinary Hono
 * middleware (ARCHITECTURE.md has the why of each phase):
 *
 *   1 context      request id, client address, the upstream request being built
 *   2 observe      one access line and the RED metrics per answer, with the status actually sent
 *     head         header limits; the canonical path every later phase judges (c.get('path'))
 *     embedded     stock Hono middleware an embedder adds (GatewayOptions.middleware)
 *     own          /healthz, /readyz, /metrics: the gateway's own endpoints
 *   3 legacy       old routes rewritten to their current twins, before anything judges them
 *   4 route        Immich's route table: template, permission, flags
 *   5 authenticate api-key-auth, jwt-auth, native-auth
 *   6 authorize    scopes, album-binding
 *   7 rate-limit   rate-limit, login-guard
 *   8 cache        thumbnail-cache
 *   9 forward      to Immich, streamed both ways; websocket upgrades socket to socket
 *
 * Answers: forwarded and cached ones are written straight to Node's response by src/server/answer.ts
 * and the handler returns RESPONSE_ALREADY_SENT (@hono/node-server's convention); everything else is
 * a Response (c.json, onError) that observe writes through the same module. Either way the status
 * recorded is the status sent.
 */
export function createApp(
  config: GatewayConfig,
  deps: Deps,
  policies: PolicyMiddlewares,
  embedded: MiddlewareHandler<Env>[] = [],
  consoleHook?: ConsoleHook
): Hono<Env> {
  const app = new Hono<Env>()
  const use = (...names: string[]): void => {
    for (const name of names) {
      const mw = policies.get(name)
      if (mw !== undefined) app.use(mw)
    }
  }

  app.use(context(config, embedded.length > 0))
  app.use(observe(config, deps, consoleHook))
  app.use(requestHead(config))
  for (const mw of embedded) app.use(mw)

  app.get('/healthz', (c) => c.json({ status: 'ok' }))
  app.get('/readyz', async (c) => {
    const checks = await readiness(deps)
    return c.json(
      { status: checks.ok ? 'ready' : 'not ready', ...checks.detail },
      checks.ok ? 200 : 503
    )
  })
  const metricsToken = config.environment?.metricsToken
  if (metricsToken !== undefined) {
    app.get('/metrics', async (c) => {
      if (!bearerMatches(c.env.incoming.headers.authorization, metricsToken)) {
        throw new GatewayError(401, 'METRICS_TOKEN', 'Authentication required', {
          'WWW-Authenticate': 'Bearer realm="immich-gateway"',
        })
      }
      return c.body(await deps.metrics.registry.metrics(), 200, {
        'content-type': deps.metrics.registry.contentType,
      })
    })
  }

  use('legacy-routes')
  app.use(route(deps, consoleHook))
  use('api-key-auth', 'jwt-auth', 'native-auth')
  use('scopes', 'album-binding')
  use('rate-limit', 'login-guard')
  use('thumbnail-cache')
  app.all('*', forward(deps, consoleHook))

  app.onError((err, c) => renderError(c, err, deps.logger))
  return app
}

const SANE_REQUEST_ID = /^[A-Za-z0-9._:-]{1,64}$/

/**
 * Request ids: a random per-process prefix and a counter. Unique across replicas and restarts for
 * all practical purposes, and far cheaper than random bytes per request (they are not secrets).
 */
const ID_PREFIX = randomBytes(6).toString('base64url')
let idCounter = 0
function newRequestId(): string {
  idCounter = (idCounter + 1) % Number.MAX_SAFE_INTEGER
  return ID_PREFIX + idCounter.toString(36)
}

/** Phase 1, context: request id, client address, the upstream request. Never refuses anything. */
function context(config: GatewayConfig, stockMiddleware: boolean): MiddlewareHandler<Env> {
  const trusted = new AddressSet(config.server.trustedProxies)
  return (c, next) => {
    c.set('stockMiddleware', stockMiddleware)
    const req = c.env.incoming
    c.set('startedAt', process.hrtime.bigint())
    const incomingId = req.headers['x-request-id']
    c.set(
      'requestId',
      typeof incomingId === 'string' && SANE_REQUEST_ID.test(incomingId)
        ? incomingId
        : newRequestId()
    )
    const peer = normalizeIp(req.socket.remoteAddress)
    c.set('peer', { address: peer, trusted: trusted.has(peer) })
    c.set('clientIp', clientAddress(peer, req.headers['x-forwarded-for'], trusted))
    c.set('responseHeaders', {})
    c.set('notes', {})
    c.set('routeLabel', 'unmatched')
    c.set('routeClass', 'api')
    c.set('principal', { kind: 'anonymous', client: 'anonymous', upstreamIdentity: `ip:${peer}` })
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    c.set('path', q === -1 ? url : url.slice(0, q))
    c.set('query', q === -1 ? '' : url.slice(q))
    c.set('upstream', { method: req.method ?? 'GET', url, headerEdits: {} })
    return next()
  }
}

/**
 * Phase 2, observe: one access line and the RED metrics per request, labelled by template. An answer
 * still to be written (a Response from an endpoint or the error handler) is written here, after every
 * inner middleware had its say, so the record has the status and bytes sent.
 */
function observe(
  config: GatewayConfig,
  deps: Deps,
  consoleHook?: ConsoleHook
): MiddlewareHandler<Env> {
  const { metrics, logger } = deps
  const recordMetrics = config.metrics.enabled
  const recordRequest = requestRecorder(metrics)
  const accessLog = config.logging.accessLog && logger.isLevelEnabled('info')

  function record(c: Context<Env>): void {
    const req = c.env.incoming
    const seconds = Number(process.hrtime.bigint() - c.get('startedAt')) / 1e9
    // No head went out: Node's parser answered the socket itself (a broken chunked body), or the
    // client left first (499, as nginx logs it).
    const status = c.get('status') ?? rawStatusOf(req.socket) ?? 499
    const route = c.get('routeLabel')
    const client = c.get('principal').client
    const method = req.method ?? 'GET'
    const bytesIn = Number(req.headers['content-length'] ?? 0) || 0
    const bytesOut = c.get('bytesOut') ?? 0
    if (c.env.upgrade !== undefined) {
      const outcome = status === 101 ? 'upgraded' : status >= 500 ? 'error' : 'refused'
      metrics.websocketConnections.inc({ client, outcome })
    }
    consoleHook?.record(c, status)
    if (recordMetrics) {
      const deviceType = req.headers.devicetype as string | undefined
      recordRequest({
        method,
        route,
        status,
        client,
        seconds,
        bytesIn,
        bytesOut,
        deviceType,
        userAgent: req.headers['user-agent'],
      })
    }
    if (!accessLog) return
    const legacy = c.get('legacy')
    logger.info(
      {
        requestId: c.get('requestId'),
        method,
        url: redactUrl(legacy ? legacy.originalPath : (req.url ?? '/')),
        route,
        status,
        client,
        clientIp: c.get('clientIp'),
        bytesIn,
        bytesOut,
        ms: Math.round(seconds * 1e4) / 10,
        ...(legacy ? { legacyRule: legacy.rule } : {}),
        ...c.get('notes'),
      },
      'request'
    )
  }

  return async (c, next) => {
    if (recordMetrics) metrics.inFlightNow++
    try {
      await next()
      if (c.get('status') === undefined && c.finalized) {
        c.res = await writeResponse(c, c.res)
      }
    } finally {
      if (recordMetrics) metrics.inFlightNow--
      record(c)
    }
  }
}

/**
 * The request head, judged once: the header block within its limits (count and bytes, whatever the
 * names: Node alone lets repeated lines through), then the path every later phase judges: canonical
 * (dot segments, doubled slashes and encoded tricks resolved or refused), possibly rewritten by the
 * legacy phase. Policies read c.get('path'); c.req.path is the raw path and no policy reads it
 * (test/style.test.ts).
 */
function requestHead(config: GatewayConfig): MiddlewareHandler<Env> {
  const { maxHeaders, maxHeaderBytes } = config.server
  return (c, next) => {
    const rawHeaders = c.env.incoming.rawHeaders
    if (rawHeaders.length > 2 * maxHeaders) {
      throw new GatewayError(431, 'TOO_MANY_HEADERS', 'Request headers too large')
    }
    // Each line is `name: value\r\n`.
    let bytes = 0
    for (let i = 0; i < rawHeaders.length; i++) bytes += rawHeaders[i]!.length + 2
    if (bytes > maxHeaderBytes) {
      throw new GatewayError(431, 'HEADERS_TOO_LARGE', 'Request headers too large')
    }
    return canonical(c, next)
  }
}

function canonical(c: Context<Env>, next: Next): Promise<void> {
  const raw = c.get('path')
  const path = canonicalPath(raw)
  if (path !== raw) {
    c.set('path', path)
    c.get('upstream').url = path + c.get('query')
  }
  return next()
}

/** Phase 4, route: match against Immich's route table; non-/api paths are the web UI. */
function route({ routes }: Deps, consoleHook?: ConsoleHook): MiddlewareHandler<Env> {
  return (c, next) => {
    const path = c.get('path')
    if (c.env.upgrade !== undefined) {
      // Immich has one websocket endpoint; an upgrade anywhere else is refused before Immich sees it.
      if (!isWebsocketPath(path)) {
        throw new GatewayError(
          400,
          'UPGRADE_REFUSED',
          'Websocket upgrades go to /api/socket.io only'
        )
      }
      c.set('routeLabel', '/api/socket.io')
      return next()
    }
    if (isApiPath(path)) {
      // Matrix parameters are meaningless to Immich but could confuse a path matcher downstream.
      if (path.includes(';')) throw new GatewayError(400, 'BAD_PATH', 'Invalid request path')
      const match = routes.match(c.get('upstream').method, path)
      if (match) {
        c.set('route', match)
        c.set('routeLabel', match.route.path)
      }
    } else {
      c.set('routeLabel', consoleHook?.owns(path) ? 'console' : 'web')
    }
    return next()
  }
}

/** Phase 9, forward: websocket upgrades socket to socket, everything else streamed through undici. */
function forward(deps: Deps, consoleHook?: ConsoleHook): (c: Context<Env>) => Promise<Response> {
  return (c) => {
    if (consoleHook !== undefined && c.get('routeLabel') === 'console') return consoleHook.answer(c)
    if (c.env.upgrade !== undefined) return forwardWebsocket(c, deps)
    const terminal = c.get('terminal')
    return terminal ? terminal(c) : deps.forwarder.pipe(c)
  }
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false
  const given = Buffer.from(header.slice(7))
  const want = Buffer.from(token)
  return given.length === want.length && timingSafeEqual(given, want)
}

function readiness(deps: Deps): Promise<{ ok: boolean; detail: Record<string, string> }> {
  return deps.health.readiness(deps.redis)
}

/**
 * Immich's error shape for every error the gateway itself answers; a 500 never shows its cause.
 * An answer already under way can only be cut (writeAnswer does).
 */
function renderError(c: Context<Env>, err: unknown, logger: Deps['logger']): Response {
  const requestId = c.get('requestId') ?? newRequestId()
  let status = 500
  let message = 'Internal server error'
  let headers: Record<string, string> = {}
  if (err instanceof GatewayError) {
    ;({ status, headers } = err)
    message = err.message
    c.get('notes').error = err.code
  } else if (err instanceof HTTPException) {
    // A stock Hono middleware's refusal (basic-auth, body-limit...): its status and headers, our shape.
    status = err.status
    message = err.message || reasonPhrase(status)
    headers = {}
    err.res?.headers.forEach((value, name) => {
      if (name !== 'content-type' && name !== 'content-length') headers[name] = value
    })
    c.get('notes').error = 'HTTP_EXCEPTION'
  } else {
    logger.error({ requestId, err }, 'unhandled error')
  }
  // Written at once by the one writer: a refusal under a flood of 401s or 429s must stay cheap, and
  // a Web Response would be read back through a Web Stream (measured in process: 16 → 96 µs a 401).
  return writeAnswer(
    c,
    status,
    {
      ...headers,
      'content-type': 'application/json; charset=utf-8',
      'x-correlation-id': requestId,
    },
    immichErrorBody(status, message, requestId)
  )
}
