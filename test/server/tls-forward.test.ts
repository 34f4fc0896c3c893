import { createHash, randomBytes } from 'node:crypto'
import type { ClientHttp2Session } from 'node:http2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { io as ioClient } from 'socket.io-client'
import { expectedBytes } from '../fake-immich/server.js'
import { sha1, uploadForm } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import { h1request, h2request, h2session, makeCa, makeLeaf, type TestCa } from './support.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

type Call = (
  path: string,
  init?: {
    method?: string
    headers?: Record<string, string>
    body?: Buffer | AsyncIterable<Buffer>
  }
) => Promise<Answer>

/** A body sent in 64 KiB pieces as they are produced: nothing is known of its length in advance. */
async function* chunked(bytes: Buffer): AsyncIterable<Buffer> {
  for (let i = 0; i < bytes.length; i += 65_536) yield bytes.subarray(i, i + 65_536)
}

let ca: TestCa
let stack: Stack
let session: ClientHttp2Session

beforeAll(async () => {
  ca = makeCa()
  const leaf = makeLeaf(ca, 'forward')
  stack = await startStack({
    server: { tls: { certFile: leaf.certFile, keyFile: leaf.keyFile } },
    policies: { 'login-guard': { maxBodyBytes: 1024 } },
  })
  session = await h2session(stack.url, ca.pem)
})
afterAll(async () => {
  session?.close()
  await stack?.close()
})

const clients: [string, () => Call][] = [
  [
    'HTTP/1.1 over TLS',
    () => async (path, init) => {
      const body = init?.body
      // node:https sends a Buffer body with a length; an iterable is collected (h1 chunking is tested in e2e).
      const chunks: Buffer[] = []
      if (body !== undefined && !Buffer.isBuffer(body)) for await (const c of body) chunks.push(c)
      const bytes = body === undefined || Buffer.isBuffer(body) ? body : Buffer.concat(chunks)
      return h1request(`${stack.url}${path}`, ca.pem, { ...init, body: bytes })
    },
  ],
  [
    'HTTP/2',
    () => async (path, init) => {
      const res = await h2request(session, path, init)
      return { ...res, headers: res.headers as Answer['headers'] }
    },
  ],
]

describe.each(clients)('forwarding over %s', (label, make) => {
  const call = (...args: Parameters<Call>) => make()(...args)
  const h2 = label === 'HTTP/2'

  it('streams an upload through untouched', async () => {
    const file = randomBytes(6 * 1024 * 1024)
    const mp = uploadForm(file)
    const headers: Record<string, string> = { ...ADMIN, 'content-type': mp.contentType }
    // Over h2 the body has no content-length: the gateway streams it without knowing the size.
    if (!h2) headers['content-length'] = String(mp.body.length)
    const res = await call('/api/assets', {
      method: 'POST',
      headers,
      body: h2 ? chunked(mp.body) : mp.body,
    })
    expect(res.status, res.body.toString()).toBe(201)
    const upload = stack.immich.lastRequest().upload!
    expect(upload.bytes).toBe(mp.body.length)
    expect(upload.sha1).toBe(mp.bodySha1)
    expect(upload.fileSha1).toBe(mp.fileSha1)
  })

  it('streams a download and serves exact ranges (206)', async () => {
    stack.immich.setAssetSize('big-tls', 8 * 1024 * 1024)
    const full = expectedBytes('big-tls', 8 * 1024 * 1024)
    const whole = await call('/api/assets/big-tls/original', { headers: ADMIN })
    expect(whole.status).toBe(200)
    expect(whole.body.length).toBe(full.length)
    expect(sha1(whole.body)).toBe(sha1(full))

    const ranged = await call('/api/assets/big-tls/video/playback', {
      headers: { ...ADMIN, range: 'bytes=1000-1999' },
    })
    expect(ranged.status).toBe(206)
    expect(ranged.headers['content-range']).toBe(`bytes 1000-1999/${full.length}`)
    expect(ranged.body.equals(full.subarray(1000, 2000))).toBe(true)
  })

  it('keeps the three Set-Cookie headers of a login as three', async () => {
    const res = await call('/api/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ email: 'admin@example.com', password: 'password' })),
    })
    expect(res.status).toBe(201)
    const cookies = res.headers['set-cookie'] as string[]
    expect(cookies.map((c) => c.split('=')[0])).toEqual([
      'immich_access_token',
      'immich_auth_type',
      'immich_is_authenticated',
    ])
  })

  it('tells Immich X-Forwarded-Proto https and the Host the client asked for', async () => {
    // h2 names the host in :authority; Immich gets it as Host, as over h1.
    const res = await call('/api/server/ping', {
      headers: h2 ? { ':authority': 'photos.example.com' } : { host: 'photos.example.com' },
    })
    expect(res.status).toBe(200)
    const seen = stack.immich.lastRequest().headers
    expect(seen['x-forwarded-proto']).toBe('https')
    expect(seen.host).toBe('photos.example.com')
    expect(seen['x-forwarded-host']).toBe('photos.example.com')
    expect(Object.keys(seen).filter((name) => name.startsWith(':'))).toEqual([])
  })

  it('answers its own refusals in Immich’s error shape', async () => {
    const res = await call('/api/albums', { headers: { 'x-api-key': 'igw_short' } })
    expect(res.status).toBe(401)
    const body = JSON.parse(res.body.toString()) as Record<string, unknown>
    expect(body).toMatchObject({
      message: 'Invalid API key',
      error: 'Unauthorized',
      statusCode: 401,
    })
    expect(res.headers['x-correlation-id']).toBe(body.correlationId)

    // A refusal that closes the connection on h1 (Connection: close is not a header h2 may send).
    const big = await call('/api/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': '4096' },
      body: Buffer.alloc(4096, 0x20),
    })
    expect(big.status).toBe(413)
    expect(JSON.parse(big.body.toString())).toMatchObject({ statusCode: 413 })
    // The h2 session outlived the refusal.
    expect((await call('/api/server/ping')).status).toBe(200)
  })

  it('serves a thumbnail from the cache (a prebuilt head) like Immich would', async () => {
    const id = h2 ? '5f0b8a9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b' : '6f0b8a9e-1c2d-4e3f-8a9b-0c1d2e3f4a5b'
    const path = `/api/assets/${id}/thumbnail?size=thumbnail`
    const miss = await call(path, { headers: ADMIN })
    expect(miss.status).toBe(200)
    expect(miss.headers['x-cache']).toBe('MISS')
    // Stored on the second request (minUses 2), served from memory from the third.
    expect((await call(path, { headers: ADMIN })).headers['x-cache']).toBe('MISS')
    const hit = await call(path, { headers: ADMIN })
    expect(hit.status).toBe(200)
    expect(hit.headers['x-cache']).toBe('HIT')
    expect(hit.body.equals(miss.body)).toBe(true)
    expect(hit.headers['content-type']).toBe(miss.headers['content-type'])
  })

  it('counts the requests in the metrics', async () => {
    const text = await stack.gateway.deps.metrics.registry.metrics()
    expect(text).toMatch(
      /immich_gateway_requests_total\{method="GET",route="\/api\/assets\/\{id\}\/original",status="200",client="[^"]+"\} [12]/
    )
  })
})

