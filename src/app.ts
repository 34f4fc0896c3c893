import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { Context, MiddlewareHandler } from 'hono'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { GatewayConfig } from './config/schema.js'
import type { Deps } from './deps.js'
import type { Env } from './env.js'
import { GatewayError, immichErrorBody } from './errors.js'
import { AddressSet, clientAddress, normalizeIp } from './net.js'
import { requestRecorder } from './observability/metrics.js'
import { redactUrl } from './observability/logging.js'
import { canonicalPath, isApiPath } from './routing/path.js'
import { forwardWebsocket } from './upstream/websocket.js'

/** Middlewares of the configured policies, already in phase order (policies/index.ts builds them). */
export interface PhaseMiddlewares {
  legacy: MiddlewareHandler<Env>[]
  rest: MiddlewareHandler<Env>[]
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

/**
 * The whole request pipeline as one function of a Hono Context (src/listener.ts makes the Context).
 * It answers every request itself, usually straight to Node's response; it returns a Response only
 * when one is still to be written (the gateway's own endpoints, legacy answers), and otherwise
 * RESPONSE_ALREADY_SENT.
 */
export type Pipeline = (c: Context<Env>) => Promise<Response>

export function createPipeline(
  config: GatewayConfig,
  deps: Deps,
  phases: PhaseMiddlewares
): Pipeline {
  const trusted = new AddressSet(config.server.trustedProxies)
  const { metrics, logger, forwarder, routes } = deps
  const metricsToken = config.metrics.bearerTokenEnv
    ? process.env[config.metrics.bearerTokenEnv]
    : undefined

  /** Phase 1, context: request id, client address, the canonical path, the upstream request. */
  const context = (c: Context<Env>): void => {
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
    const rawPath = q === -1 ? url : url.slice(0, q)
    const query = q === -1 ? '' : url.slice(q)
    c.set('upstream', { method: req.method ?? 'GET', url, headerEdits: {} })
    c.set('query', query)
    c.set('path', rawPath)
    const path = canonicalPath(rawPath)
    c.set('path', path)
    if (path !== rawPath) c.get('upstream').url = path + query
  }

  /**
   * Phase 2, observe: one access line and the RED metrics per request, labelled by template. An error
   * (a refused path in the context phase too) is answered in Immich's shape before the request is
   * recorded, so the record has the final status.
   */
  const observe = async (c: Context<Env>): Promise<Response> => {
    if (recordMetrics) metrics.inFlightNow++
    try {
      let res: Response | void
      try {
        context(c)
        res = await handle(c)
      } catch (err) {
        res = renderError(c, err, logger)
      }
      // A Response not yet written (a legacy answer, a health check) goes back to the listener, which
      // writes it. Anything else was written to the client directly (a policy may `await next()` and
      // return nothing).
      if (res instanceof Response && res !== RESPONSE_ALREADY_SENT) return (c.res = res)
      return RESPONSE_ALREADY_SENT
    } finally {
      if (recordMetrics) metrics.inFlightNow--
      record(c)
    }
  }

  const recordMetrics = config.metrics.enabled
  const recordRequest = requestRecorder(metrics)
  const accessLog = config.logging.accessLog && logger.isLevelEnabled('info')

  function record(c: Context<Env>): void {
    const req = c.env.incoming
    const res = c.env.outgoing
    const sentByUs = res?.headersSent ?? false
    const status = sentByUs ? res!.statusCode : c.res.status
    const seconds = Number(process.hrtime.bigint() - c.get('startedAt')) / 1e9
    const route = c.get('routeLabel')
    const client = c.get('principal').client
    const method = req.method ?? 'GET'
    const bytesIn = Number(req.headers['content-length'] ?? 0) || 0
    const bytesOut = c.get('bytesOut') ?? (Number(c.res.headers.get('content-length') ?? 0) || 0)
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

  /** Phase 4, route: match against Immich's route table; non-/api paths are the web UI. */
  const route: MiddlewareHandler<Env> = (c, next) => {
    const path = c.get('path')
    if (isApiPath(path)) {
      // Matrix parameters are meaningless to Immich but could confuse a path matcher downstream.
      if (path.includes(';')) throw new GatewayError(400, 'BAD_PATH', 'Invalid request path')
      const match = routes.match(c.get('upstream').method, path)
      if (match) {
        c.set('route', match)
        c.set('routeLabel', match.route.path)
      }
    } else {
      c.set('routeLabel', 'web')
    }
    return next()
  }

  /** Phase 9, forward: websocket upgrades socket to socket, everything else streamed through undici. */
  const forward = (c: Context<Env>): Promise<Response> => {
    if (c.env.upgrade) return Promise.resolve(forwardWebsocket(c, deps))
    const terminal = c.get('terminal')
    return terminal ? terminal(c) : forwarder.pipe(c)
  }

  /** The gateway's own endpoints: answered after context and observe, before (and without) any policy. */
  const own = new Map<string, (c: Context<Env>) => Promise<Response>>([
    ['/healthz', async (c) => c.json({ status: 'ok' })],
    [
      '/readyz',
      async (c) => {
        const checks = await readiness(deps)
        return c.json(
          { status: checks.ok ? 'ready' : 'not ready', ...checks.detail },
          checks.ok ? 200 : 503
        )
      },
    ],
  ])
  if (metricsToken) {
    own.set('/metrics', async (c) => {
      if (!bearerMatches(c.env.incoming.headers.authorization, metricsToken)) {
        throw new GatewayError(401, 'METRICS_TOKEN', 'Authentication required', {
          'WWW-Authenticate': 'Bearer realm="immich-gateway"',
        })
      }
      return c.body(await metrics.registry.metrics(), 200, {
        'content-type': metrics.registry.contentType,
      })
    })
  }

  const policies = chain([...phases.legacy, route, ...phases.rest], forward)
  const handle = (c: Context<Env>): Promise<Response | void> => {
    const method = c.get('upstream').method
    const endpoint = method === 'GET' || method === 'HEAD' ? own.get(c.get('path')) : undefined
    return endpoint ? endpoint(c) : policies(c)
  }

  // No Hono app around this: its router would have one route to choose from, and its composer awaits
  // every layer (an async frame per policy per request); chain() does not.
  return observe
}

/**
 * Runs `layers` in order, each Hono middleware getting `next` for the rest, then `terminal`. Unlike
 * Hono's composer it adds no async frame of its own: a layer that passes by synchronously
 * (`return next()`) costs a function call, so a policy that does not concern a request is free.
 * A Response is carried back up as the layers return it (the engine's layers all `return next()`);
 * a throw or rejection goes to the caller (observe answers it).
 */
export function chain(
  layers: MiddlewareHandler<Env>[],
  terminal: (c: Context<Env>) => Promise<Response>
): (c: Context<Env>) => Promise<Response | void> {
  const run = (c: Context<Env>, i: number): Promise<Response | void> => {
    const layer = layers[i]
    return layer === undefined ? terminal(c) : layer(c, () => run(c, i + 1) as Promise<void>)
  }
  return (c) => run(c, 0)
}

function bearerMatches(header: string | undefined, token: string): boolean {
  if (!header?.startsWith('Bearer ')) return false
  const given = Buffer.from(header.slice(7))
  const want = Buffer.from(token)
  return given.length === want.length && timingSafeEqual(given, want)
}

async function readiness(deps: Deps): Promise<{ ok: boolean; detail: Record<string, string> }> {
  const detail: Record<string, string> = {}
  let ok = true
  try {
    const res = await deps.forwarder.agent.request({
      origin: deps.forwarder.origin,
      path: '/api/server/ping',
      method: 'GET',
      headersTimeout: 2000,
      bodyTimeout: 2000,
    })
    await res.body.dump()
    detail.upstream = res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`
    ok &&= res.statusCode === 200
  } catch (err) {
    detail.upstream = (err as { code?: string }).code ?? 'unreachable'
    ok = false
  }
  if (deps.redis) {
    try {
      await deps.redis.ping()
      detail.redis = 'ok'
    } catch {
      detail.redis = 'unreachable'
      ok = false
    }
  }
  return { ok, detail }
}

/** Immich's error shape for every error the gateway itself answers; a 500 never shows its cause. */
export function renderError(c: Context<Env>, err: unknown, logger: Deps['logger']): Response {
  const requestId = c.get('requestId') ?? newRequestId()
  let status = 500
  let message = 'Internal server error'
  let headers: Record<string, string> = {}
  if (err instanceof GatewayError) {
    ;({ status, headers } = err)
    message = err.message
    c.set('notes', { ...(c.get('notes') ?? {}), error: err.code })
  } else {
    logger.error({ requestId, err }, 'unhandled error')
  }
  const body = immichErrorBody(status, message, requestId)
  const all: Record<string, string> = {
    ...c.get('responseHeaders'),
    ...headers,
    'content-type': 'application/json; charset=utf-8',
    'x-correlation-id': requestId,
    'x-request-id': requestId,
  }
  const res = c.env?.outgoing
  if (!res) return new Response(body, { status, headers: all }) // a websocket upgrade: written raw by the caller
  // Written straight to Node's response, like every other answer: no Web Response on this path
  // (refusals under a flood of 401s or 429s must stay cheap).
  if (res.headersSent) {
    res.destroy() // the answer had started: it can only be cut
  } else {
    all['content-length'] = String(Buffer.byteLength(body))
    res.writeHead(status, all)
    res.end(body)
    c.set('bytesOut', Buffer.byteLength(body))
  }
  return RESPONSE_ALREADY_SENT
}
