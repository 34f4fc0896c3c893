import { randomBytes } from 'node:crypto'
import { connect } from 'node:net'
import { cors } from 'hono/cors'
import { HTTPException } from 'hono/http-exception'
import { secureHeaders } from 'hono/secure-headers'
import { io as ioClient } from 'socket.io-client'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startStack, type Stack } from '../support/stack.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }

/** Sends raw bytes and reads until the peer closes or resets (or `ms` pass). */
function raw(url: string, bytes: string, ms = 3000): Promise<string> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve) => {
    const socket = connect(Number(port), hostname, () => socket.write(bytes))
    let out = ''
    socket.on('data', (d: Buffer) => (out += d.toString('latin1')))
    socket.on('close', () => resolve(out))
    socket.on('error', () => {})
    socket.setTimeout(ms, () => socket.destroy())
  })
}

function upgradeHead(path: string, headers: Record<string, string> = {}): string {
  const lines = Object.entries({
    host: 'gateway',
    upgrade: 'websocket',
    connection: 'Upgrade',
    'sec-websocket-key': randomBytes(16).toString('base64'),
    'sec-websocket-version': '13',
    ...headers,
  })
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  return `GET ${path} HTTP/1.1\r\n${lines}\r\n`
}

/** The access line of a request, found by the correlation id the gateway answered with. */
async function accessLine(stack: Stack, pick: (line: Record<string, unknown>) => boolean) {
  for (let i = 0; i < 50; i++) {
    const found = stack.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.msg === 'request')
      .filter(pick)
    if (found.length > 0) return found.at(-1)!
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error('no access line')
}

async function websocketCount(stack: Stack, outcome: string): Promise<number> {
  const text = await stack.gateway.deps.metrics.registry.metrics()
  const line = text
    .split('\n')
    .find(
      (l) =>
        l.startsWith('immich_gateway_websocket_connections_total{') &&
        l.includes(`outcome="${outcome}"`)
    )
  return line === undefined ? 0 : Number(line.split(' ').at(-1))
}

