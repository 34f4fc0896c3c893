import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { io as ioClient } from 'socket.io-client'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAKE_SESSION_TOKEN } from '../fake-immich/server.js'
import { uploadForm } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import {
  ADMIN_KEY_ENV,
  client,
  leakedSecrets,
  rawGet,
  remember,
  tempDir,
  writeKeys,
} from '../policies/api-key-auth/support.js'

const ASSET = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
const ALBUM = '7a0c9f1e-3d2b-4c5a-8e6f-0123456789ab'

const dir = tempDir()
const keysFile = join(dir, 'keys.yaml')
const viewer = client({ name: 'viewer', scopes: ['asset.view', 'album.read'] })
const uploader = client({ name: 'uploader', scopes: ['asset.*'] })
const admin = client({ name: 'admin', scopes: ['all'], upstreamKeyEnv: ADMIN_KEY_ENV })
const expired = client({ name: 'expired', scopes: ['all'], expiresAt: '2020-01-01T00:00:00Z' })
const doomed = client({ name: 'doomed', scopes: ['all'] })
const frame = client({ name: 'frame', scopes: ['photo-frame'] })
const lan = client({
  name: 'lan-only',
  scopes: ['all'],
  allowFrom: ['10.0.0.0/8', '192.168.0.0/16'],
})
const local = client({ name: 'local-only', scopes: ['all'], allowFrom: ['127.0.0.1', '::1'] })

let stack: Stack

beforeAll(async () => {
  writeKeys(keysFile, [
    viewer.entry,
    uploader.entry,
    admin.entry,
    expired.entry,
    doomed.entry,
    frame.entry,
    lan.entry,
    local.entry,
  ])
  stack = await startStack({ policies: { 'api-key-auth': { keysFile } } })
})
afterAll(() => stack?.close())

async function call(
  method: string,
  path: string,
  key: string | undefined,
  init: { body?: Buffer; headers?: Record<string, string> } = {}
) {
  const res = await request(`${stack.url}${path}`, {
    method: method as 'GET',
    headers: { ...(key ? { 'x-api-key': key } : {}), ...init.headers },
    body: init.body,
  })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    json: () => JSON.parse(text) as { message: string; statusCode: number },
  }
}

/** Requests the fake Immich received during `fn`. */
async function upstreamDuring<T>(
  fn: () => Promise<T>
): Promise<{ result: T; seen: Stack['immich']['requests'] }> {
  const before = stack.immich.requests.length
  const result = await fn()
  return { result, seen: stack.immich.requests.slice(before) }
}

