// An Immich restart as a picture frame and an API client live it (issue #15): a gateway with the
// default health settings (probe every 5 s) in front of a fake Immich; a frame cycles through its
// previews, seen before the outage, once a second; an API client asks /api/users/me 20 times a
// second. Immich is stopped for OUTAGE_SECONDS (default 120) and started again on the same port.
// Prints the share of frame pictures answered (and from stale entries), the API's 503 latency
// (gateway-side from the access lines, and at the client) and the recovery time.
//
//   npx tsx bench/outage.ts            # 2-minute outage
//   OUTAGE_SECONDS=10 DISK=1 npx tsx bench/outage.ts   # short, with the disk tier and a gateway restart
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import pino from 'pino'
import { Registry } from 'prom-client'
import { request } from 'undici'
import { configSchema } from '../src/config/schema.js'
import { startGateway, type Gateway } from '../src/gateway.js'
import { expectedThumbnail } from '../test/fake-immich/server.js'
import { RestartableImmich, quantile } from '../test/support/outage.js'

const OUTAGE_MS = Number(process.env.OUTAGE_SECONDS ?? 120) * 1000
const DISK = process.env.DISK === '1'
const FRAME = Array.from(
  { length: 30 },
  (_, i) => `7c1d9e2b-4a5f-4b6c-8d7e-${String(i).padStart(12, '0')}`
)
const KEY = { 'x-api-key': 'fake-admin-key' }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const immich = await RestartableImmich.start()
const dir = DISK ? await mkdtemp(join(tmpdir(), 'igw-outage-')) : undefined
const served: number[] = []

async function gateway(): Promise<Gateway> {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (!line.includes('"route":"/api/users/me"')) continue
        const l = JSON.parse(line) as { status: number; ms: number }
        if (l.status === 503) served.push(l.ms)
      }
      done()
    },
  })
  const config = configSchema.parse({
    server: { host: '127.0.0.1', port: 0 },
    upstream: { url: immich.url },
    policies: {
      // A short TTL, so that every picture is past it during the outage.
      'thumbnail-cache': { ttlSeconds: 5, minUses: 1, disk: { dir } },
    },
  })
  return startGateway(config, { logger: pino({ level: 'info' }, sink), registry: new Registry() })
}

async function get(base: string, path: string) {
  const started = process.hrtime.bigint()
  const res = await request(`${base}${path}`, { headers: KEY })
  const body = Buffer.from(await res.body.arrayBuffer())
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  return { status: res.statusCode, cache: res.headers['x-cache'], body, ms }
}

let gw = await gateway()
for (const id of FRAME) await get(gw.url, `/api/assets/${id}/thumbnail?size=preview`)
await sleep(5500)

await immich.stop()
const stoppedAt = Date.now()
console.log(`Immich stopped; outage of ${OUTAGE_MS / 1000} s`)
let pictures = 0
let good = 0
let stale = 0
const client: number[] = []
let frameIndex = 0
let restarted = false
while (Date.now() - stoppedAt < OUTAGE_MS) {
  if (DISK && !restarted && Date.now() - stoppedAt > OUTAGE_MS / 2) {
    await gw.close()
    gw = await gateway()
    restarted = true
    console.log('gateway restarted (disk tier)')
  }
  const id = FRAME[frameIndex++ % FRAME.length]!
  const pic = await get(gw.url, `/api/assets/${id}/thumbnail?size=preview`)
  pictures++
  if (pic.status === 200 && pic.body.equals(expectedThumbnail(id, 'preview', 'u-admin'))) good++
  if (pic.cache === 'STALE') stale++
  for (let i = 0; i < 20; i++) {
    const api = await get(gw.url, '/api/users/me')
    if (api.status === 503) client.push(api.ms)
    await sleep(50)
  }
}
await immich.start()
const upAt = Date.now()
while ((await get(gw.url, '/api/users/me')).status !== 200) await sleep(10)
const recoveryMs = Date.now() - upAt

const fmt = (v: number[]) =>
  `p50 ${quantile(v, 0.5).toFixed(2)} ms, p99 ${quantile(v, 0.99).toFixed(2)} ms, max ${Math.max(...v).toFixed(2)} ms (n=${v.length})`
console.log(
  `frame: ${good}/${pictures} pictures answered with the right bytes (${((100 * good) / pictures).toFixed(1)} %), ${stale} from stale entries`
)
console.log(`API 503 in the gateway: ${fmt(served)}`)
console.log(`API 503 at the client: ${fmt(client)}`)
console.log(`recovery: API answered ${recoveryMs} ms after Immich listened again (probe every 5 s)`)
await gw.close()
await immich.stop()
if (dir) await rm(dir, { recursive: true, force: true })