describe('every answer is recorded with the status sent', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(async () => {
    await stack.close()
  })

  it('a websocket Immich accepts: 101, route /api/socket.io, counted as upgraded', async () => {
    const before = await websocketCount(stack, 'upgraded')
    const ok = await new Promise<boolean>((resolve) => {
      const socket = ioClient(stack.url, {
        path: '/api/socket.io',
        transports: ['websocket'],
        extraHeaders: ADMIN,
        reconnection: false,
        timeout: 3000,
      })
      socket.on('connect', () => (socket.close(), resolve(true)))
      socket.on('connect_error', () => (socket.close(), resolve(false)))
    })
    expect(ok).toBe(true)
    const line = await accessLine(stack, (l) => l.status === 101)
    expect(line.route).toBe('/api/socket.io')
    expect(await websocketCount(stack, 'upgraded')).toBe(before + 1)
  })

  it('a websocket Immich refuses: its status relayed and recorded, counted as refused', async () => {
    const before = await websocketCount(stack, 'refused')
    // socket.io itself refuses a transport it does not know.
    const answer = await raw(
      stack.url,
      upgradeHead('/api/socket.io/?EIO=4&transport=bogus', {
        ...ADMIN,
        'x-request-id': 'ws-refused-1',
      })
    )
    expect(answer).toMatch(/^HTTP\/1\.1 400 /)
    const line = await accessLine(stack, (l) => l.requestId === 'ws-refused-1')
    expect(line.status).toBe(400)
    expect(line.route).toBe('/api/socket.io')
    expect(await websocketCount(stack, 'refused')).toBe(before + 1)
  })

  it('an upgrade to any other route is refused before Immich sees it (400, recorded)', async () => {
    const before = stack.immich.requests.length
    const answer = await raw(
      stack.url,
      upgradeHead('/api/assets/a1/thumbnail', { ...ADMIN, 'x-request-id': 'ws-elsewhere-1' })
    )
    expect(answer).toMatch(/^HTTP\/1\.1 400 /)
    expect(answer).toContain('"statusCode":400')
    expect(stack.immich.requests.length).toBe(before)
    const line = await accessLine(stack, (l) => l.requestId === 'ws-elsewhere-1')
    expect(line.status).toBe(400)
  })

  it('own endpoints are recorded with their real status and body bytes', async () => {
    const res = await request(`${stack.url}/healthz`, { headers: { 'x-request-id': 'own-1' } })
    const body = await res.body.text()
    const line = await accessLine(stack, (l) => l.requestId === 'own-1')
    expect(line.status).toBe(200)
    expect(line.bytesOut).toBe(Buffer.byteLength(body))
    expect(line.bytesOut).toBeGreaterThan(0)
  })

  it('a refusal and a forwarded answer are recorded with what was sent', async () => {
    const refused = await request(`${stack.url}/api/nope/at/all`, {
      headers: { ...ADMIN, 'x-request-id': 'refused-1' },
    })
    const refusedBody = await refused.body.text()
    const r = await accessLine(stack, (l) => l.requestId === 'refused-1')
    expect(r.status).toBe(refused.statusCode)
    expect(r.bytesOut).toBe(Buffer.byteLength(refusedBody))
    const ok = await request(`${stack.url}/api/server/ping`, {
      headers: { 'x-request-id': 'fwd-1' },
    })
    const okBody = await ok.body.text()
    const f = await accessLine(stack, (l) => l.requestId === 'fwd-1')
    expect(f.status).toBe(200)
    expect(f.bytesOut).toBe(Buffer.byteLength(okBody))
  })

  it('a client that leaves mid-upload is recorded as 499 with the reason', async () => {
    const { hostname, port } = new URL(stack.url)
    await new Promise<void>((resolve) => {
      const socket = connect(Number(port), hostname, () => {
        socket.write(
          'POST /api/assets HTTP/1.1\r\nhost: gateway\r\nx-api-key: fake-admin-key\r\n' +
            'x-request-id: gone-1\r\ncontent-type: multipart/form-data; boundary=b0\r\n' +
            'content-length: 10000000\r\n\r\n' +
            'x'.repeat(1000)
        )
        setTimeout(() => (socket.destroy(), resolve()), 200)
      })
    })
    const line = await accessLine(stack, (l) => l.requestId === 'gone-1')
    expect(line.status).toBe(499)
    expect(line.aborted).toBe('client')
  })

  it('a broken chunked body is recorded with the 400 Node answered, not 200', async () => {
    const answer = await raw(
      stack.url,
      'POST /api/assets HTTP/1.1\r\nhost: gateway\r\nx-api-key: fake-admin-key\r\n' +
        'x-request-id: chunked-1\r\ncontent-type: application/octet-stream\r\n' +
        'transfer-encoding: chunked\r\n\r\n5\r\nhello\r\nZZZ\r\n'
    )
    expect(answer).toMatch(/^HTTP\/1\.1 400 /)
    const line = await accessLine(stack, (l) => l.requestId === 'chunked-1')
    expect(line.status).toBe(400)
  })
})

describe('when Immich is down, an upgrade is answered and recorded 502', () => {
  it('records 502 and counts the upgrade as an error', async () => {
    // Without the breaker, which would answer 503 once its probe saw Immich go (test/e2e/resilience.test.ts).
    const stack = await startStack({ upstream: { breaker: { enabled: false } } })
    try {
      await stack.immich.close()
      const answer = await raw(
        stack.url,
        upgradeHead('/api/socket.io/?EIO=4&transport=websocket', {
          ...ADMIN,
          'x-request-id': 'ws-down-1',
        })
      )
      expect(answer).toMatch(/^HTTP\/1\.1 502 /)
      const line = await accessLine(stack, (l) => l.requestId === 'ws-down-1')
      expect(line.status).toBe(502)
      expect(await websocketCount(stack, 'error')).toBe(1)
    } finally {
      await stack.gateway.close()
    }
  })
})