describe('scoped gateway keys (real sockets, fake Immich upstream)', () => {
  it('a key scoped asset.view,album.read reads thumbnails and albums, with the injected Immich key', async () => {
    const { result, seen } = await upstreamDuring(async () => [
      await call('GET', `/api/assets/${randomUUID()}/thumbnail?size=preview`, viewer.key),
      await call('GET', '/api/albums', viewer.key),
      await call('GET', `/api/albums/${ALBUM}`, viewer.key),
    ])
    expect(result.map((r) => r.status)).toEqual([200, 200, 200])
    expect(seen).toHaveLength(3)
    for (const r of seen) {
      expect(r.headers['x-api-key']).toBe('fake-user-key')
      expect(r.user?.id).toBe('u-user')
    }
  })

  it('the same key gets 403 naming the permission on upload and delete, and Immich never sees them', async () => {
    const upload = uploadForm(randomBytes(2048))
    const { result, seen } = await upstreamDuring(async () => [
      await call('POST', '/api/assets', viewer.key, {
        body: upload.body,
        headers: { 'content-type': upload.contentType },
      }),
      await call('DELETE', '/api/assets', viewer.key, {
        body: Buffer.from(JSON.stringify({ ids: [ASSET] })),
        headers: { 'content-type': 'application/json' },
      }),
      await call('GET', `/api/assets/${ASSET}/original`, viewer.key),
    ])
    expect(result.map((r) => r.status)).toEqual([403, 403, 403])
    expect(result.map((r) => r.json().message)).toEqual([
      'Missing required permission: asset.upload',
      'Missing required permission: asset.delete',
      'Missing required permission: asset.download',
    ])
    expect(result[0]!.json()).toMatchObject({ error: 'Forbidden', statusCode: 403 })
    expect(seen).toHaveLength(0)
  })

  it('a key scoped asset.* uploads and deletes, but reads no albums', async () => {
    const upload = uploadForm(randomBytes(4096))
    const up = await call('POST', '/api/assets', uploader.key, {
      body: upload.body,
      headers: { 'content-type': upload.contentType },
    })
    expect(up.status).toBe(201)
    expect(up.json()).toMatchObject({ status: 'created' })
    expect(stack.immich.lastRequest().upload?.fileBytes).toBe(4096)
    const del = await call('DELETE', '/api/assets', uploader.key, {
      body: Buffer.from(JSON.stringify({ ids: [ASSET] })),
      headers: { 'content-type': 'application/json' },
    })
    expect(del.status).toBeLessThan(300)
    expect((await call('GET', '/api/albums', uploader.key)).status).toBe(403)
  })

  it('a key scoped all does everything, admin routes included', async () => {
    const upload = uploadForm(randomBytes(1024))
    const { result, seen } = await upstreamDuring(async () => [
      await call('GET', `/api/assets/${randomUUID()}/thumbnail`, admin.key),
      await call('GET', '/api/albums', admin.key),
      await call('POST', '/api/assets', admin.key, {
        body: upload.body,
        headers: { 'content-type': upload.contentType },
      }),
      await call('GET', '/api/users/me', admin.key),
      await call('GET', '/api/admin/users', admin.key),
    ])
    // /api/admin/users is not implemented by the fake (404 from it): what matters is that it got there.
    expect(result.map((r) => r.status)).toEqual([200, 200, 201, 200, 404])
    expect(seen.map((r) => r.headers['x-api-key'])).toEqual(Array(5).fill('fake-admin-key'))
  })

  it('a preset expands to its permissions (photo-frame reads, cannot upload)', async () => {
    expect((await call('GET', `/api/assets/${ASSET}/thumbnail`, frame.key)).status).toBe(200)
    expect((await call('GET', `/api/assets/${ASSET}/original`, frame.key)).status).toBe(200)
    expect(
      (
        await call('POST', '/api/assets', frame.key, {
          body: Buffer.from('x'),
          headers: { 'content-type': 'text/plain' },
        })
      ).status
    ).toBe(403)
  })

  it('an expired key, an unknown key and a malformed igw_ key get 401 with WWW-Authenticate', async () => {
    const { result, seen } = await upstreamDuring(async () => [
      await call('GET', '/api/albums', expired.key),
      await call('GET', '/api/albums', remember(`igw_${randomBytes(32).toString('base64url')}`)),
      await call('GET', '/api/albums', 'igw_short'),
    ])
    expect(result.map((r) => r.status)).toEqual([401, 401, 401])
    expect(result.map((r) => r.json().message)).toEqual([
      'API key expired',
      'Invalid API key',
      'Invalid API key',
    ])
    for (const r of result)
      expect(r.headers['www-authenticate']).toBe('Bearer realm="immich-gateway"')
    expect(seen).toHaveLength(0)
  })

  it('allowFrom: a key used from outside its ranges gets 403 before Immich', async () => {
    const { result, seen } = await upstreamDuring(() => call('GET', '/api/albums', lan.key))
    expect(result.status).toBe(403)
    expect(result.json().message).toBe('API key not allowed from this address')
    expect(seen).toHaveLength(0)
    expect((await call('GET', '/api/albums', local.key)).status).toBe(200)
  })

  it('a route not in the table gets 403 for a gateway key, even with all', async () => {
    const { result, seen } = await upstreamDuring(() =>
      call('GET', '/api/echo/anything', admin.key)
    )
    expect(result.status).toBe(403)
    expect(result.json().message).toBe('Route not allowed for this key')
    expect(seen).toHaveLength(0)
  })

  it('a gateway key may load the web UI (static pages, not /api)', async () => {
    expect((await call('GET', '/', viewer.key)).status).toBe(200)
  })

  it('revocation takes effect within 2 s, without a restart', async () => {
    expect((await call('GET', '/api/albums', doomed.key)).status).toBe(200)
    writeKeys(keysFile, [
      viewer.entry,
      uploader.entry,
      admin.entry,
      expired.entry,
      frame.entry,
      lan.entry,
      local.entry,
    ])
    const started = Date.now()
    let status = 200
    while (status !== 401 && Date.now() - started < 3000) {
      status = (await call('GET', '/api/albums', doomed.key)).status
      if (status !== 401) await new Promise((r) => setTimeout(r, 50))
    }
    const elapsed = Date.now() - started
    expect(status).toBe(401)
    expect(elapsed).toBeLessThan(2000)
    // Everyone else is untouched.
    expect((await call('GET', '/api/albums', viewer.key)).status).toBe(200)
  })
})

