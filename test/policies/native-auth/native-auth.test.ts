import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FAKE_SESSION_TOKEN } from '../../fake-immich/server.js'
import { startStack, type Stack } from '../../support/stack.js'
import { leakedSecrets, rawGet, rawRequest, remember } from '../api-key-auth/support.js'

const ASSET = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
const thumbnail = `/api/assets/${ASSET}/thumbnail`
remember(FAKE_SESSION_TOKEN)
remember('fake-share-key')

async function get(stack: Stack, path: string, headers: Record<string, string> = {}) {
  const before = stack.immich.requests.length
  const res = await request(`${stack.url}${path}`, { headers })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    message: text.startsWith('{') ? (JSON.parse(text) as { message: string }).message : text,
    upstream: stack.immich.requests.slice(before),
  }
}

describe('native-auth, default: every native Immich credential passes through untouched', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(() => stack?.close())

  const forms: [string, string, Record<string, string>, string][] = [
    [
      'session cookie',
      thumbnail,
      { cookie: `immich_auth_type=password; immich_access_token=${FAKE_SESSION_TOKEN}` },
      'session',
    ],
    ['x-immich-user-token', thumbnail, { 'x-immich-user-token': FAKE_SESSION_TOKEN }, 'session'],
    [
      'x-immich-session-token',
      thumbnail,
      { 'x-immich-session-token': FAKE_SESSION_TOKEN },
      'session',
    ],
    ['opaque bearer', thumbnail, { authorization: `Bearer ${FAKE_SESSION_TOKEN}` }, 'session'],
    ['sessionKey query', `${thumbnail}?sessionKey=${FAKE_SESSION_TOKEN}`, {}, 'session'],
    ['native API key header', thumbnail, { 'x-api-key': 'fake-user-key' }, 'api-key'],
    ['native API key query', `${thumbnail}?apiKey=fake-user-key&size=preview`, {}, 'api-key'],
    ['share key header', thumbnail, { 'x-immich-share-key': 'fake-share-key' }, 'shared-link-key'],
    ['share key query', `${thumbnail}?key=fake-share-key`, {}, 'shared-link-key'],
    ['share slug query', `${thumbnail}?slug=fake-share-slug`, {}, 'shared-link-slug'],
  ]

  it.each(forms)('%s', async (label, path, headers, via) => {
    // A distinct asset per form: the thumbnail cache would (rightly) answer a repeat of one credential.
    path = path.replace(
      ASSET,
      `${ASSET.slice(0, -2)}${String(forms.findIndex((f) => f[0] === label)).padStart(2, '0')}`
    )
    const res = await get(stack, path, headers)
    expect(res.status).toBe(200)
    const up = res.upstream[0]!
    expect(up.url).toBe(path)
    for (const [name, value] of Object.entries(headers)) expect(up.headers[name]).toBe(value)
    expect(up.user?.via).toBe(via)
  })

  it('labels logs native or shared-link, never with the credential', async () => {
    await get(stack, `${thumbnail}?key=fake-share-key`)
    await get(stack, thumbnail, { cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` })
    const lines = stack.logs.filter((l) => l.includes('"msg":"request"'))
    expect(lines.some((l) => l.includes('"client":"shared-link"'))).toBe(true)
    expect(
      lines.some((l) => l.includes('"client":"native"') && l.includes('"credential":"cookie"'))
    ).toBe(true)
  })

  it('?x-api-key= (old embed URLs; Immich never read it) is moved into the header, other params kept', async () => {
    const path = `/api/assets/${ASSET.slice(0, -2)}99/thumbnail`
    const res = await get(stack, `${path}?size=preview&x-api-key=fake-user-key&c=abc`)
    expect(res.status).toBe(200)
    const up = res.upstream[0]!
    expect(up.url).toBe(`${path}?size=preview&c=abc`)
    expect(up.headers['x-api-key']).toBe('fake-user-key')
    expect(up.user?.via).toBe('api-key')
  })

  it('?x-api-key= is left alone when Immich reads another credential first', async () => {
    const path = `/api/assets/${ASSET.slice(0, -2)}98/thumbnail?x-api-key=fake-admin-key`
    const res = await get(stack, path, { cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` })
    expect(res.status).toBe(200)
    expect(res.upstream[0]!.url).toBe(path)
    expect(res.upstream[0]!.headers['x-api-key']).toBeUndefined()
    expect(res.upstream[0]!.user?.via).toBe('session')
  })

  it("a wrong native credential is Immich's to refuse", async () => {
    const res = await get(stack, thumbnail, { 'x-api-key': 'not-a-real-key' })
    expect(res.status).toBe(401)
    expect(res.message).toBe('Invalid API key')
    expect(res.upstream).toHaveLength(1)
  })

  it('no credential on a known route that is not public: 401 at the edge, with WWW-Authenticate', async () => {
    const res = await get(stack, '/api/users/me')
    expect(res.status).toBe(401)
    expect(res.message).toBe('Authentication required')
    expect(res.headers['www-authenticate']).toBe('Bearer realm="immich-gateway"')
    expect(res.upstream).toHaveLength(0)
  })

  it('no credential: public routes, the web UI and unknown /api routes pass (Immich judges)', async () => {
    expect((await get(stack, '/api/server/ping')).status).toBe(200)
    expect((await get(stack, '/photos/abc')).status).toBe(200)
    const unknown = await get(stack, '/api/not-a-route')
    expect(unknown.status).toBe(404)
    expect(unknown.upstream).toHaveLength(1)
  })

  it('an igw_ key that no gateway policy claimed never reaches Immich', async () => {
    const s = await startStack({ policies: { 'api-key-auth': false } })
    try {
      const key = remember(`igw_${'A'.repeat(43)}`)
      const res = await get(s, thumbnail, { 'x-api-key': key })
      expect(res.status).toBe(401)
      expect(res.upstream).toHaveLength(0)
    } finally {
      await s.close()
    }
  })

  it('a huge credential is 401 without reaching Immich; a bad header byte is 400/401, never a crash', async () => {
    const huge = await get(stack, thumbnail, { 'x-immich-user-token': 'x'.repeat(9000) })
    expect(huge.status).toBe(401)
    expect(huge.upstream).toHaveLength(0)
    const latin1 = await rawRequest(
      stack.url,
      Buffer.concat([
        Buffer.from(`GET ${thumbnail} HTTP/1.1\r\nHost: g\r\nx-immich-user-token: caf`),
        Buffer.from([0xe9, 0xff]),
        Buffer.from('\r\nConnection: close\r\n\r\n'),
      ])
    )
    expect(latin1.status).toBe(401)
    const control = await rawRequest(
      stack.url,
      Buffer.concat([
        Buffer.from(`GET ${thumbnail} HTTP/1.1\r\nHost: g\r\nx-api-key: a`),
        Buffer.from([0x01]),
        Buffer.from('b\r\nConnection: close\r\n\r\n'),
      ])
    )
    expect([400, 401]).toContain(control.status)
    const spaces = await rawGet(stack.url, 'GET', thumbnail, { cookie: 'immich_access_token=a b' })
    expect(spaces.status).toBe(401)
    expect((await get(stack, '/api/server/ping')).status).toBe(200)
  })
})