describe('stock Hono middleware in the pipeline', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack(
      {},
      {
        middleware: [
          cors({ origin: 'https://frame.example' }),
          secureHeaders(),
          async (c, next) => {
            if (c.req.header('x-test-refuse') === 'yes') {
              throw new HTTPException(418, { message: 'Refused by a stock middleware' })
            }
            await next()
          },
        ],
      }
    )
  })
  afterAll(async () => {
    await stack.close()
  })

  it('hono/cors decorates forwarded (streamed) answers', async () => {
    const res = await request(`${stack.url}/api/server/ping`, {
      headers: { origin: 'https://frame.example' },
    })
    await res.body.dump()
    expect(res.statusCode).toBe(200)
    expect(res.headers['access-control-allow-origin']).toBe('https://frame.example')
  })

  it('hono/secure-headers decorates the answers the app returns as Responses', async () => {
    const res = await request(`${stack.url}/healthz`)
    await res.body.dump()
    expect(res.headers['x-content-type-options']).toBe('nosniff')
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN')
  })

  it("an HTTPException from a stock middleware is answered in Immich's error shape", async () => {
    const res = await request(`${stack.url}/api/server/ping`, {
      headers: { 'x-test-refuse': 'yes' },
    })
    expect(res.statusCode).toBe(418)
    const body = (await res.body.json()) as Record<string, unknown>
    expect(body.message).toBe('Refused by a stock middleware')
    expect(body.statusCode).toBe(418)
    expect(body.correlationId).toBe(res.headers['x-correlation-id'])
  })
})

describe('request head limits and slow clients', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack({
      server: { maxHeaders: 50, headersTimeoutSeconds: 1, maxConnectionsPerAddress: 5 },
    })
  })
  afterAll(async () => {
    await stack.close()
  })

  async function refusedCount(reason: string): Promise<number> {
    const text = await stack.gateway.deps.metrics.registry.metrics()
    const line = text
      .split('\n')
      .find((l) => l.startsWith(`immich_gateway_connections_refused_total{reason="${reason}"}`))
    return Number(line?.split(' ').at(-1) ?? NaN)
  }

  const head = (lines: string) =>
    `GET /api/server/ping HTTP/1.1\r\nhost: gateway\r\n${lines}connection: close\r\n\r\n`

  it('10,000 identical small headers get 431, like 10,000 distinct ones', async () => {
    const same = await raw(stack.url, head('x-a: 1\r\n'.repeat(10_000)))
    expect(same).toMatch(/^HTTP\/1\.1 431 /)
    const distinct = await raw(
      stack.url,
      head(Array.from({ length: 10_000 }, (_, i) => `x-${i}: 1\r\n`).join(''))
    )
    expect(distinct).toMatch(/^HTTP\/1\.1 431 /)
  })

  it('more header lines than server.maxHeaders get 431; as many as allowed pass', async () => {
    const tooMany = await raw(stack.url, head('x-a: 1\r\n'.repeat(60)))
    expect(tooMany).toMatch(/^HTTP\/1\.1 431 /)
    expect(tooMany).toContain('"statusCode":431')
    const enough = await raw(stack.url, head('x-a: 1\r\n'.repeat(40)))
    expect(enough).toMatch(/^HTTP\/1\.1 200 /)
  })

  it('a head dripped slower than headersTimeoutSeconds gets 408 and is counted', async () => {
    const before = await refusedCount('header_timeout')
    const { hostname, port } = new URL(stack.url)
    const started = Date.now()
    const answer = await new Promise<string>((resolve) => {
      const socket = connect(Number(port), hostname, () =>
        socket.write('GET /api/server/ping HTTP/1.1\r\n')
      )
      const drip = setInterval(() => socket.writable && socket.write('x-drip: 1\r\n'), 200)
      let out = ''
      socket.on('data', (d: Buffer) => (out += d.toString()))
      socket.on('close', () => (clearInterval(drip), resolve(out)))
      socket.on('error', () => {})
      socket.setTimeout(8000, () => socket.destroy())
    })
    expect(answer).toMatch(/^HTTP\/1\.1 408 /)
    expect(Date.now() - started).toBeLessThan(4000)
    expect(await refusedCount('header_timeout')).toBe(before + 1)
  })

  it('past maxConnectionsPerAddress a new connection is closed at once and counted', async () => {
    const before = await refusedCount('per_address_limit')
    const { hostname, port } = new URL(stack.url)
    const held = await Promise.all(
      Array.from(
        { length: 5 },
        () =>
          new Promise<ReturnType<typeof connect>>((resolve) => {
            const s = connect(Number(port), hostname, () => resolve(s))
            s.on('error', () => {})
          })
      )
    )
    const sixth = await raw(stack.url, head(''), 2000)
    expect(sixth).toBe('')
    expect(await refusedCount('per_address_limit')).toBe(before + 1)
    for (const s of held) s.destroy()
    await new Promise((r) => setTimeout(r, 100))
    expect(await raw(stack.url, head(''))).toMatch(/^HTTP\/1\.1 200 /)
  })
})