describe('the upstream sees the injected key and never the gateway key', () => {
  const forms: [string, (key: string) => { path: string; headers: Record<string, string> }][] = [
    [
      'x-api-key header',
      (key) => ({
        path: `/api/assets/${ASSET}/thumbnail?size=preview`,
        headers: { 'x-api-key': key },
      }),
    ],
    [
      'Authorization: Bearer',
      (key) => ({
        path: `/api/assets/${ASSET}/thumbnail?size=preview`,
        headers: { authorization: `Bearer ${key}` },
      }),
    ],
    [
      'apiKey query',
      (key) => ({ path: `/api/assets/${ASSET}/thumbnail?size=preview&apiKey=${key}`, headers: {} }),
    ],
    [
      'x-api-key query',
      (key) => ({
        path: `/api/assets/${ASSET}/thumbnail?x-api-key=${key}&size=preview`,
        headers: {},
      }),
    ],
  ]

  it.each(forms)('%s', async (_label, form) => {
    // A fresh asset each time: the thumbnail cache would rightly answer a repeat without Immich.
    const asset = randomUUID()
    const { path: template, headers } = form(viewer.key)
    const path = template.replace(ASSET, asset)
    const { result, seen } = await upstreamDuring(() => call('GET', path, undefined, { headers }))
    expect(result.status).toBe(200)
    expect(seen).toHaveLength(1)
    const up = seen[0]!
    expect(up.url).toBe(`/api/assets/${asset}/thumbnail?size=preview`)
    expect(up.headers['x-api-key']).toBe('fake-user-key')
    expect(up.headers.authorization).toBeUndefined()
    const everything = `${up.url}\n${up.rawHeaders.join('\n')}`
    expect(everything).not.toContain(viewer.key)
    expect(everything).not.toContain('igw_')
  })

  it('every other Immich credential is taken off (they would win over x-api-key), other cookies and params kept in order', async () => {
    const asset = randomUUID()
    const { result, seen } = await upstreamDuring(() =>
      call(
        'GET',
        `/api/assets/${asset}/thumbnail?a=1&key=fake-share-key&b=%20x&sessionKey=s&slug=fake-share-slug&c`,
        viewer.key,
        {
          headers: {
            cookie: `immich_auth_type=password; ${'immich_access_token'}=${FAKE_SESSION_TOKEN}; theme=dark`,
            'x-immich-user-token': FAKE_SESSION_TOKEN,
            'x-immich-session-token': FAKE_SESSION_TOKEN,
            'x-immich-share-key': 'fake-share-key',
            'x-immich-share-slug': 'fake-share-slug',
          },
        }
      )
    )
    expect(result.status).toBe(200)
    const up = seen[0]!
    expect(up.url).toBe(`/api/assets/${asset}/thumbnail?a=1&b=%20x&c`)
    expect(up.headers.cookie).toBe('immich_auth_type=password; theme=dark')
    for (const h of [
      'x-immich-user-token',
      'x-immich-session-token',
      'x-immich-share-key',
      'x-immich-share-slug',
      'authorization',
    ]) {
      expect(up.headers[h]).toBeUndefined()
    }
    expect(up.headers['x-api-key']).toBe('fake-user-key')
    expect(up.user).toMatchObject({ id: 'u-user', via: 'api-key' })
  })

  it('a legacy embed URL (/api/asset/{id}/thumbnail?x-api-key=igw_...) works and the key is stripped', async () => {
    const asset = randomUUID()
    const { result, seen } = await upstreamDuring(() =>
      call('GET', `/api/asset/${asset}/thumbnail?x-api-key=${viewer.key}`, undefined)
    )
    expect(result.status).toBe(200)
    expect(seen[0]!.url).toBe(`/api/assets/${asset}/thumbnail`)
    expect(seen[0]!.headers['x-api-key']).toBe('fake-user-key')
  })

  it('a percent-encoded or oversized gateway key never reaches Immich', async () => {
    const encoded = viewer.key.replace('igw_', 'igw%5F')
    const { result, seen } = await upstreamDuring(async () => [
      await call('GET', `/api/albums?apiKey=${encoded}`, undefined),
      await call('GET', `/api/albums?x-api-key=${encoded}`, undefined),
      await call('GET', '/api/albums', undefined, {
        headers: { authorization: `Bearer igw_${'A'.repeat(9000)}` },
      }),
    ])
    expect(result.map((r) => r.status)).toEqual([401, 401, 401])
    expect(seen).toHaveLength(0)
  })

  it('two different keys presented at once are refused', async () => {
    const res = await call('GET', '/api/albums', viewer.key, {
      headers: { authorization: `Bearer ${admin.key}` },
    })
    expect(res.status).toBe(401)
  })
})