describe('native-auth with allow switched off', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack({
      policies: { 'native-auth': { allow: { session: false, apiKey: false, sharedLink: false } } },
    })
  })
  afterAll(() => stack?.close())

  const refused: [string, string, Record<string, string>, string][] = [
    [
      'session cookie',
      thumbnail,
      { cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` },
      'Immich sessions are not accepted by this gateway',
    ],
    [
      'bearer',
      '/api/users/me',
      { authorization: `Bearer ${FAKE_SESSION_TOKEN}` },
      'Immich sessions are not accepted by this gateway',
    ],
    [
      'native API key',
      '/api/albums',
      { 'x-api-key': 'fake-user-key' },
      'Immich API keys are not accepted by this gateway',
    ],
    [
      'share key query',
      `${thumbnail}?key=fake-share-key`,
      {},
      'Shared links are not accepted by this gateway',
    ],
    [
      'share slug header',
      thumbnail,
      { 'x-immich-share-slug': 'fake-share-slug' },
      'Shared links are not accepted by this gateway',
    ],
    [
      'unknown /api route',
      '/api/not-a-route',
      { 'x-api-key': 'fake-user-key' },
      'Immich API keys are not accepted by this gateway',
    ],
  ]

  it.each(refused)('%s → 401', async (_label, path, headers, message) => {
    const res = await get(stack, path, headers)
    expect(res.status).toBe(401)
    expect(res.message).toBe(message)
    expect(res.headers['www-authenticate']).toBe('Bearer realm="immich-gateway"')
    expect(res.upstream).toHaveLength(0)
  })

  it('the credential Immich would use decides: a share key wins over a session', async () => {
    const s = await startStack({ policies: { 'native-auth': { allow: { sharedLink: false } } } })
    try {
      const res = await get(s, `${thumbnail}?key=fake-share-key`, {
        cookie: `immich_access_token=${FAKE_SESSION_TOKEN}`,
      })
      expect(res.status).toBe(401)
      expect(
        (await get(s, thumbnail, { cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` })).status
      ).toBe(200)
    } finally {
      await s.close()
    }
  })

  it('a stale cookie does not break public routes or the web UI (Immich ignores credentials there)', async () => {
    const cookie = { cookie: `immich_access_token=${FAKE_SESSION_TOKEN}` }
    expect((await get(stack, '/api/server/ping', cookie)).status).toBe(200)
    expect((await get(stack, '/', cookie)).status).toBe(200)
  })

  it('counts native_not_allowed', async () => {
    expect(await stack.gateway.deps.metrics.registry.metrics()).toMatch(
      /immich_gateway_auth_failures_total\{reason="native_not_allowed"\} [1-9]/
    )
  })

  it('a bad option stops the boot naming the field', async () => {
    await expect(
      startStack({ policies: { 'native-auth': { allow: { cookies: false } } } })
    ).rejects.toThrow(/policies\.native-auth\.allow/)
  })
})

describe('secrets', () => {
  it('no credential used in this file appears in any captured log line', () => {
    expect(leakedSecrets()).toEqual([])
  })
})
