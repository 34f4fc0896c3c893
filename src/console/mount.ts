/**
 * The console on the gateway: which paths are its, how a gateway request becomes a request to the
 * console app, and the recorder the access record feeds. The pipeline calls these three and nothing
 * else of the console.
 */
import type { IncomingMessage } from 'node:http'
import type { Context } from 'hono'
import type { GatewayConfig } from '../config/schema.js'
import type { Deps } from '../deps.js'
import type { Env } from '../env.js'
import { createConsole, type ConsoleBindings } from './app.js'
import { ConsoleRecorder } from './recorder.js'

/** Form posts are small; anything larger is refused before it is read. */
const MAX_BODY_BYTES = 64 * 1024

export interface ConsoleHook {
  /** Is this canonical path the console's (its base path or anything under it)? */
  owns(path: string): boolean
  /** Answers a request for a path it owns: the pipeline's last step, instead of forwarding to Immich. */
  answer(c: Context<Env>): Promise<Response>
  /** The access record's one call per finished request: keeps the console's traffic view current. */
  record(c: Context<Env>, status: number): void
}

/** The body of a form post, at most `limit` bytes; undefined when it is larger. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length
    if (size > limit) return undefined
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

/** The console as the pipeline sees it; undefined when `console.enabled` is off. */
export function createConsoleHook(
  config: GatewayConfig,
  deps: Deps,
  onClose: (fn: () => void) => void
): ConsoleHook | undefined {
  if (!config.console.enabled) return undefined
  const base = config.console.basePath
  const recorder = new ConsoleRecorder()
  const app = createConsole(config, deps, { recorder, onClose })

  return {
    owns: (path) => path === base || path.startsWith(`${base}/`),

    async answer(c) {
      const req = c.env.incoming
      const method = req.method ?? 'GET'
      const headers = new Headers()
      for (const [name, value] of Object.entries(req.headers)) {
        if (value === undefined) continue
        for (const v of Array.isArray(value) ? value : [value]) headers.append(name, v)
      }
      let body: Buffer | undefined
      if (method !== 'GET' && method !== 'HEAD') {
        if (Number(req.headers['content-length'] ?? 0) > MAX_BODY_BYTES) {
          return new Response('Form too large', { status: 413, headers: { connection: 'close' } })
        }
        if (req.headers.expect === '100-continue') c.env.outgoing?.writeContinue()
        body = await readBody(req, MAX_BODY_BYTES)
        if (body === undefined)
          return new Response('Form too large', { status: 413, headers: { connection: 'close' } })
      }
      const bindings: ConsoleBindings = {
        clientIp: c.get('clientIp'),
        requestId: c.get('requestId'),
        secure:
          c.get('peer').trusted &&
          String(req.headers['x-forwarded-proto'] ?? '')
            .split(',')[0]!
            .trim() === 'https',
      }
      const request = new Request(`http://gateway${req.url ?? '/'}`, {
        method,
        headers,
        ...(body ? { body: new Uint8Array(body) } : {}),
      })
      return app.fetch(request, bindings)
    },

    record: (c, status) => recorder.record(c, status),
  }
}
