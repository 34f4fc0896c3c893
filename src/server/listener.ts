import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import type { createServer as createHttpServer } from 'node:http'
import type { Duplex } from 'node:stream'
import { createAdaptorServer } from '@hono/node-server'
import type { Hono } from 'hono'
import type { GatewayConfig } from '../config/schema.js'
import type { Env } from '../env.js'
import { immichErrorBody } from '../errors.js'
import { AddressSet, normalizeIp } from '../net.js'
import type { Metrics } from '../observability/metrics.js'
import { writeRawAnswer } from './answer.js'
import type { MainServerFactory } from './tls.js'

/**
 * The Node side of the gateway: the Hono app served by @hono/node-server, plus the three ways a
 * request reaches Node without being a plain request — an `Expect: 100-continue` upload, a websocket
 * upgrade, and bytes Node's parser refuses — all entering the same app or the same answer writer.
 */
export function createNodeServer(
  app: Hono<Env>,
  config: GatewayConfig,
  metrics: Metrics,
  main?: Pick<MainServerFactory, 'createServer' | 'serverOptions'>
): Server {
  const limits = config.server
  const server = createAdaptorServer({
    fetch: app.fetch,
    // The global Request/Response stay Node's own; the gateway never builds a request body stream:
    // the forwarder streams Node's IncomingMessage itself, so nothing must drain it behind its back.
    overrideGlobalObjects: false,
    autoCleanupIncoming: false,
    // HTTPS or HTTP/2 when server.tls is set (src/server/tls.ts); Node's http otherwise.
    ...(main ? { createServer: main.createServer as typeof createHttpServer } : {}),
    serverOptions: {
      ...main?.serverOptions,
      maxHeaderSize: config.server.maxHeaderBytes,
      // No overall request timeout (an upload at modem speed must complete), but the head must come
      // in time; Node checks every connectionsCheckingInterval, so the check runs every second.
      requestTimeout: 0,
      headersTimeout: limits.headersTimeoutSeconds * 1000,
      connectionsCheckingInterval: 1000,
      keepAliveTimeout: 65_000,
    },
  }) as Server
  // One more than allowed, so the request phase can tell a request that has too many from one that
  // has exactly enough (Node drops lines past this count silently).
  server.maxHeadersCount = limits.maxHeaders + 1
  limitConnectionsPerAddress(server, config, metrics)
  // A client that half-closes after its request (`nc -N`, some scripts) still gets its answer, as from
  // nginx; by default Node would abort the request when the client's side ends.
  ;(server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true
  // Expect: 100-continue is answered by the forward phase, only once every policy has let the request
  // through, so a refused upload never starts: the request goes to the app like any other.
  server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) =>
    server.emit('request', req, res)
  )
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy())
    // The same app and pipeline as any request; the forward phase pipes the sockets, every answer
    // short of a 101 is written raw on the socket by the answer writer.
    Promise.resolve(
      app.fetch(upgradeRequest(req), {
        incoming: req,
        outgoing: undefined,
        upgrade: { socket, head },
      })
    ).catch(() => socket.destroy())
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A client that went away (reset, or its side ended in the middle of a request): nobody to answer;
    // the request in flight is recorded as 499.
    if (err.code === 'ECONNRESET' || err.code === 'HPE_INVALID_EOF_STATE' || !socket.writable) {
      socket.destroy()
      return
    }
    // Malformed requests (bad header bytes, oversized headers, a broken chunked body) and heads that
    // did not arrive in time get an Immich-shaped answer, not a crash.
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400
    const message =
      status === 431
        ? 'Request headers too large'
        : status === 408
          ? 'Request timeout'
          : 'Bad request'
    if (status === 431) metrics.connectionsRefused.inc({ reason: 'header_too_large' })
    if (status === 408) metrics.connectionsRefused.inc({ reason: 'header_timeout' })
    writeRawAnswer(
      socket,
      status,
      { 'content-type': 'application/json; charset=utf-8' },
      immichErrorBody(status, message, 'none')
    )
  })
  return server
}

/**
 * At most `server.maxConnectionsPerAddress` open connections per client address: past it a new
 * connection is closed before it is read, so a few hosts dripping request heads cannot hold every
 * socket. Trusted proxies carry many clients on one address and are exempt.
 */
function limitConnectionsPerAddress(server: Server, config: GatewayConfig, metrics: Metrics): void {
  const max = config.server.maxConnectionsPerAddress
  const trusted = new AddressSet(config.server.trustedProxies)
  const open = new Map<string, number>()
  server.on('connection', (socket: Socket) => {
    const address = normalizeIp(socket.remoteAddress)
    if (trusted.has(address)) return
    const count = (open.get(address) ?? 0) + 1
    if (count > max) {
      metrics.connectionsRefused.inc({ reason: 'per_address_limit' })
      socket.destroy()
      return
    }
    open.set(address, count)
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1
      if (left === 0) open.delete(address)
      else open.set(address, left)
    })
  })
}

/** The Web Request an upgrade's Hono Context holds: URL, method and headers, no body. */
function upgradeRequest(req: IncomingMessage): Request {
  const headers = new Headers()
  for (let i = 0; i < req.rawHeaders.length; i += 2) {
    try {
      headers.append(req.rawHeaders[i]!, req.rawHeaders[i + 1]!)
    } catch {
      // A header value the Fetch API refuses is still in c.env.incoming, where the phases read it.
    }
  }
  return new Request(`http://gateway${req.url ?? '/'}`, { method: req.method ?? 'GET', headers })
}
