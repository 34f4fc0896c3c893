import type { OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Duplex } from 'node:stream'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Context } from 'hono'
import type { Env } from '../env.js'
import { reasonPhrase } from '../errors.js'

/**
 * The one writer of answers. Every answer the gateway gives — forwarded, served from the cache,
 * refused, its own endpoints, a translated legacy answer, the raw answer to an upgrade — has its head
 * written here, and here its status (and, for whole answers, its body bytes) is recorded for the
 * access line and the metrics. Streamed bodies are written by their producer, which records the bytes
 * it wrote (`bytesOut`).
 *
 * Headers: a flat `[name, value, ...]` list (the cache's prebuilt heads, which Node takes without
 * walking an object) or an object. Added to every head: what the policies asked for
 * (`responseHeaders`: RateLimit, Deprecation...), headers a stock Hono middleware set on `c.res`
 * before the answer (hono/cors, c.header()), and the request id.
 */
export type AnswerHeaders = OutgoingHttpHeaders | string[]

/**
 * The status this request's answer has or will have: the one sent, else the Response a handler
 * returned that is still to be written. What a policy looking at the outcome after `await next()` reads.
 */
export function answerStatus(c: Context<Env>): number {
  return c.get('status') ?? c.res.status
}

/** Writes the head of a streamed answer and returns Node's response for its body. */
export function writeHead(c: Context<Env>, status: number, headers: AnswerHeaders): ServerResponse {
  const res = c.env.outgoing!
  res.writeHead(status, decorate(c, headers))
  c.set('status', status)
  return res
}

/**
 * Writes a whole answer (head and a small body) and records it. On an upgrade request it goes to the
 * raw socket; on HEAD the body is left out. Returns RESPONSE_ALREADY_SENT for the handler to return.
 */
export function writeAnswer(
  c: Context<Env>,
  status: number,
  headers: AnswerHeaders,
  body?: Buffer | string
): Response {
  const bytes = body === undefined ? 0 : Buffer.byteLength(body)
  const upgrade = c.env.upgrade
  if (upgrade !== undefined) {
    writeRaw(upgrade.socket, status, decorate(c, headers), body)
  } else {
    const res = c.env.outgoing!
    if (res.headersSent) {
      res.destroy() // the answer had started: it can only be cut
      return RESPONSE_ALREADY_SENT
    }
    const all = decorate(c, headers)
    if (Array.isArray(all)) all.push('content-length', String(bytes))
    else all['content-length'] = String(bytes)
    res.writeHead(status, all)
    res.end(c.env.incoming.method === 'HEAD' ? undefined : body)
  }
  c.set('status', status)
  c.set('bytesOut', bytes)
  return RESPONSE_ALREADY_SENT
}

/**
 * Writes a Response a Hono handler or error handler returned (the gateway's own endpoints, errors,
 * anything a stock middleware answered), through writeAnswer. Bodies here are small by construction.
 */
export async function writeResponse(c: Context<Env>, response: Response): Promise<Response> {
  if (response === RESPONSE_ALREADY_SENT) return response
  const headers: OutgoingHttpHeaders = {}
  response.headers.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value
  })
  const cookies = response.headers.getSetCookie()
  if (cookies.length > 0) headers['set-cookie'] = cookies
  const body = response.body === null ? undefined : Buffer.from(await response.arrayBuffer())
  return writeAnswer(c, response.status, headers, body)
}

/** The 101 of an upgrade Immich accepted, relayed with Immich's own handshake headers. */
export function writeSwitchingProtocols(c: Context<Env>, headerBlock: string): void {
  c.env.upgrade!.socket.write(`HTTP/1.1 101 Switching Protocols\r\n${headerBlock}\r\n`)
  c.set('status', 101)
}

/**
 * Answers on a raw socket that has no request context: a request Node's parser refused (clientError).
 * The status is remembered per socket, so a request whose body broke the parser is recorded with it.
 */
export function writeRawAnswer(
  socket: Duplex,
  status: number,
  headers: OutgoingHttpHeaders,
  body: string
): void {
  rawStatus.set(socket, status)
  writeRaw(socket, status, headers, body)
}

/** What writeRawAnswer sent on a socket, for the request that was in flight on it. */
export function rawStatusOf(socket: Duplex | null | undefined): number | undefined {
  return socket ? rawStatus.get(socket) : undefined
}

const rawStatus = new WeakMap<Duplex, number>()

/**
 * Adds the policies' headers, a stock middleware's and the request id to `headers`, in place: every
 * caller hands over a list or object of its own (the cache concatenates its stored list), and a copy
 * per answer showed in profiles (2.4 % of a proxied thumbnail's CPU).
 */
function decorate(c: Context<Env>, headers: AnswerHeaders): AnswerHeaders {
  const extra = c.get('responseHeaders')
  const requestId = c.get('requestId')
  // Headers a stock middleware placed on the response before the answer was decided (hono/cors sets
  // them on c.res before next()). Reading c.res makes Hono create a Response (and copy it when the
  // handler's answer is set), so it is read only when stock middleware is in the pipeline.
  const prepared = c.get('stockMiddleware') ? c.res.headers : undefined
  if (Array.isArray(headers)) {
    for (const name in extra) headers.push(name, extra[name]!)
    prepared?.forEach((value, name) => headers.push(name, value))
    headers.push('x-request-id', requestId)
    return headers
  }
  for (const name in extra) headers[name] = extra[name]
  prepared?.forEach((value, name) => {
    if (name !== 'set-cookie') headers[name] = value
  })
  headers['x-request-id'] = requestId
  return headers
}

/** A complete HTTP/1.1 answer on a raw socket (an upgrade that did not become a websocket). */
function writeRaw(
  socket: Duplex,
  status: number,
  headers: AnswerHeaders,
  body: Buffer | string = ''
): void {
  if (!socket.writable) return
  let head = `HTTP/1.1 ${status} ${reasonPhrase(status)}\r\n`
  const line = (name: string, value: unknown): void => {
    const lower = name.toLowerCase()
    if (value === undefined || lower === 'content-length' || lower === 'transfer-encoding') return
    if (lower === 'connection') return
    for (const v of Array.isArray(value) ? value : [value]) head += `${name}: ${String(v)}\r\n`
  }
  if (Array.isArray(headers))
    for (let i = 0; i < headers.length; i += 2) line(headers[i]!, headers[i + 1])
  else for (const name in headers) line(name, headers[name])
  head += `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n`
  socket.end(Buffer.concat([Buffer.from(head, 'latin1'), Buffer.from(body)]))
}
