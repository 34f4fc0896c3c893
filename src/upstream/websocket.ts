import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Context } from 'hono'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Deps } from '../deps.js'
import type { Env } from '../env.js'
import { immichErrorBody } from '../errors.js'
import { writeAnswer, writeSwitchingProtocols } from '../server/answer.js'
import { classifyUpstreamError } from './forward.js'
import { responseHeaders } from './headers.js'
import { REFUSED } from './health.js'

/** Immich's one websocket endpoint (socket.io). */
export function isWebsocketPath(path: string): boolean {
  const lower = path.toLowerCase()
  return lower === '/api/socket.io' || lower.startsWith('/api/socket.io/')
}

function rawHeaderBlock(res: IncomingMessage): string {
  let block = ''
  for (let i = 0; i < res.rawHeaders.length; i += 2)
    block += `${res.rawHeaders[i]}: ${res.rawHeaders[i + 1]}\r\n`
  return block
}

/**
 * Forwards an authenticated websocket upgrade (Immich's socket.io at /api/socket.io) socket to socket.
 * Node's http client handles the handshake; after 101 the two sockets are piped both ways and each
 * one's end or error closes the other. Settles once the handshake has an outcome (101, Immich's
 * refusal relayed, or an error answered), so the request is recorded with the status sent.
 */
export function forwardWebsocket(c: Context<Env>, deps: Deps): Promise<Response> {
  const { socket, head } = c.env.upgrade!
  const req = c.env.incoming
  const origin = new URL(deps.forwarder.origin)
  const headers = deps.forwarder.upstreamHeaders(c)
  headers.connection = 'Upgrade'
  headers.upgrade = (req.headers.upgrade as string | undefined) ?? 'websocket'
  const { metrics, logger } = deps
  const requestId = c.get('requestId')
  const { health } = deps
  // Immich known down: refused at once, like any request (socket.io retries with its own backoff);
  // the pipeline answers the refusal in Immich's shape.
  const admission = health.admit()
  if (admission === REFUSED) return Promise.reject(health.refusal())
  let reported = false
  const report = (kind?: 'answered' | ReturnType<typeof classifyUpstreamError>['kind']) => {
    if (reported) return
    reported = true
    if (kind === 'answered') health.succeeded(admission)
    else if (kind === undefined) health.released(admission)
    else health.failed(admission, kind)
  }

  const upstreamReq = (origin.protocol === 'https:' ? httpsRequest : httpRequest)({
    host: origin.hostname,
    port: origin.port || (origin.protocol === 'https:' ? 443 : 80),
    method: 'GET',
    path: c.get('upstream').url,
    headers,
    timeout: 30_000,
  })

  let settle: (res: Response) => void = () => {}
  const settled = new Promise<Response>((resolve) => (settle = resolve))
  socket.on('error', () => {
    report()
    upstreamReq.destroy()
    settle(RESPONSE_ALREADY_SENT)
  })
  upstreamReq.on('upgrade', (upRes, upSocket, upHead) => {
    report('answered')
    if (socket.destroyed) {
      upSocket.destroy()
      settle(RESPONSE_ALREADY_SENT)
      return
    }
    writeSwitchingProtocols(c, rawHeaderBlock(upRes))
    settle(RESPONSE_ALREADY_SENT)
    if (upHead.length) socket.write(upHead)
    if (head.length) upSocket.write(head)
    upSocket.setNoDelay(true)
    upSocket.setTimeout(0)
    metrics.websocketsOpen.inc()
    let closed = false
    const close = () => {
      if (closed) return
      closed = true
      metrics.websocketsOpen.dec()
      socket.destroy()
      upSocket.destroy()
    }
    upSocket.on('error', close).on('close', close)
    socket.on('error', close).on('close', close)
    upSocket.pipe(socket)
    socket.pipe(upSocket)
  })
  // Immich refused the upgrade (401, 404...): relay its answer as it is.
  upstreamReq.on('response', (upRes) => {
    report('answered')
    const chunks: Buffer[] = []
    upRes.on('data', (chunk: Buffer) => chunks.push(chunk))
    upRes.on('end', () =>
      settle(
        writeAnswer(
          c,
          upRes.statusCode ?? 502,
          responseHeaders(upRes.headers),
          Buffer.concat(chunks)
        )
      )
    )
    upRes.on('error', () => {
      socket.destroy()
      settle(RESPONSE_ALREADY_SENT)
    })
  })
  upstreamReq.on('timeout', () =>
    upstreamReq.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }))
  )
  upstreamReq.on('error', (err) => {
    const { kind, status, message } = classifyUpstreamError(err)
    report(kind)
    metrics.upstreamErrors.inc({ kind })
    logger.warn({ requestId, kind }, 'websocket upstream failed')
    settle(
      writeAnswer(
        c,
        status,
        { 'content-type': 'application/json; charset=utf-8', 'x-correlation-id': requestId },
        immichErrorBody(status, message, requestId)
      )
    )
  })
  upstreamReq.end()
  return settled
}
