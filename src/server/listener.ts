import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { createAdaptorServer } from '@hono/node-server'
import type { Hono } from 'hono'
import type { GatewayConfig } from '../config/schema.js'
import type { Env } from '../env.js'
import { immichErrorBody } from '../errors.js'
import { writeRawAnswer } from './answer.js'

/**
 * The Node side of the gateway: the Hono app served by @hono/node-server, plus the three ways a
 * request reaches Node without being a plain request — an `Expect: 100-continue` upload, a websocket
 * upgrade, and bytes Node's parser refuses — all entering the same app or the same answer writer.
 */
export function createNodeServer(app: Hono<Env>, config: GatewayConfig): Server {
  const server = createAdaptorServer({
    fetch: app.fetch,
    // The global Request/Response stay Node's own; the gateway never builds a request body stream:
    // the forwarder streams Node's IncomingMessage itself, so nothing must drain it behind its back.
    overrideGlobalObjects: false,
    autoCleanupIncoming: false,
    serverOptions: {
      maxHeaderSize: config.server.maxHeaderBytes,
      requestTimeout: 0,
      headersTimeout: 60_000,
      keepAliveTimeout: 65_000,
    },
  }) as Server
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
    // Malformed requests (bad header bytes, oversized headers, a broken chunked body) get an
    // Immich-shaped answer, not a crash.
    const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
    const message = status === 431 ? 'Request headers too large' : 'Bad request'
    writeRawAnswer(
      socket,
      status,
      { 'content-type': 'application/json; charset=utf-8' },
      immichErrorBody(status, message, 'none')
    )
  })
  return server
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
