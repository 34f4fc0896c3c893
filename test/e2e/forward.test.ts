import { randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { connect } from 'node:net'
import { Readable } from 'node:stream'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { io as ioClient } from 'socket.io-client'
import { expectedBytes } from '../fake-immich/server.js'
import { uploadForm } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }

function rawRequest(
  url: string,
  headers: Record<string, string>
): Promise<{
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => (body += chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('forwarding core', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(async () => {
    await stack.close()
  })

  it('passes every method and the query string byte-for-byte', async () => {
    for (const method of ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const) {
      const query = '?b=2&a=1&a=%20x&empty=&flag&%C3%A9=%E2%9C%93&plus=a+b'
      const res = await request(`${stack.url}/api/echo/thing${query}`, {
        method,
        headers: ADMIN,
        body: method === 'GET' || method === 'OPTIONS' ? undefined : '{"x":1}',
      })
      expect(res.statusCode, method).toBe(200)
      await res.body.dump()
      const seen = stack.immich.lastRequest()
      expect(seen.method).toBe(method)
      expect(seen.url).toBe(`/api/echo/thing${query}`)
    }
  })

  it('removes hop-by-hop headers both ways and sets X-Forwarded-*', async () => {
    stack.immich.setHandler('GET', /^\/api\/hop$/, (_req, res) => {
      res.writeHead(200, {
        connection: 'x-up-hop',
        'x-up-hop': 'secret',
        'proxy-authenticate': 'Basic',
        'x-kept': 'yes',
        'content-type': 'text/plain',
      })
      res.end('ok')
    })
    // node:http, not undici: undici refuses to send hop-by-hop headers at all.
    const res = await rawRequest(`${stack.url}/api/hop`, {
      connection: 'keep-alive, x-client-hop',
      'x-client-hop': '1',
      'keep-alive': 'timeout=5',
      te: 'trailers',
      'proxy-authorization': 'Basic abc',
      'x-forwarded-for': '10.1.2.3',
      host: 'photos.example.com',
      'x-end-to-end': 'kept',
    })
    expect(res.body).toBe('ok')
    expect(res.headers['x-kept']).toBe('yes')
    expect(res.headers['x-up-hop']).toBeUndefined()
    expect(res.headers['proxy-authenticate']).toBeUndefined()
    const seen = stack.immich.lastRequest().headers
    for (const hop of [
      'x-client-hop',
      'keep-alive',
      'te',
      'proxy-authorization',
      'transfer-encoding',
      'upgrade',
    ])
      expect(seen[hop], hop).toBeUndefined()
    expect(seen.connection ?? 'keep-alive').toMatch(/keep-alive/i)
    expect(seen['x-end-to-end']).toBe('kept')
    expect(seen['x-forwarded-for']).toBe('10.1.2.3, 127.0.0.1')
    expect(seen['x-forwarded-proto']).toBe('http')
    expect(seen['x-forwarded-host']).toBe('photos.example.com')
    expect(seen.host).toBe('photos.example.com')
  })

  it('keeps the three Set-Cookie headers of a login as three', async () => {
    const res = await request(`${stack.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'admin@example.com', password: 'password' }),
    })
    expect(res.statusCode).toBe(201)
    const cookies = res.headers['set-cookie']
    expect(Array.isArray(cookies) && cookies.length).toBe(3)
    expect((cookies as string[]).map((c) => c.split('=')[0])).toEqual([
      'immich_access_token',
      'immich_auth_type',
      'immich_is_authenticated',
    ])
    await res.body.dump()
  })

  it('serves exact byte ranges, If-Range and HEAD', async () => {
    const full = expectedBytes('vid-1', 1024 * 1024)
    const ranged = await request(`${stack.url}/api/assets/vid-1/video/playback`, {
      headers: { ...ADMIN, range: 'bytes=1000-1999' },
    })
    expect(ranged.statusCode).toBe(206)
    expect(ranged.headers['content-range']).toBe(`bytes 1000-1999/${full.length}`)
    expect(ranged.headers['accept-ranges']).toBe('bytes')
    expect(Buffer.from(await ranged.body.arrayBuffer()).equals(full.subarray(1000, 2000))).toBe(
      true
    )

    const suffix = await request(`${stack.url}/api/assets/vid-1/original`, {
      headers: { ...ADMIN, range: 'bytes=-500' },
    })
    expect(suffix.statusCode).toBe(206)
    expect(
      Buffer.from(await suffix.body.arrayBuffer()).equals(full.subarray(full.length - 500))
    ).toBe(true)

    const head = await request(`${stack.url}/api/assets/vid-1/original`, {
      method: 'HEAD',
      headers: ADMIN,
    })
    expect(head.statusCode).toBe(200)
    expect(head.headers['content-length']).toBe(String(full.length))
    expect((await head.body.arrayBuffer()).byteLength).toBe(0)
    const etag = head.headers.etag as string

    const ifRange = await request(`${stack.url}/api/assets/vid-1/original`, {
      headers: { ...ADMIN, range: 'bytes=0-9', 'if-range': etag },
    })
    expect(ifRange.statusCode).toBe(206)
    await ifRange.body.dump()
    const stale = await request(`${stack.url}/api/assets/vid-1/original`, {
      headers: { ...ADMIN, range: 'bytes=0-9', 'if-range': '"stale"' },
    })
    expect(stale.statusCode).toBe(200)
    expect((await stale.body.arrayBuffer()).byteLength).toBe(full.length)
  })

  it('streams an upload through untouched (bytes and sha1 identical upstream)', async () => {
    const file = randomBytes(5 * 1024 * 1024 + 123)
    const mp = uploadForm(file)
    // Chunked, from a stream: no Content-Length, nothing buffered by the client either.
    const chunks = function* () {
      for (let i = 0; i < mp.body.length; i += 64 * 1024) yield mp.body.subarray(i, i + 64 * 1024)
    }
    const res = await request(`${stack.url}/api/assets`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': mp.contentType },
      body: Readable.from(chunks()),
    })
    expect(res.statusCode).toBe(201)
    expect(((await res.body.json()) as { status: string }).status).toBe('created')
    const upload = stack.immich.lastRequest().upload!
    expect(upload.bytes).toBe(mp.body.length)
    expect(upload.sha1).toBe(mp.bodySha1)
    expect(upload.fileBytes).toBe(file.length)
    expect(upload.fileSha1).toBe(mp.fileSha1)
  })

  it('answers Expect: 100-continue itself and then streams the body', async () => {
    const mp = uploadForm(randomBytes(256 * 1024))
    const { status, sawContinue } = await new Promise<{ status: number; sawContinue: boolean }>(
      (resolve, reject) => {
        let sawContinue = false
        const req = httpRequest(`${stack.url}/api/assets`, {
          method: 'POST',
          headers: {
            ...ADMIN,
            'content-type': mp.contentType,
            'content-length': mp.body.length,
            expect: '100-continue',
          },
        })
        req.on('continue', () => {
          sawContinue = true
          req.end(mp.body)
        })
        req.on('response', (res) => {
          res.resume()
          res.on('end', () => resolve({ status: res.statusCode!, sawContinue }))
        })
        req.on('error', reject)
        req.flushHeaders()
      }
    )
    expect(sawContinue).toBe(true)
    expect(status).toBe(201)
    const seen = stack.immich.lastRequest()
    expect(seen.headers.expect).toBeUndefined()
    expect(seen.upload!.sha1).toBe(mp.bodySha1)
  })

  it('aborts the upstream request when the client goes away mid-download', async () => {
    stack.immich.clearRequests()
    const res = await request(`${stack.url}/api/assets/slow-1/video/playback?slow=1`, {
      headers: ADMIN,
    })
    expect(res.statusCode).toBe(200)
    const reader = res.body[Symbol.asyncIterator]()
    await reader.next()
    res.body.destroy()
    await expect
      .poll(() => stack.immich.requests.find((r) => r.url.includes('slow-1'))?.aborted, {
        timeout: 5000,
      })
      .toBe(true)
  })

  it('aborts the upstream request when the client goes away mid-upload', async () => {
    stack.immich.clearRequests()
    const boundary = 'abortboundary'
    const req = httpRequest(`${stack.url}/api/assets`, {
      method: 'POST',
      headers: {
        ...ADMIN,
        'content-type': `multipart/form-data; boundary=${boundary}`,
        'content-length': 50 * 1024 * 1024,
      },
    })
    req.on('error', () => {})
    req.write(
      `--${boundary}\r\nContent-Disposition: form-data; name="assetData"; filename="x"\r\n\r\n`
    )
    req.write(randomBytes(256 * 1024))
    await expect
      .poll(
        () => stack.immich.requests.some((r) => r.method === 'POST' && r.url === '/api/assets'),
        { timeout: 5000 }
      )
      .toBe(true)
    req.destroy()
    await expect
      .poll(
        () =>
          stack.immich.requests.find((r) => r.method === 'POST' && r.url === '/api/assets')
            ?.aborted,
        { timeout: 5000 }
      )
      .toBe(true)
  })

  it('answers a client that half-closes its side after the request (as nginx does)', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(new URL(stack.url).port), '127.0.0.1', () => {
        socket.end(
          'GET /api/slow-headers?ms=100 HTTP/1.1\r\nHost: x\r\nx-api-key: fake-admin-key\r\n\r\n'
        )
      })
      let data = ''
      socket.on('data', (d: Buffer) => (data += d.toString()))
      socket.on('close', () => resolve(data))
      socket.on('error', reject)
    })
    expect(answer).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
  })

  it('passes the web UI through unchanged', async () => {
    const res = await request(`${stack.url}/`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/text\/html/)
    expect(await res.body.text()).toMatch(/<html/i)
    expect(stack.immich.lastRequest().url).toBe('/')
  })

  it('sends one request id: echoed to the client and upstream as X-Correlation-ID', async () => {
    const res = await request(`${stack.url}/api/server/ping`, {
      headers: { 'x-request-id': 'abc-123' },
    })
    await res.body.dump()
    expect(res.headers['x-request-id']).toBe('abc-123')
    expect(stack.immich.lastRequest().headers['x-correlation-id']).toBe('abc-123')
    const bad = await request(`${stack.url}/api/server/ping`, {
      headers: { 'x-request-id': 'x'.repeat(500) },
    })
    await bad.body.dump()
    expect(bad.headers['x-request-id']).not.toBe('x'.repeat(500))
  })

  it('relays a socket.io event emitted upstream to a client connected through the gateway', async () => {
    const socket = ioClient(stack.url, {
      path: '/api/socket.io',
      transports: ['websocket'],
      extraHeaders: ADMIN,
      reconnection: false,
    })
    try {
      await new Promise<void>((resolve, reject) => {
        socket.on('connect', () => resolve())
        socket.on('connect_error', reject)
      })
      const received = new Promise<unknown>((resolve) => socket.on('on_upload_success', resolve))
      stack.immich.emit('on_upload_success', { id: 'asset-42' })
      expect(await received).toEqual({ id: 'asset-42' })
    } finally {
      socket.close()
    }
  })
})

describe('upstream failures', () => {
  it('answers 502 in Immich error shape when Immich refuses the connection', async () => {
    // Without the breaker (test/e2e/resilience.test.ts has it): the refused connection itself.
    const stack = await startStack({ upstream: { breaker: { enabled: false } } })
    const port = stack.immich.port
    await stack.immich.close()
    try {
      const res = await request(`${stack.url}/api/users/me`, { headers: ADMIN })
      expect(res.statusCode).toBe(502)
      const body = (await res.body.json()) as Record<string, unknown>
      expect(body).toEqual({
        message: 'Immich is not reachable',
        error: 'Bad Gateway',
        statusCode: 502,
        correlationId: res.headers['x-correlation-id'],
      })
      expect(port).toBeGreaterThan(0)
    } finally {
      await stack.gateway.close()
    }
  })

  it('answers 504 when Immich sends no headers within the configured time', async () => {
    const stack = await startStack({ upstream: { headersTimeoutSeconds: 0.3 } })
    try {
      const res = await request(`${stack.url}/api/slow-headers?ms=3000`, { headers: ADMIN })
      expect(res.statusCode).toBe(504)
      const body = (await res.body.json()) as Record<string, unknown>
      expect(body.error).toBe('Gateway Timeout')
      expect(body.statusCode).toBe(504)
      expect(body.correlationId).toBe(res.headers['x-correlation-id'])
    } finally {
      await stack.close()
    }
  })

  it('has no overall body timeout: a slow trickle upload completes', async () => {
    const stack = await startStack({ upstream: { headersTimeoutSeconds: 1 } })
    try {
      const mp = uploadForm(randomBytes(40 * 1024))
      async function* trickle() {
        for (let i = 0; i < mp.body.length; i += 4096) {
          yield mp.body.subarray(i, i + 4096)
          await sleep(150) // ~1.5 s in total: longer than the headers timeout
        }
      }
      const res = await request(`${stack.url}/api/assets`, {
        method: 'POST',
        headers: { ...ADMIN, 'content-type': mp.contentType },
        body: Readable.from(trickle()),
      })
      expect(res.statusCode).toBe(201)
      await res.body.dump()
      expect(stack.immich.lastRequest().upload!.sha1).toBe(mp.bodySha1)
    } finally {
      await stack.close()
    }
  })
})
