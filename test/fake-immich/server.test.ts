import { sha1, uploadForm } from '../support/http.js'
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { Readable } from 'node:stream'
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { Client, request } from 'undici'
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client'
import {
  MEDIA_CACHE_CONTROL,
  expectedBytes,
  expectedRange,
  expectedThumbnail,
  startFakeImmich,
  type FakeImmich,
} from './server.js'
import { MultipartParser } from './multipart.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }
const USER = { 'x-api-key': 'fake-user-key' }

function connect(fake: FakeImmich, headers: Record<string, string>): ClientSocket {
  return ioClient(fake.url, {
    path: '/api/socket.io',
    transports: ['websocket'],
    extraHeaders: headers,
    reconnection: false,
  })
}

describe('fake immich', () => {
  let fake: FakeImmich
  beforeAll(async () => {
    fake = await startFakeImmich()
  })
  afterAll(async () => {
    await fake.close()
  })
  beforeEach(() => fake.reset())

  it('answers ping and version like Immich 3.1 and records the request', async () => {
    const res = await request(`${fake.url}/api/server/ping?x=1`, {
      headers: { 'x-correlation-id': 'abc12345' },
    })
    expect(res.statusCode).toBe(200)
    expect(res.headers['x-powered-by']).toBe('Express')
    expect(res.headers['x-correlation-id']).toBe('abc12345')
    expect(res.headers['content-type']).toBe('application/json; charset=utf-8')
    expect(res.headers.etag).toBe('"e-X79OU2IZYkDmLU4ZK9k3d4mHVbI"')
    expect(await res.body.text()).toBe('{"res":"pong"}')
    const rec = fake.lastRequest()
    expect(rec.method).toBe('GET')
    expect(rec.url).toBe('/api/server/ping?x=1')
    expect(rec.bodyBytes).toBe(0)

    const v = await request(`${fake.url}/api/server/version`)
    expect(await v.body.json()).toMatchObject({ major: 3, minor: 1, patch: 0 })
    expect(v.headers['x-correlation-id']).toMatch(/^[a-z0-9]{8}$/)
  })

  it('authenticates in Immich order and answers Immich 3 errors', async () => {
    const me = await request(`${fake.url}/api/users/me`, { headers: USER })
    expect(me.statusCode).toBe(200)
    expect(await me.body.json()).toMatchObject({
      id: 'u-user',
      name: 'User',
      email: 'user@example.com',
      isAdmin: false,
    })

    const cases: [Record<string, string>, number, string][] = [
      [{}, 401, 'Authentication required'],
      [{ 'x-api-key': 'nope' }, 401, 'Invalid API key'],
      [{ ...ADMIN, cookie: 'immich_access_token=stale' }, 401, 'Invalid user token'],
      [{ ...ADMIN, 'x-immich-share-key': 'nope' }, 401, 'Invalid share key'],
      [{ 'x-immich-share-key': 'fake-share-key' }, 403, 'Forbidden'], // not a shared-link route
    ]
    for (const [headers, status, message] of cases) {
      const res = await request(`${fake.url}/api/users/me`, { headers })
      expect(res.statusCode).toBe(status)
      expect(await res.body.json()).toEqual({ message })
    }
    const bearer = await request(`${fake.url}/api/users/me`, {
      headers: { authorization: 'Bearer fake-session-token' },
    })
    expect(await bearer.body.json()).toMatchObject({
      id: 'u-admin',
      isAdmin: true,
      email: 'admin@example.com',
    })
    const query = await request(`${fake.url}/api/users/me?apiKey=fake-user-key`)
    expect(query.statusCode).toBe(200)
    await query.body.dump()

    const missing = await request(`${fake.url}/api/asset/upload`, { headers: ADMIN })
    expect(missing.statusCode).toBe(404)
    expect(await missing.body.json()).toEqual({ message: 'Cannot GET /api/asset/upload' })
  })

  it('logs in with three separate Set-Cookie headers and counts attempts', async () => {
    const res = await request(`${fake.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'admin@example.com', password: 'password' }),
    })
    expect(res.statusCode).toBe(201)
    const cookies = res.headers['set-cookie'] as string[]
    expect(cookies).toHaveLength(3)
    expect(cookies.map((c) => c.split('=')[0])).toEqual([
      'immich_access_token',
      'immich_auth_type',
      'immich_is_authenticated',
    ])
    expect(cookies[0]).toMatch(
      /^immich_access_token=fake-session-token; Max-Age=34560000; Path=\/; Expires=.*; HttpOnly; SameSite=Lax$/
    )
    expect(await res.body.json()).toMatchObject({
      accessToken: 'fake-session-token',
      userEmail: 'admin@example.com',
      isAdmin: true,
    })
    expect(fake.lastRequest().json).toEqual({ email: 'admin@example.com', password: 'password' })

    const bad = await request(`${fake.url}/api/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'admin@example.com', password: 'wrong' }),
    })
    expect(bad.statusCode).toBe(401)
    expect(await bad.body.json()).toEqual({ message: 'Incorrect email or password' })
    expect(fake.loginAttempts()).toBe(2)

    const share = await request(`${fake.url}/api/shared-links/login?key=fake-share-key-protected`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ password: 'secret' }),
    })
    expect(share.statusCode).toBe(201)
    expect(share.headers['set-cookie']).toMatch(/^immich_shared_link_token=/)
    await share.body.dump()
  })

  it('serves exact byte ranges, suffix ranges, 416, If-Range and HEAD', async () => {
    const size = 1024 * 1024
    const full = expectedBytes('a-1', size)
    const whole = await request(`${fake.url}/api/assets/a-1/original`, { headers: ADMIN })
    expect(whole.statusCode).toBe(200)
    expect(whole.headers['accept-ranges']).toBe('bytes')
    expect(whole.headers['cache-control']).toBe(MEDIA_CACHE_CONTROL)
    expect(Buffer.from(await whole.body.arrayBuffer()).equals(full)).toBe(true)
    const etag = whole.headers.etag as string

    const r = await request(`${fake.url}/api/assets/a-1/video/playback`, {
      headers: { ...ADMIN, range: 'bytes=1000-1999' },
    })
    expect(r.statusCode).toBe(206)
    expect(r.headers['content-type']).toBe('video/mp4')
    expect(r.headers['content-range']).toBe(`bytes 1000-1999/${size}`)
    expect(Buffer.from(await r.body.arrayBuffer()).equals(full.subarray(1000, 2000))).toBe(true)
    expect(expectedRange('a-1', 1000, 1999).equals(full.subarray(1000, 2000))).toBe(true)

    const open = await request(`${fake.url}/api/assets/a-1/original`, {
      headers: { ...ADMIN, range: `bytes=${size - 10}-` },
    })
    expect(open.statusCode).toBe(206)
    expect(Buffer.from(await open.body.arrayBuffer()).equals(full.subarray(size - 10))).toBe(true)

    const suffix = await request(`${fake.url}/api/assets/a-1/original`, {
      headers: { ...ADMIN, range: 'bytes=-500' },
    })
    expect(suffix.headers['content-range']).toBe(`bytes ${size - 500}-${size - 1}/${size}`)
    expect(Buffer.from(await suffix.body.arrayBuffer()).equals(full.subarray(size - 500))).toBe(
      true
    )

    const bad = await request(`${fake.url}/api/assets/a-1/original`, {
      headers: { ...ADMIN, range: `bytes=${size}-` },
    })
    expect(bad.statusCode).toBe(416)
    expect(bad.headers['content-range']).toBe(`bytes */${size}`)
    await bad.body.dump()

    const ifRange = await request(`${fake.url}/api/assets/a-1/original`, {
      headers: { ...ADMIN, range: 'bytes=0-9', 'if-range': etag },
    })
    expect(ifRange.statusCode).toBe(206)
    await ifRange.body.dump()
    const stale = await request(`${fake.url}/api/assets/a-1/original`, {
      headers: { ...ADMIN, range: 'bytes=0-9', 'if-range': '"stale"' },
    })
    expect(stale.statusCode).toBe(200)
    expect((await stale.body.arrayBuffer()).byteLength).toBe(size)

    const head = await request(`${fake.url}/api/assets/a-1/original`, {
      method: 'HEAD',
      headers: ADMIN,
    })
    expect(head.statusCode).toBe(200)
    expect(head.headers['content-length']).toBe(String(size))
    expect((await head.body.arrayBuffer()).byteLength).toBe(0)
  })

  it('streams large originals from a configurable size without caching them', async () => {
    const size = 9 * 1024 * 1024 + 7
    fake.setAssetSize('big', size)
    const res = await request(`${fake.url}/api/assets/big/original`, {
      headers: { ...ADMIN, range: 'bytes=5000000-5000099' },
    })
    expect(res.statusCode).toBe(206)
    expect(
      Buffer.from(await res.body.arrayBuffer()).equals(expectedRange('big', 5000000, 5000099))
    ).toBe(true)
    const all = await request(`${fake.url}/api/assets/big/original`, { headers: ADMIN })
    expect(sha1(Buffer.from(await all.body.arrayBuffer()))).toBe(sha1(expectedBytes('big', size)))
  })

  it('gives different thumbnail bytes per user, honours If-None-Match and counts hits', async () => {
    const a = await request(`${fake.url}/api/assets/t-1/thumbnail?size=thumbnail`, {
      headers: ADMIN,
    })
    const aBytes = Buffer.from(await a.body.arrayBuffer())
    expect(a.statusCode).toBe(200)
    expect(a.headers['content-type']).toBe('image/webp')
    expect(a.headers['cache-control']).toBe(MEDIA_CACHE_CONTROL)
    expect(a.headers['content-disposition']).toBe("inline; filename*=UTF-8''t-1_thumbnail.webp")
    expect(a.headers.etag).toMatch(/^W\/"a000-[0-9a-f]+"$/)
    expect(a.headers['last-modified']).toBeTruthy()
    expect(aBytes.length).toBe(40960)
    expect(aBytes.equals(expectedThumbnail('t-1', 'thumbnail', 'u-admin'))).toBe(true)

    const u = await request(`${fake.url}/api/assets/t-1/thumbnail?size=thumbnail`, {
      headers: USER,
    })
    const uBytes = Buffer.from(await u.body.arrayBuffer())
    expect(uBytes.length).toBe(40960)
    expect(uBytes.equals(aBytes)).toBe(false)
    expect(u.headers.etag).not.toBe(a.headers.etag)

    const again = await request(`${fake.url}/api/assets/t-1/thumbnail`, { headers: ADMIN })
    expect(Buffer.from(await again.body.arrayBuffer()).equals(aBytes)).toBe(true)

    const notModified = await request(`${fake.url}/api/assets/t-1/thumbnail`, {
      headers: { ...ADMIN, 'if-none-match': a.headers.etag as string },
    })
    expect(notModified.statusCode).toBe(304)
    expect(notModified.headers['content-type']).toBeUndefined()
    expect((await notModified.body.arrayBuffer()).byteLength).toBe(0)

    const ranged = await request(`${fake.url}/api/assets/t-1/thumbnail`, {
      headers: { ...ADMIN, range: 'bytes=0-99' },
    })
    expect(ranged.statusCode).toBe(206)
    expect(ranged.headers['content-range']).toBe('bytes 0-99/40960')
    expect(Buffer.from(await ranged.body.arrayBuffer()).equals(aBytes.subarray(0, 100))).toBe(true)

    const full = await request(`${fake.url}/api/assets/t-1/thumbnail?size=fullsize&key=k`, {
      headers: ADMIN,
    })
    expect(full.statusCode).toBe(401) // the share key is checked first, and `k` is not one
    await full.body.dump()
    const redirect = await request(
      `${fake.url}/api/assets/t-1/thumbnail?size=fullsize&edited=true`,
      { headers: ADMIN }
    )
    expect(redirect.statusCode).toBe(302)
    expect(redirect.headers.location).toBe('original?edited=true')
    await redirect.body.dump()

    expect(fake.thumbnailHits('t-1')).toBe(7)
    expect(fake.thumbnailHits('other')).toBe(0)
  })

  it('hashes a streamed multipart upload exactly (body and assetData part)', async () => {
    const file = randomBytes(3 * 1024 * 1024 + 17)
    const mp = uploadForm(file, undefined, { filename: 'photo.jpg' })
    // Odd chunk sizes so the boundary is split across chunks.
    const chunks = function* () {
      for (let i = 0; i < mp.body.length; i += 7777) yield mp.body.subarray(i, i + 7777)
    }
    const res = await request(`${fake.url}/api/assets`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': mp.contentType },
      body: Readable.from(chunks()),
    })
    expect(res.statusCode).toBe(201)
    const created = (await res.body.json()) as { id: string; status: string }
    expect(created.status).toBe('created')
    const rec = fake.lastRequest()
    expect(rec.headers['transfer-encoding']).toBe('chunked')
    expect(rec.bodyBytes).toBe(mp.body.length)
    expect(rec.bodySha1).toBe(mp.bodySha1)
    expect(rec.upload).toMatchObject({
      status: 'created',
      bytes: mp.body.length,
      sha1: mp.bodySha1,
      fileBytes: file.length,
      fileSha1: mp.fileSha1,
      fields: {
        fileCreatedAt: '2024-01-01T00:00:00.000Z',
        fileModifiedAt: '2024-01-02T00:00:00.000Z',
        filename: 'photo.jpg',
      },
    })
    expect(rec.upload!.files.assetData).toMatchObject({
      filename: 'photo.jpg',
      contentType: 'image/jpeg',
    })

    // The same checksum again is a duplicate, answered without reading the body.
    const dup = await request(`${fake.url}/api/assets`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': mp.contentType, 'x-immich-checksum': mp.fileSha1 },
      body: mp.body,
    })
    expect(dup.statusCode).toBe(200)
    expect(await dup.body.json()).toEqual({ id: created.id, status: 'duplicate' })
  })

  it('honours Expect: 100-continue (and skips it for a known checksum)', async () => {
    const mp = uploadForm(randomBytes(100 * 1024))
    const known = createHash('sha1').update('known').digest('base64')
    fake.addKnownChecksum(known, 'dup-id')
    const send = (extra: Record<string, string>) =>
      new Promise<{ status: number; sawContinue: boolean; body: string }>((resolve, reject) => {
        let sawContinue = false
        const req = httpRequest(`${fake.url}/api/assets`, {
          method: 'POST',
          agent: false,
          headers: {
            ...ADMIN,
            ...extra,
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
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (body += c))
          res.on('end', () => resolve({ status: res.statusCode!, sawContinue, body }))
        })
        req.on('error', reject)
        req.flushHeaders()
      })
    const created = await send({})
    expect(created).toMatchObject({ status: 201, sawContinue: true })
    const rec = fake.lastRequest()
    expect(rec.continueSent).toBe(true)
    expect(rec.upload!.sha1).toBe(mp.bodySha1)

    const dup = await send({ 'x-immich-checksum': known })
    expect(dup).toMatchObject({ status: 200, sawContinue: false })
    expect(JSON.parse(dup.body)).toEqual({ id: 'dup-id', status: 'duplicate' })
    expect(fake.lastRequest().aborted).toBe(false)
    expect(fake.lastRequest().bodyBytes).toBe(0)
  })

  it('records an aborted slow download and frees the socket', async () => {
    const client = new Client(fake.url)
    const before = fake.openSockets()
    const res = await client.request({
      path: '/api/assets/slow-1/video/playback?slow=1',
      method: 'GET',
      headers: ADMIN,
    })
    expect(fake.openSockets()).toBe(before + 1)
    expect(res.statusCode).toBe(200)
    const it = res.body[Symbol.asyncIterator]()
    await it.next()
    res.body.destroy()
    const rec = fake.requests.find((r) => r.url.includes('slow-1'))!
    await rec.finished
    expect(rec.aborted).toBe(true)
    expect(rec.responseBytes).toBeLessThan(1024 * 1024)
    await expect.poll(() => rec.socket.destroyed, { timeout: 1000 }).toBe(true) // that upstream connection is gone
    await client.close()
    await fake.waitForOpenSockets(before, 1000)
  })

  it('echoes what it received and lets tests override routes', async () => {
    const res = await request(`${fake.url}/api/echo/x?q=1`, {
      method: 'PATCH',
      headers: { 'x-thing': 'a', 'content-type': 'text/plain' },
      body: 'hello',
    })
    const echo = (await res.body.json()) as {
      method: string
      url: string
      headers: Record<string, string>
      body: string
      bodySha1: string
    }
    expect(echo).toMatchObject({ method: 'PATCH', url: '/api/echo/x?q=1', body: 'hello' })
    expect(echo.headers['x-thing']).toBe('a')
    expect(echo.bodySha1).toBe(sha1(Buffer.from('hello')))

    const remove = fake.setHandler('GET', /^\/api\/users\/me$/, (_req, res) => {
      res.writeHead(418, { 'content-type': 'text/plain' })
      res.end('teapot')
    })
    const over = await request(`${fake.url}/api/users/me`)
    expect(over.statusCode).toBe(418)
    expect(await over.body.text()).toBe('teapot')
    remove()
    const back = await request(`${fake.url}/api/users/me`)
    expect(back.statusCode).toBe(401)
    await back.body.dump()

    const web = await request(`${fake.url}/photos/abc`)
    expect(web.headers['content-type']).toMatch(/text\/html/)
    expect(await web.body.text()).toMatch(/<html/)
    const js = await request(`${fake.url}/_app/immutable/x.js`)
    expect(js.headers['content-type']).toMatch(/javascript/)
    await js.body.dump()
  })

  it('answers the JSON routes with Immich 3 shapes', async () => {
    const search = await request(`${fake.url}/api/search/metadata`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': 'application/json' },
      body: JSON.stringify({ size: 2 }),
    })
    const s = (await search.body.json()) as {
      assets: { items: unknown[]; nextPage: string | null }
    }
    expect(search.statusCode).toBe(200)
    expect(s.assets.items).toHaveLength(2)
    expect(s.assets.nextPage).toBe('2')
    expect(fake.lastRequest().json).toEqual({ size: 2 })

    const people = await request(`${fake.url}/api/people`, { headers: ADMIN })
    expect(await people.body.json()).toMatchObject({ total: 1, hidden: 0, hasNextPage: false })
    const faces = await request(`${fake.url}/api/faces?id=not-a-uuid`, { headers: ADMIN })
    expect(faces.statusCode).toBe(400)
    expect(await faces.body.json()).toMatchObject({ message: 'Validation failed' })
    const albums = await request(`${fake.url}/api/albums`, { headers: ADMIN })
    expect(Array.isArray(await albums.body.json())).toBe(true)
    const del = await request(`${fake.url}/api/assets`, {
      method: 'DELETE',
      headers: { ...ADMIN, 'content-type': 'application/json' },
      body: '{"ids":["a"]}',
    })
    expect(del.statusCode).toBe(204)
    await del.body.dump()
    expect(fake.lastRequest().json).toEqual({ ids: ['a'] })
  })

  it('accepts a socket.io client with x-api-key, rejects one without, and relays emitted events', async () => {
    const socket = connect(fake, ADMIN)
    try {
      const version = new Promise<unknown>((resolve) => socket.on('on_server_version', resolve))
      await new Promise<void>((resolve, reject) => {
        socket.on('connect', () => resolve())
        socket.on('connect_error', reject)
      })
      expect(await version).toEqual({ major: 3, minor: 1, patch: 0 })
      const received = new Promise<unknown>((resolve) => socket.on('on_upload_success', resolve))
      fake.emit('on_upload_success', { id: 'asset-42' })
      expect(await received).toEqual({ id: 'asset-42' })
      const mine = new Promise<unknown>((resolve) => socket.on('on_asset_update', resolve))
      fake.emitToUser('u-admin', 'on_asset_update', { id: 'asset-43' })
      expect(await mine).toEqual({ id: 'asset-43' })
      expect(
        fake.requests.some((r) => r.upgrade && r.headers['x-api-key'] === 'fake-admin-key')
      ).toBe(true)
    } finally {
      socket.close()
    }

    const anon = connect(fake, {})
    try {
      const err = await new Promise<Error>((resolve) => anon.on('connect_error', resolve))
      expect(err.message).toBe('Authentication required')
    } finally {
      anon.close()
    }
  })
})

describe('multipart parser', () => {
  it('parses parts split at every possible position', () => {
    const file = randomBytes(300)
    const mp = uploadForm(file, 'b', { filename: 'photo.jpg' })
    for (let split = 1; split < mp.body.length; split += 3) {
      const parts: { name: string; data: Buffer[] }[] = []
      const parser = new MultipartParser('b', {
        onPartStart: (p) => parts.push({ name: p.name, data: [] }),
        onPartData: (d) => parts[parts.length - 1]!.data.push(Buffer.from(d)),
        onPartEnd: () => {},
      })
      parser.write(mp.body.subarray(0, split))
      parser.write(mp.body.subarray(split))
      parser.end()
      expect(parts.map((p) => p.name)).toEqual([
        'fileCreatedAt',
        'fileModifiedAt',
        'filename',
        'assetData',
      ])
      expect(Buffer.concat(parts[3]!.data).equals(file)).toBe(true)
    }
  })
})
