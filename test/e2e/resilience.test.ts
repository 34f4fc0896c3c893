/**
 * Immich down or restarting, end to end over real sockets: a real fake Immich that is stopped and
 * started again on the same port (connections refused meanwhile), or that accepts and never answers;
 * a real gateway in front of it, undici (and node:http for the upgrade) as clients.
 */
import { request as httpRequest } from 'node:http'
import { createServer, type Server, type Socket } from 'node:net'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { expectedThumbnail } from '../fake-immich/server.js'
import { waitFor } from '../policies/rate-limit/support.js'
import { freePort } from '../support/http.js'
import { RestartableImmich, quantile, sample } from '../support/outage.js'
import { startStack, type Stack } from '../support/stack.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }
const USER = { 'x-api-key': 'fake-user-key' }
/** The pictures a frame cycles through (asset ids), shown as previews. */
const FRAME = Array.from(
  { length: 12 },
  (_, i) => `0b7e4c2a-9d1f-4e6b-8a3c-${String(i).padStart(12, '0')}`
)
const preview = (id: string) => `/api/assets/${id}/thumbnail?size=preview`
const PROBE_SECONDS = 0.2

async function get(base: string, path: string, headers: Record<string, string> = {}) {
  const started = process.hrtime.bigint()
  const res = await request(`${base}${path}`, { headers })
  const body = Buffer.from(await res.body.arrayBuffer())
  const ms = Number(process.hrtime.bigint() - started) / 1e6
  return { status: res.statusCode, headers: res.headers as Record<string, string>, body, ms }
}

