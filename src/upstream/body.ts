import type { Context } from 'hono'
import type { Env } from '../env.js'
import { GatewayError } from '../errors.js'

export interface ReadBodyOptions {
  /** A larger body is refused with 413, before (declared) or while (chunked) it is read. */
  maxBytes: number
  /** A body not received within this time is refused with 408. */
  timeoutMs: number
}

/**
 * Reads a small request body (login JSON, bulk id lists, legacy JSON rewrites) with a size cap and a
 * deadline. Uploads never come here: the forwarder streams them. The bytes become `upstream.body`,
 * so nothing is lost and a later phase asking again gets the same bytes (a stream is read once). A
 * client waiting for "100 Continue" is told to send. A refusal is answered, then the connection is
 * closed (the rest of the body is never read).
 */
export async function readRequestBody(c: Context<Env>, options: ReadBodyOptions): Promise<Buffer> {
  const upstream = c.get('upstream')
  upstream.body ??= await read(c, options)
  return upstream.body
}

function read(c: Context<Env>, { maxBytes, timeoutMs }: ReadBodyOptions): Promise<Buffer> {
  const req = c.env.incoming
  const refuse = (status: number, code: string, message: string) => {
    // HTTP/2 has no Connection header (Node refuses it): the stream is reset after the answer instead.
    if (req.httpVersionMajor < 2) c.get('responseHeaders')['connection'] = 'close'
    return new GatewayError(status, code, message)
  }
  if (Number(req.headers['content-length'] ?? 0) > maxBytes) {
    return Promise.reject(refuse(413, 'BODY_TOO_LARGE', 'Request body too large'))
  }
  const expect = req.headers.expect
  if (typeof expect === 'string' && expect.toLowerCase() === '100-continue')
    c.env.outgoing?.writeContinue()
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    const done = (err?: GatewayError) => {
      clearTimeout(timer)
      req.off('data', onData).off('end', onEnd).off('error', onError).off('aborted', onError)
      if (err) {
        req.pause()
        reject(err)
      } else {
        resolve(Buffer.concat(chunks, size))
      }
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size > maxBytes) done(refuse(413, 'BODY_TOO_LARGE', 'Request body too large'))
      else chunks.push(chunk)
    }
    const onEnd = () => done()
    const onError = () => done(refuse(400, 'BODY_INCOMPLETE', 'Request body incomplete'))
    const timer = setTimeout(
      () => done(refuse(408, 'BODY_TIMEOUT', 'Request body not received in time')),
      timeoutMs
    )
    req.on('data', onData).on('end', onEnd).on('error', onError).on('aborted', onError)
  })
}