describe('path tricks never reach a route without its permission', () => {
  // [method, raw request target, expected status]; the viewer key holds asset.view and album.read only.
  const tricks: [string, string, number][] = [
    ['GET', `/api/assets/${ASSET}/thumbnail/../../../admin/users`, 400],
    ['GET', '/api/albums/../admin/users', 400],
    ['GET', '/api/albums/./../admin/users', 400],
    ['GET', '//api/admin/users', 400],
    ['GET', '/api//admin/users', 400],
    ['GET', '/api/albums/%2e%2e/admin/users', 400],
    ['GET', '/api/albums/%2E%2E/admin/users', 400],
    ['GET', '/api/albums/.%2e/admin/users', 400],
    ['GET', '/api/albums%2f..%2fadmin/users', 400],
    ['GET', '/api/albums%2F..%2Fadmin%2Fusers', 400],
    ['GET', '/api/albums%5c..%5cadmin/users', 400],
    ['GET', '/api/albums\\..\\admin/users', 400],
    ['GET', '/api/admin/users;jsessionid=1', 400],
    ['GET', '/api/admin;x=1/users', 400],
    ['DELETE', '/api/assets;ids=1', 400],
    ['GET', '/API/ADMIN/USERS', 403],
    ['GET', '/Api/Admin/Users/', 403],
    ['GET', '/api/admin/users/', 403],
    ['GET', '/api/%61dmin/users', 403],
    ['HEAD', '/api/admin/users', 403],
    ['DELETE', '/api/assets/', 403],
    ['DELETE', '/API/ASSETS', 403],
    ['POST', '/api/Assets', 403],
    ['GET', `/api/assets/${ASSET}/ORIGINAL`, 403],
    ['GET', `/api/assets/${ASSET}/original/`, 403],
    // Legacy aliases: old paths meet the same rules as their modern twins (or are unknown: 403).
    ['DELETE', '/api/asset', 403],
    ['POST', '/api/asset/upload', 403],
    ['GET', `/api/asset/file/${ASSET}`, 403],
    ['GET', `/api/download/asset/${ASSET}`, 403],
  ]

  it.each(tricks)('%s %s → %i', async (method, target, expected) => {
    const before = stack.immich.requests.length
    const res = await rawGet(stack.url, method, target, {
      'x-api-key': viewer.key,
      'content-length': '0',
    })
    expect(res.status).toBe(expected)
    expect(stack.immich.requests.length).toBe(before)
  })

  it('the same tricks with an allowed permission still land on the right route', async () => {
    const res = await rawGet(stack.url, 'GET', `/API/Assets/${ASSET}/Thumbnail/`, {
      'x-api-key': viewer.key,
    })
    expect(res.status).toBe(200)
  })
})

