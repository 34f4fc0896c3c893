import type { IncomingMessage, ServerResponse } from 'node:http'
import { Context } from 'hono'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { Pipeline } from './app.js'
import type { Bindings, Env } from './env.js'
import { immichErrorBody } from './errors.js'

/**
 * The Web Request a Hono Context holds. The pipeline reads Node's IncomingMessage (c.env.incoming)
 * and never c.req; `url` and `method` are at hand, anything else asked of it builds a real Request on
 * first use: URL and headers, never the body, which belongs to the forwarder's stream.
 */
export function lazyRequest(incoming: IncomingMessage): Request {
  const url = `http://gateway${incoming.url ?? '/'}`
  const method = incoming.method ?? 'GET'
  let real: Request | undefined
  const materialise = (): Request => {
    if (real !== undefined) return real
    const headers = new Headers()
    for (const [name, value] of Object.entries(incoming.headers)) {
      if (value === undefined) continue
      for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v)
    }
    return (real = new Request(url, { method, headers }))
  }
  return new Proxy({ url, method } as unknown as Request, {
    get(own, prop) {
      if (prop === 'url' || prop === 'method') return own[prop]
      const r = materialise()
      const value: unknown = Reflect.get(r, prop, r)
      return typeof value === 'function' ? value.bind(r) : value
    },
  })
}

/** A Hono Context for a Node request: what every policy (a Hono middleware) is given. */
export function contextFor(env: Bindings): Context<Env> {
  const url = env.incoming.url ?? '/'
  const q = url.indexOf('?')
  return new Context<Env>(lazyRequest(env.incoming), {
    env,
    path: q === -1 ? url : url.slice(0, q),
  })
}

/**
 * Node's request listener: a Hono Context per request, handed to the pipeline. The pipeline writes
 * its answers to Node's response itself (forwarded, cached, refused); a Response comes back unsent
 * only from the gateway's own small endpoints and legacy answers, and is written here.
 *
 * Why not @hono/node-server's listener and a Hono app: per request the listener builds a Web Request
 * proxy, adds a close listener and reads the returned Response's Web Headers even when the answer
 * is already out, and the app parses the path and runs its router to find the one handler there is.
 * Measured on a cached thumbnail: the listener alone cost 8 % of the gateway's CPU (paired, 172 vs
 * 158 µs a request), the app's dispatch another 4-5 µs of the 21 µs of JavaScript a hit runs.
 */
export function nodeListener(
  pipeline: Pipeline
): (incoming: IncomingMessage, outgoing: ServerResponse) => void {
  const failed = (outgoing: ServerResponse): void => {
    if (outgoing.headersSent) {
      outgoing.destroy()
      return
    }
    const body = immichErrorBody(500, 'Internal server error', 'none')
    outgoing.writeHead(500, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    })
    outgoing.end(body)
  }
  return (incoming, outgoing) => {
    // The pipeline answers its own errors; a rejection here is a bug, still answered in Immich's shape.
    pipeline(contextFor({ incoming, outgoing })).then(
      (res) =>
        res === RESPONSE_ALREADY_SENT
          ? undefined
          : writeResponse(res, outgoing).catch(() => outgoing.destroy()),
      () => failed(outgoing)
    )
  }
}

/** Writes a Response the pipeline returned unsent; nothing when the answer is already out. */
async function writeResponse(res: Response, outgoing: ServerResponse): Promise<void> {
  if (outgoing.headersSent || outgoing.writableEnded) return
  const headers: Record<string, string | string[]> = {}
  res.headers.forEach((value, name) => {
    if (name === 'set-cookie') return
    headers[name] = value
  })
  const cookies = res.headers.getSetCookie()
  if (cookies.length > 0) headers['set-cookie'] = cookies
  const body = res.body === null ? undefined : Buffer.from(await res.arrayBuffer())
  if (body !== undefined) headers['content-length'] = String(body.length)
  outgoing.writeHead(res.status, headers)
  outgoing.end(body)
}
