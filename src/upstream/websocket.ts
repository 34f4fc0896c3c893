import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import type { Duplex } from 'node:stream'
import type { Context } from 'hono'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Deps } from '../deps.js'
import type { Env } from '../env.js'
import { immichErrorBody, reasonPhrase } from '../errors.js'
import { classifyUpstreamError } from './forward.js'
import { responseHeaders } from './headers.js'

/** Writes a complete HTTP/1.1 response on a raw socket (an upgrade that did not become a websocket). */
export function writeRawResponse(
  socket: Duplex,
  status: number,
  headers: Record<string, string | string[] | number | undefined>,
  body: Buffer | string = ''
): void {
  if (!socket.writable) return
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name === 'content-length' || name === 'transfer-encoding') continue
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${v}\r\n`
  }
  head += `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]))
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
 * one's end or error closes the other.
 */
export function forwardWebsocket(c: Context<Env>, deps: Deps): Response {
  const { socket, head } = c.env.upgrade!
  const req = c.env.incoming
  const origin = new URL(deps.forwarder.origin)
  const headers = deps.forwarder.upstreamHeaders(c)
  headers.connection = 'Upgrade'
  headers.upgrade = (req.headers.upgrade as string | undefined) ?? 'websocket'
  const client = c.get('principal').client
  const { metrics, logger } = deps
  const requestId = c.get('requestId')

  const upstreamReq = (origin.protocol === 'https:' ? httpsRequest : httpRequest)({
    host: origin.hostname,
    port: origin.port || (origin.protocol === 'https:' ? 443 : 80),
    method: 'GET',
    path: c.get('upstream').url,
    headers,
    timeout: 30_000,
  })

  socket.on('error', () => upstreamReq.destroy())
  upstreamReq.on('upgrade', (upRes, upSocket, upHead) => {
    if (socket.destroyed) {
      upSocket.destroy()
      return
    }
    socket.write(`HTTP/1.1 101 Switching Protocols\r\n${rawHeaderBlock(upRes)}\r\n`)
    if (upHead.length) socket.write(upHead)
    if (head.length) upSocket.write(head)
    upSocket.setNoDelay(true)
    upSocket.setTimeout(0)
    metrics.websocketsOpen.inc()
    metrics.websocketConnections.inc({ client, outcome: 'upgraded' })
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
    metrics.websocketConnections.inc({ client, outcome: `refused` })
    const chunks: Buffer[] = []
    upRes.on('data', (chunk: Buffer) => chunks.push(chunk))
    upRes.on('end', () =>
      writeRawResponse(
        socket,
        upRes.statusCode ?? 502,
        responseHeaders(upRes.headers),
        Buffer.concat(chunks)
      )
    )
    upRes.on('error', () => socket.destroy())
  })
  upstreamReq.on('timeout', () =>
    upstreamReq.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' }))
  )
  upstreamReq.on('error', (err) => {
    const { kind, status, message } = classifyUpstreamError(err)
    metrics.upstreamErrors.inc({ kind })
    metrics.websocketConnections.inc({ client, outcome: 'error' })
    logger.warn({ requestId, kind }, 'websocket upstream failed')
    writeRawResponse(
      socket,
      status,
      { 'content-type': 'application/json; charset=utf-8', 'x-correlation-id': requestId },
      immichErrorBody(status, message, requestId)
    )
  })
  upstreamReq.end()
  return RESPONSE_ALREADY_SENT
}