describe('websocket upgrade is authenticated the same way', () => {
  function connect(
    headers: Record<string, string>,
    query?: Record<string, string>
  ): Promise<{ ok: boolean; message?: string }> {
    return new Promise((resolve) => {
      const socket = ioClient(stack.url, {
        path: '/api/socket.io',
        transports: ['websocket'],
        extraHeaders: headers,
        query,
        reconnection: false,
        timeout: 3000,
      })
      socket.on('connect', () => {
        socket.close()
        resolve({ ok: true })
      })
      socket.on('connect_error', (err) => {
        socket.close()
        resolve({ ok: false, message: err.message })
      })
    })
  }

  it('a key with all opens it; the upstream sees the injected key', async () => {
    const before = stack.immich.requests.length
    expect(await connect({ 'x-api-key': admin.key })).toEqual({ ok: true })
    const upgrade = stack.immich.requests.slice(before).find((r) => r.upgrade)
    expect(upgrade?.headers['x-api-key']).toBe('fake-admin-key')
    expect(upgrade?.user?.id).toBe('u-admin')
  })

  it('a key with all may use the query form (browsers cannot set websocket headers); it is stripped', async () => {
    const before = stack.immich.requests.length
    expect(await connect({}, { apiKey: admin.key })).toEqual({ ok: true })
    const upgrade = stack.immich.requests.slice(before).find((r) => r.upgrade)!
    expect(upgrade.url).not.toContain('igw_')
    expect(upgrade.url).not.toContain('apiKey')
  })

  it('a key without all is refused before Immich (403), as Immich refuses an API key without all', async () => {
    const before = stack.immich.requests.length
    const res = await rawGet(stack.url, 'GET', '/api/socket.io/?EIO=4&transport=websocket', {
      'x-api-key': viewer.key,
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': randomBytes(16).toString('base64'),
      'sec-websocket-version': '13',
    })
    expect(res.status).toBe(403)
    expect(JSON.parse(res.body).message).toBe('Missing required permission: all')
    expect(stack.immich.requests.slice(before).filter((r) => r.upgrade)).toHaveLength(0)
    expect((await connect({ 'x-api-key': viewer.key })).ok).toBe(false)
  })

  it('an invalid key is refused with 401; a native session passes through', async () => {
    const res = await rawGet(stack.url, 'GET', '/api/socket.io/?EIO=4&transport=websocket', {
      'x-api-key': expired.key,
      upgrade: 'websocket',
      connection: 'Upgrade',
      'sec-websocket-key': randomBytes(16).toString('base64'),
      'sec-websocket-version': '13',
    })
    expect(res.status).toBe(401)
    expect(await connect({ cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` })).toEqual({
      ok: true,
    })
  })
})

describe('metrics and logs', () => {
  it('refusals are counted by reason, and log lines name the client, never the key', async () => {
    const text = await stack.gateway.deps.metrics.registry.metrics()
    for (const reason of [
      'missing_permission',
      'expired_key',
      'invalid_key',
      'unknown_route',
      'ip_not_allowed',
    ]) {
      expect(text).toMatch(
        new RegExp(`immich_gateway_auth_failures_total\\{reason="${reason}"\\} [1-9]`)
      )
    }
    expect(text).not.toContain('igw_')
    expect(stack.logs.some((l) => l.includes('"client":"viewer"'))).toBe(true)
  })

  it('a refusal is recorded with the status the client got (access line and requests_total)', async () => {
    const series = async (method: string, status: number, client: string) => {
      const text = await stack.gateway.deps.metrics.registry.metrics()
      const m = new RegExp(
        `immich_gateway_requests_total\\{method="${method}",route="/api/albums",status="${status}",client="${client}"\\} (\\d+)`
      ).exec(text)
      return m ? Number(m[1]) : 0
    }
    const counts = async () => [
      await series('POST', 401, 'anonymous'),
      await series('POST', 403, 'viewer'),
      await series('GET', 200, 'viewer'),
    ]
    const before = await counts()
    const body = {
      body: Buffer.from(JSON.stringify({ albumName: 'x' })),
      headers: { 'content-type': 'application/json' },
    }
    const refusedKey = await call('POST', '/api/albums', 'igw_' + 'A'.repeat(43), body) // authentication refuses
    const refusedScope = await call('POST', '/api/albums', viewer.key, body) // authorization refuses
    const allowed = await call('GET', '/api/albums', viewer.key)
    expect([refusedKey.status, refusedScope.status, allowed.status]).toEqual([401, 403, 200])
    expect(await counts()).toEqual(before.map((n) => n + 1))
    for (const [res, status] of [
      [refusedKey, 401],
      [refusedScope, 403],
      [allowed, 200],
    ] as const) {
      const id = res.headers['x-request-id']
      const line = stack.logs
        .map((l) => JSON.parse(l) as { requestId?: string; status?: number; msg?: string })
        .find((l) => l.requestId === id && l.msg === 'request')
      expect(line?.status).toBe(status)
    }
  })

  it('no key or token made in this file appears in any captured log line', () => {
    expect(leakedSecrets()).toEqual([])
  })
})
