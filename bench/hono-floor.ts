// What the Hono idiom costs by itself, in process (the harness of bench/engine-cost.ts: synthetic
// requests, a response socket that drops what it is given). The same 40 KiB answer written to Node's
// response by: a bare node:http listener; a Hono app served by @hono/node-server whose one handler
// writes it and returns RESPONSE_ALREADY_SENT; the same app behind N pass-through middlewares (the
// gateway's pipeline has about ten on a cache hit). The differences are the floor of the engine the
// product is asked to be built on.
//
//   taskset -c 1 npx tsx bench/hono-floor.ts [--requests 50000] [--rounds 5] [--layers 10]
import type { RequestListener } from 'node:http'
import { parseArgs } from 'node:util'
import { getRequestListener, type HttpBindings } from '@hono/node-server'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import { Hono } from 'hono'
import { syntheticGet } from './lib/in-process.js'

const { values: args } = parseArgs({
  options: {
    requests: { type: 'string', default: '50000' },
    rounds: { type: 'string', default: '5' },
    layers: { type: 'string', default: '10' },
  },
})
const N = Number(args.requests)
const PATH = '/api/assets/8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f/thumbnail?size=thumbnail'
const BODY = Buffer.alloc(40 * 1024, 7)
const HEADERS = [
  'content-type',
  'image/webp',
  'cache-control',
  'private, max-age=86400, no-transform',
  'etag',
  'W/"a000-0123456789a"',
  'content-length',
  String(BODY.length),
]

const bare: RequestListener = (_req, res) => {
  res.writeHead(200, HEADERS)
  res.end(BODY)
}

function honoListener(layers: number): RequestListener {
  const app = new Hono<{ Bindings: HttpBindings }>()
  for (let i = 0; i < layers; i++) app.use((_c, next) => next())
  app.get('*', (c) => {
    c.env.outgoing.writeHead(200, HEADERS)
    c.env.outgoing.end(BODY)
    return RESPONSE_ALREADY_SENT
  })
  return getRequestListener(app.fetch, { overrideGlobalObjects: false, autoCleanupIncoming: false })
}

function once(listener: RequestListener): Promise<number> {
  return syntheticGet((req, res) => void listener(req, res), PATH, {
    host: 'gateway',
    accept: 'image/webp,*/*',
  })
}

async function cost(listener: RequestListener): Promise<number> {
  for (let i = 0; i < 2000; i++) await once(listener)
  const before = process.cpuUsage()
  for (let i = 0; i < N; i++) await once(listener)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / N
}

const layers = Number(args.layers)
const variants: [string, RequestListener][] = [
  ['node:http listener', bare],
  ['Hono app, 1 handler', honoListener(0)],
  [`Hono app, ${layers} middlewares + handler`, honoListener(layers)],
]
const results = new Map<string, number[]>(variants.map(([name]) => [name, []]))
for (let r = 0; r < Number(args.rounds); r++)
  for (const [name, listener] of variants) results.get(name)!.push(await cost(listener))
for (const [name, xs] of results) {
  const sorted = [...xs].sort((a, b) => a - b)
  process.stdout.write(
    `${name.padEnd(36)} median ${sorted[xs.length >> 1]!.toFixed(1)} µs  (${xs.map((x) => x.toFixed(1)).join(', ')})\n`
  )
}
