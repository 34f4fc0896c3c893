import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

const CHALLENGE_PREFIX = '/.well-known/acme-challenge/'
/** A Host header worth echoing into a Location: a name or address and an optional port, nothing else. */
const HOST = /^(\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9.-]+)(:\d{1,5})?$/

export interface PlainListenerOptions {
  host: string
  port: number
  /** Port written in the https Location (asked per request: the main port may be known only later). */
  httpsPort: () => number
  /** The key authorization for an ACME HTTP-01 token, when one is being validated. */
  challenge?: (token: string) => string | undefined
}

export interface PlainListener {
  server: Server
  url: string
  close(): Promise<void>
}

/** The plain HTTP listener: answers ACME HTTP-01 challenges, 301-redirects everything else to https. */
export async function startPlainListener(options: PlainListenerOptions): Promise<PlainListener> {
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/'
    if (path.startsWith(CHALLENGE_PREFIX)) {
      const answer = options.challenge?.(path.slice(CHALLENGE_PREFIX.length))
      const body = answer ?? 'Not found'
      res.writeHead(answer === undefined ? 404 : 200, {
        'content-type': 'text/plain',
        'content-length': Buffer.byteLength(body),
      })
      res.end(body)
      return
    }
    const host = HOST.exec(req.headers.host ?? '')
    if (!host || !path.startsWith('/')) {
      res.writeHead(400, { 'content-type': 'text/plain', 'content-length': 11 })
      res.end('Bad request')
      return
    }
    const port = options.httpsPort()
    const suffix = port === 443 ? '' : `:${port}`
    res.writeHead(301, { location: `https://${host[1]}${suffix}${path}`, 'content-length': 0 })
    res.end()
  }
  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, handle)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host, () => resolve())
  })
  const a = server.address() as AddressInfo
  const url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
  return {
    server,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