async function scrape(stack: Stack): Promise<string> {
  const res = await request(stack.gateway.metricsUrl!)
  return res.body.text()
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Short probe interval, 1 s TTL (entries go past it quickly), every miss stored. */
function config(extra: Record<string, unknown> = {}) {
  return {
    upstream: { health: { intervalSeconds: PROBE_SECONDS, timeoutSeconds: 2 } },
    metrics: { port: 0 },
    policies: { 'thumbnail-cache': { ttlSeconds: 1, minUses: 1, ...extra } },
  }
}

/** Every frame picture once for the admin, and the first four for the user (each their own bytes). */
async function warm(url: string): Promise<void> {
  for (const id of FRAME) {
    const a = await get(url, preview(id), ADMIN)
    expect(a.status).toBe(200)
    expect(a.body.equals(expectedThumbnail(id, 'preview', 'u-admin'))).toBe(true)
  }
  for (const id of FRAME.slice(0, 4)) {
    const u = await get(url, preview(id), USER)
    expect(u.body.equals(expectedThumbnail(id, 'preview', 'u-user'))).toBe(true)
  }
}

/** During the outage: every frame picture from stale entries, and nothing crosses identities. */
async function expectFrameFromStale(url: string): Promise<void> {
  for (const id of FRAME) {
    const a = await get(url, preview(id), ADMIN)
    expect(a.status, id).toBe(200)
    expect(a.headers['x-cache']).toBe('STALE')
    expect(Number(a.headers.age)).toBeGreaterThanOrEqual(1)
    expect(a.body.equals(expectedThumbnail(id, 'preview', 'u-admin'))).toBe(true)
  }
  for (const id of FRAME.slice(0, 4)) {
    const u = await get(url, preview(id), USER)
    expect(u.headers['x-cache']).toBe('STALE')
    expect(u.body.equals(expectedThumbnail(id, 'preview', 'u-user'))).toBe(true)
  }
  // The user never saw these: the admin's stale copies are not theirs.
  for (const id of FRAME.slice(4)) {
    const u = await get(url, preview(id), USER)
    expect(u.status, id).toBe(503)
    expect(u.headers['x-cache']).not.toBe('STALE')
    expect(JSON.parse(u.body.toString())).toMatchObject({ statusCode: 503 })
  }
}

describe('Immich stopped and restarted under a running gateway', () => {
  let immich: RestartableImmich
  let stack: Stack
  beforeAll(async () => {
    immich = await RestartableImmich.start()
    stack = await startStack(config(), { immich: immich.current! })
  })
  afterAll(async () => {
    await stack.close()
    await immich.stop()
  })

  it('probes Immich from the start: upstream_up 1, breaker closed, ready', async () => {
    await waitFor(async () => sample(await scrape(stack), 'immich_gateway_upstream_up') === 1)
    const text = await scrape(stack)
    expect(sample(text, 'immich_gateway_upstream_breaker_state')).toBe(0)
    expect(
      sample(text, 'immich_gateway_upstream_breaker_transitions_total{to="open"}')
    ).toBeDefined()
    const ready = await get(stack.url, '/readyz')
    expect(ready.status).toBe(200)
    expect(JSON.parse(ready.body.toString())).toMatchObject({ status: 'ready', upstream: 'ok' })
  })

  it('serves the frame from stale entries, fails the API fast, shows browsers a page, recovers within a probe interval', async () => {
    await warm(stack.url)
    // Let every entry go past its 1 s TTL.
    await sleep(1100)

    const stoppedAt = Date.now()
    await immich.stop()
    await waitFor(async () => (await get(stack.url, '/readyz')).status === 503, 5000, 'not ready')
    const detectedMs = Date.now() - stoppedAt
    expect(detectedMs).toBeLessThan(PROBE_SECONDS * 1000 + 1000)
    // A probe in flight as Immich stopped can see its connection reset (ECONNRESET); every probe
    // after that is refused, which is what /readyz then says.
    await waitFor(
      async () =>
        (JSON.parse((await get(stack.url, '/readyz')).body.toString()) as { upstream?: string })
          .upstream === 'refused',
      PROBE_SECONDS * 1000 + 1000,
      'readyz upstream refused'
    )
    const notReady = await get(stack.url, '/readyz')
    expect(notReady.status).toBe(503)
    expect(JSON.parse(notReady.body.toString())).toMatchObject({
      status: 'not ready',
      upstream: 'refused',
    })

    await expectFrameFromStale(stack.url)

    // The API: Immich's error shape, Retry-After, answered at once.
    const times: number[] = []
    for (let i = 0; i < 300; i++) {
      const res = await get(stack.url, '/api/users/me', ADMIN)
      expect(res.status).toBe(503)
      expect(res.headers['retry-after']).toBe('1')
      expect(JSON.parse(res.body.toString())).toEqual({
        message: 'Immich is unavailable, try again shortly',
        error: 'Service Unavailable',
        statusCode: 503,
        correlationId: res.headers['x-correlation-id'],
      })
      times.push(res.ms)
    }
    // The gateway's own time per answer (its access line), and what the client saw.
    const served = stack.logs
      .map((l) => JSON.parse(l) as { route?: string; status?: number; ms?: number })
      .filter((l) => l.route === '/api/users/me' && l.status === 503)
      .map((l) => l.ms!)
    expect(served.length).toBeGreaterThanOrEqual(300)
    const fmt = (v: number[]) =>
      `p50 ${quantile(v, 0.5).toFixed(2)} ms, p99 ${quantile(v, 0.99).toFixed(2)} ms, max ${Math.max(...v).toFixed(2)} ms`
    console.log(
      `outage: detected after ${detectedMs} ms; API 503 in the gateway ${fmt(served)}; at the client ${fmt(times)} (300 sequential requests)`
    )
    // Generous bounds for a loaded 2-core CI machine; the numbers above are what the report quotes.
    expect(quantile(served, 0.99)).toBeLessThan(100)
    expect(quantile(times, 0.99)).toBeLessThan(250)

    // A person opening the web app gets a page that retries by itself; JSON clients keep JSON.
    const page = await get(stack.url, '/photos', {
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
    })
    expect(page.status).toBe(503)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['retry-after']).toBe('1')
    expect(page.headers['cache-control']).toBe('no-store')
    const html = page.body.toString()
    expect(html).toContain('<meta http-equiv="refresh" content="1">')
    expect(html).not.toMatch(/\b(src|href)=|url\(|@import/)
    expect(page.body.length).toBeLessThan(2048)
    const json = await get(stack.url, '/photos', { accept: 'application/json' })
    expect(json.status).toBe(503)
    expect(json.headers['content-type']).toContain('application/json')
    const apiHtml = await get(stack.url, '/api/users/me', { ...ADMIN, accept: 'text/html' })
    expect(apiHtml.headers['content-type']).toContain('application/json')

    // A websocket upgrade is refused at once too.
    const upgrade = await new Promise<{ status: number; retryAfter?: string }>(
      (resolve, reject) => {
        const req = httpRequest(`${stack.url}/api/socket.io/?EIO=4&transport=websocket`, {
          headers: {
            ...ADMIN,
            connection: 'Upgrade',
            upgrade: 'websocket',
            'sec-websocket-version': '13',
            'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==',
          },
        })
        req.on('response', (res) => {
          res.resume()
          resolve({
            status: res.statusCode ?? 0,
            retryAfter: res.headers['retry-after'] as string,
          })
        })
        req.on('upgrade', () => reject(new Error('upgraded while Immich is down')))
        req.on('error', reject)
        req.end()
      }
    )
    expect(upgrade).toEqual({ status: 503, retryAfter: '1' })

    const text = await scrape(stack)
    expect(sample(text, 'immich_gateway_upstream_up')).toBe(0)
    expect(sample(text, 'immich_gateway_upstream_breaker_state')).toBe(2)
    expect(
      sample(text, 'immich_gateway_upstream_breaker_transitions_total{to="open"}')
    ).toBeGreaterThanOrEqual(1)
    expect(
      sample(
        text,
        'immich_gateway_cache_requests_total{result="stale",route="/api/assets/{id}/thumbnail"}'
      )
    ).toBe(FRAME.length + 4)
    expect(stack.logs.some((l) => l.includes('upstream breaker open'))).toBe(true)

    // Immich back: the API answers within one probe interval of Immich listening again.
    await immich.start()
    const upAt = process.hrtime.bigint()
    let recovered = await get(stack.url, '/api/users/me', ADMIN)
    while (recovered.status !== 200) {
      await sleep(5)
      recovered = await get(stack.url, '/api/users/me', ADMIN)
    }
    const recoveryMs = Number(process.hrtime.bigint() - upAt) / 1e6
    console.log(`recovery: first 200 ${recoveryMs.toFixed(0)} ms after Immich listened again`)
    expect(recoveryMs).toBeLessThan(PROBE_SECONDS * 1000 + 150)
    await waitFor(async () => (await get(stack.url, '/readyz')).status === 200, 2000, 'ready')
    const after = await scrape(stack)
    expect(sample(after, 'immich_gateway_upstream_breaker_state')).toBe(0)
    expect(
      sample(after, 'immich_gateway_upstream_breaker_transitions_total{to="closed"}')
    ).toBeGreaterThanOrEqual(1)
    // Fresh bytes again, stored anew.
    const fresh = await get(stack.url, preview(FRAME[0]!), ADMIN)
    expect(fresh.headers['x-cache']).toBe('MISS')
  }, 30_000)

  it('serves stale when Immich answers 5xx, without opening the breaker', async () => {
    if (immich.current === undefined) await immich.start()
    const id = FRAME[1]!
    await get(stack.url, preview(id), ADMIN)
    await sleep(1100)
    const remove = immich.current!.setHandler(
      'GET',
      /^\/api\/assets\/[^/]+\/thumbnail$/,
      (_req, res) => {
        res.writeHead(500, { 'content-type': 'application/json' })
        res.end('{"message":"Internal server error"}')
      }
    )
    try {
      const stale = await get(stack.url, preview(id), ADMIN)
      expect(stale.status).toBe(200)
      expect(stale.headers['x-cache']).toBe('STALE')
      expect(stale.body.equals(expectedThumbnail(id, 'preview', 'u-admin'))).toBe(true)
      // Without an entry the 500 goes through as it is.
      const other = await get(stack.url, preview(FRAME[11]!), USER)
      expect(other.status).toBe(500)
    } finally {
      remove()
    }
    expect(sample(await scrape(stack), 'immich_gateway_upstream_breaker_state')).toBe(0)
    // And an answer that is not a failure (here a 404) replaces the stale entry for good.
    const gone = immich.current!.setHandler(
      'GET',
      /^\/api\/assets\/[^/]+\/thumbnail$/,
      (_req, res) => {
        res.writeHead(404, { 'content-type': 'application/json' })
        res.end('{"message":"Not found"}')
      }
    )
    try {
      expect((await get(stack.url, preview(id), ADMIN)).status).toBe(404)
    } finally {
      gone()
    }
    await immich.stop()
    await waitFor(async () => (await get(stack.url, '/readyz')).status === 503, 5000, 'not ready')
    expect((await get(stack.url, preview(id), ADMIN)).status).toBe(503)
    await immich.start()
    await waitFor(async () => (await get(stack.url, '/readyz')).status === 200, 5000, 'ready')
  })
})

describe('an Immich that accepts connections and never answers', () => {
  let hung: Server
  let stack: Stack
  const sockets = new Set<Socket>()
  beforeAll(async () => {
    const port = await freePort()
    hung = createServer((socket) => {
      sockets.add(socket)
      socket.on('close', () => sockets.delete(socket))
    })
    await new Promise<void>((resolve) => hung.listen(port, '127.0.0.1', resolve))
    stack = await startStack(
      {
        upstream: {
          url: `http://127.0.0.1:${port}`,
          headersTimeoutSeconds: 30,
          health: { intervalSeconds: PROBE_SECONDS, timeoutSeconds: 0.3 },
        },
      },
      {
        immich: { url: `http://127.0.0.1:${port}`, close: async () => {} } as never,
      }
    )
  })
  afterAll(async () => {
    await stack.close()
    for (const s of sockets) s.destroy()
    hung.close()
  })

  it('opens the breaker on the failed probe: requests are refused at once, not after the 30 s timeout', async () => {
    await waitFor(async () => (await get(stack.url, '/readyz')).status === 503, 5000, 'not ready')
    const res = await get(stack.url, '/api/users/me', ADMIN)
    expect(res.status).toBe(503)
    expect(res.ms).toBeLessThan(100)
    expect(JSON.parse((await get(stack.url, '/readyz')).body.toString())).toMatchObject({
      upstream: 'timeout',
    })
  })
})

describe('the disk tier across a gateway restart while Immich is down', () => {
  let immich: RestartableImmich
  let dir: string
  beforeAll(async () => {
    immich = await RestartableImmich.start()
    dir = await mkdtemp(join(tmpdir(), 'igw-disk-'))
  })
  afterAll(async () => {
    await immich.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('a restarted gateway serves the frame from disk, per identity; names reveal nothing; invalidation deletes files', async () => {
    const disk = { dir, maxBytes: 64 * 1024 * 1024 }
    const first = await startStack(config({ disk }), { immich: immich.current! })
    await warm(first.url)
    const entries = FRAME.length + 4
    const files = async () => (await readdir(dir)).filter((n) => !n.startsWith('.'))
    await waitFor(async () => (await files()).length === entries, 5000, 'disk writes')
    const names = await readdir(dir)
    for (const name of names) expect(name).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(names.join()).not.toMatch(/0b7e4c2a|admin|preview/)
    await first.close()

    await sleep(1100)
    await immich.stop()
    const second = await startStack(config({ disk }), { immich: immich.current! ?? first.immich })
    try {
      await waitFor(async () => (await get(second.url, '/readyz')).status === 503, 5000, 'down')
      await expectFrameFromStale(second.url)
      const text = await scrape(second)
      expect(sample(text, 'immich_gateway_cache_stored_bytes{tier="disk"}')).toBeGreaterThan(
        entries * 40_000
      )

      // Immich back; an edit of one asset through the gateway deletes its files for every identity.
      await immich.start()
      await waitFor(async () => (await get(second.url, '/readyz')).status === 200, 5000, 'up')
      immich.current!.setHandler('PUT', /^\/api\/assets\/[^/]+$/, (_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end('{}')
      })
      const res = await request(`${second.url}/api/assets/${FRAME[0]}`, {
        method: 'PUT',
        headers: { ...ADMIN, 'content-type': 'application/json' },
        body: '{"isFavorite":true}',
      })
      await res.body.dump()
      expect(res.statusCode).toBe(200)
      await waitFor(async () => (await files()).length === entries - 2, 2000, 'unlink')
    } finally {
      await second.close()
    }
  }, 30_000)
})
