// What one Node process can do at best, for judging the targets: plain node:http with no framework.
//   MODE=static: answers every request with the 40 KiB thumbnail from memory and Immich's media
//                headers (the floor for a cache hit);
//   MODE=proxy:  streams every request to UPSTREAM through an undici Agent (dispatch API, no
//                header rewriting beyond hop-by-hop; the floor for pass-through).
// Env: PORT, MODE, UPSTREAM. Prints `READY <url>`.
import http, { type IncomingHttpHeaders } from 'node:http'
import { Agent, type Dispatcher } from 'undici'
import { expectedThumbnail } from '../test/fake-immich/bytes.js'

const ASSET_ID = '8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f'
const port = Number(process.env.PORT ?? 8082)
const mode = process.env.MODE ?? 'static'
const HOP = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'expect',
])

function server(): http.Server {
  if (mode === 'static') {
    const body = expectedThumbnail(ASSET_ID, 'thumbnail', 'u-admin')
    const headers = {
      'cache-control':
        'private, max-age=86400, no-transform, stale-while-revalidate=2592000, stale-if-error=2592000',
      'content-type': 'image/webp',
      'content-length': String(body.length),
      etag: 'W/"a000-0123456789a"',
      'last-modified': 'Sun, 22 Nov 2026 11:13:04 GMT',
      'accept-ranges': 'bytes',
      'x-cache': 'HIT',
    }
    return http.createServer((_req, res) => {
      res.writeHead(200, headers)
      res.end(body)
    })
  }
  const upstream = new URL(process.env.UPSTREAM ?? 'http://127.0.0.1:2283')
  const agent = new Agent({ connections: 256, keepAliveTimeout: 4000 })
  return http.createServer((req, res) => {
    const headers: IncomingHttpHeaders = {}
    for (const name in req.headers) if (!HOP.has(name)) headers[name] = req.headers[name]
    headers['x-forwarded-for'] = req.socket.remoteAddress
    const handler: Dispatcher.DispatchHandler = {
      // undici tells the handler API generations apart by onRequestStart.
      onRequestStart() {},
      onResponseStart(ctrl, status, raw) {
        const out: Record<string, string | string[]> = {}
        for (const name in raw) if (!HOP.has(name)) out[name] = raw[name] as string | string[]
        res.writeHead(status, out)
      },
      onResponseData(ctrl, chunk) {
        if (!res.write(chunk)) {
          ctrl.pause()
          res.once('drain', () => ctrl.resume())
        }
      },
      onResponseEnd() {
        res.end()
      },
      onResponseError() {
        if (!res.headersSent) res.writeHead(502).end()
        else res.destroy()
      },
    }
    agent.dispatch(
      {
        origin: upstream.origin,
        path: req.url ?? '/',
        method: req.method as Dispatcher.HttpMethod,
        headers: headers as Record<string, string>,
        body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
      },
      handler
    )
  })
}

const s = server()
s.keepAliveTimeout = 65_000
s.listen(port, '127.0.0.1', () => process.stdout.write(`READY http://127.0.0.1:${port}\n`))
process.on('SIGTERM', () => s.close(() => process.exit(0)))