describe('over TLS', () => {
  it('the web app over h2: page, script, login, then the API with the session cookie', async () => {
    const page = await h2request(session, '/photos', { headers: { accept: 'text/html' } })
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.body.toString()).toContain('/_app/immutable/entry/start.js')
    const script = await h2request(session, '/_app/immutable/entry/start.js')
    expect(script.status).toBe(200)
    expect(script.headers['cache-control']).toBe('public, max-age=31536000, immutable')

    const login = await h2request(session, '/api/auth/login', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify({ email: 'admin@example.com', password: 'password' })),
    })
    expect(login.status).toBe(201)
    const cookie = (login.headers['set-cookie'] as string[]).map((c) => c.split(';')[0]).join('; ')
    const me = await h2request(session, '/api/users/me', { headers: { cookie } })
    expect(me.status).toBe(200)
    expect(JSON.parse(me.body.toString())).toMatchObject({ email: 'admin@example.com' })
  })

  it('HTTP/2 streams share one connection (several requests in flight at once)', async () => {
    const answers = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        h2request(session, `/api/assets/multi-${i}/original`, { headers: ADMIN })
      )
    )
    for (const [i, a] of answers.entries()) {
      expect(a.status).toBe(200)
      expect(createHash('sha1').update(a.body).digest('hex')).toBe(
        sha1(expectedBytes(`multi-${i}`, a.body.length))
      )
    }
  })

  it('a stream reset mid-download or mid-upload aborts the upstream request; the session lives on', async () => {
    stack.immich.clearRequests()
    const download = session.request({
      ':path': '/api/assets/slow-h2/video/playback?slow=1',
      ...ADMIN,
    })
    await new Promise((resolve) => download.once('data', resolve))
    download.close(0x8) // RST_STREAM CANCEL
    await expect
      .poll(() => stack.immich.requests.find((r) => r.url.includes('slow-h2'))?.aborted, {
        timeout: 5000,
      })
      .toBe(true)

    const upload = session.request({
      ':method': 'POST',
      ':path': '/api/assets',
      'content-type': 'multipart/form-data; boundary=x',
      ...ADMIN,
    })
    upload.on('error', () => {})
    upload.write(Buffer.alloc(256 * 1024, 1))
    await expect
      .poll(() => stack.immich.requestsTo('/api/assets', 'POST').at(-1)?.bodyBytes ?? 0, {
        timeout: 5000,
      })
      .toBeGreaterThan(0)
    // RST_STREAM without END_STREAM (close() would end the body first): the upload is cut short.
    upload.destroy()
    await expect
      .poll(() => stack.immich.requestsTo('/api/assets', 'POST').at(-1)?.aborted, {
        timeout: 5000,
      })
      .toBe(true)
    expect((await h2request(session, '/api/server/ping')).status).toBe(200)
  })

  it('relays socket.io over a websocket upgraded on HTTP/1.1 on the TLS port', async () => {
    const socket = ioClient(stack.url, {
      path: '/api/socket.io',
      transports: ['websocket'],
      extraHeaders: ADMIN,
      reconnection: false,
      ca: ca.pem,
    })
    try {
      await new Promise<void>((resolve, reject) => {
        socket.on('connect', () => resolve())
        socket.on('connect_error', reject)
      })
      const received = new Promise<unknown>((resolve) => socket.on('on_upload_success', resolve))
      stack.immich.emit('on_upload_success', { id: 'asset-tls' })
      expect(await received).toEqual({ id: 'asset-tls' })
      expect(stack.immich.lastRequest().headers['x-forwarded-proto']).toBe('https')
    } finally {
      socket.close()
    }
  })
})
