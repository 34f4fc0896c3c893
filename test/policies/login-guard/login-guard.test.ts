import { connect } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { ADMIN_EMAIL, ADMIN_PASSWORD, SHARED_LINK_PASSWORD } from '../../fake-immich/server.js'
import { startStack, type Stack } from '../../support/stack.js'
import { send, tally } from '../rate-limit/support.js'

let stack: Stack | undefined
afterEach(async () => {
  await stack?.close()
  stack = undefined
})

async function start(
  options: Record<string, unknown> = {},
  server: Record<string, unknown> = {}
): Promise<Stack> {
  stack = await startStack({ server, policies: { 'login-guard': options } })
  return stack
}

const JSON_HEADERS = { 'content-type': 'application/json' }

function login(s: Stack, email: string, password: string, headers: Record<string, string> = {}) {
  return send(`${s.url}/api/auth/login`, {
    method: 'POST',
    headers: { ...JSON_HEADERS, ...headers },
    body: JSON.stringify({ email, password }),
  })
}

function shareLogin(s: Stack, key: string, password: string) {
  return send(`${s.url}/api/shared-links/login?key=${encodeURIComponent(key)}`, {
    method: 'POST',
    headers: JSON_HEADERS,
    body: JSON.stringify({ password }),
  })
}

async function counter(s: Stack, name: 'loginFailures' | 'loginBlocked') {
  return (await s.gateway.deps.metrics[name].get()).values
}

describe('login-guard: password login', () => {
  it('10 failed logins, then the 11th is refused with 429 and Retry-After without reaching Immich', async () => {
    const s = await start()
    for (let i = 0; i < 10; i++)
      expect((await login(s, ADMIN_EMAIL, `wrong-${i}`)).status).toBe(401)
    expect(s.immich.loginAttempts()).toBe(10)
    const eleventh = await login(s, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(eleventh.status).toBe(429)
    expect(JSON.parse(eleventh.body)).toMatchObject({
      statusCode: 429,
      error: 'Too Many Requests',
      message: 'Too many failed login attempts, try again later',
    })
    const retryAfter = Number(eleventh.headers['retry-after'])
    expect(retryAfter).toBeGreaterThan(890)
    expect(retryAfter).toBeLessThanOrEqual(900)
    expect(s.immich.loginAttempts()).toBe(10)
    expect(await counter(s, 'loginFailures')).toEqual([{ labels: { kind: 'password' }, value: 10 }])
    expect(await counter(s, 'loginBlocked')).toEqual([{ labels: { kind: 'password' }, value: 1 }])
    expect(s.logs.some((l) => l.includes('"loginGuard":"blocked"'))).toBe(true)
  })

  it('the account is the trimmed, lower-cased email (as Immich reads it)', async () => {
    const s = await start({ maxFailuresPerAccount: 3 })
    for (const email of ['Admin@Example.com', ' admin@example.com ', 'ADMIN@EXAMPLE.COM'])
      expect((await login(s, email, 'x')).status).toBe(401)
    expect((await login(s, ADMIN_EMAIL, 'x')).status).toBe(429)
    // Another account from the same address is still tried.
    expect((await login(s, 'someone@example.com', 'x')).status).toBe(401)
  })

  it('a successful login resets the account counter', async () => {
    const s = await start()
    for (let i = 0; i < 9; i++) expect((await login(s, ADMIN_EMAIL, 'wrong')).status).toBe(401)
    const ok = await login(s, ADMIN_EMAIL, ADMIN_PASSWORD)
    expect(ok.status).toBe(201)
    // The body reached Immich intact (it parsed the credentials) and the cookies came back.
    expect(JSON.parse(ok.body).accessToken).toBeDefined()
    expect(ok.headers['set-cookie']).toBeDefined()
    for (let i = 0; i < 10; i++) expect((await login(s, ADMIN_EMAIL, 'wrong')).status).toBe(401)
    expect((await login(s, ADMIN_EMAIL, 'wrong')).status).toBe(429)
    expect(s.immich.loginAttempts()).toBe(20)
  })

  it('counts failures per address over all accounts', async () => {
    const s = await start({ maxFailuresPerIp: 5 })
    for (let i = 0; i < 5; i++)
      expect((await login(s, `user${i}@example.com`, 'x')).status).toBe(401)
    expect((await login(s, 'fresh@example.com', 'x')).status).toBe(429)
    expect(s.immich.loginAttempts()).toBe(5)
  })

  it('refused attempts and successes do not count against the address', async () => {
    const s = await start({ maxFailuresPerAccount: 2, maxFailuresPerIp: 4 })
    for (let i = 0; i < 2; i++) expect((await login(s, 'victim@example.com', 'x')).status).toBe(401)
    for (let i = 0; i < 10; i++)
      expect((await login(s, 'victim@example.com', 'x')).status).toBe(429)
    for (let i = 0; i < 5; i++)
      expect((await login(s, ADMIN_EMAIL, ADMIN_PASSWORD)).status).toBe(201)
    // Two failures so far for the address: two more are tried, the fifth is refused.
    expect((await login(s, 'a@example.com', 'x')).status).toBe(401)
    expect((await login(s, 'b@example.com', 'x')).status).toBe(401)
    expect((await login(s, 'c@example.com', 'x')).status).toBe(429)
  })

  it('answers that are not 401 do not count', async () => {
    const s = await start({ maxFailuresPerAccount: 2 })
    s.immich.setHandler('POST', '/api/auth/login', (_req, res) => {
      res
        .writeHead(400, { 'content-type': 'application/json' })
        .end('{"message":"email must be an email"}')
    })
    for (let i = 0; i < 5; i++) expect((await login(s, ADMIN_EMAIL, 'x')).status).toBe(400)
  })

  it('parallel guesses cannot slip past the count', async () => {
    const s = await start({ maxFailuresPerAccount: 5 })
    const answers = await Promise.all(Array.from({ length: 20 }, () => login(s, ADMIN_EMAIL, 'x')))
    expect(tally(answers)).toEqual({ 401: 5, 429: 15 })
    expect(s.immich.loginAttempts()).toBe(5)
  })

  it('a spoofed X-Forwarded-For from an untrusted peer does not change the key', async () => {
    const s = await start({ maxFailuresPerAccount: 3 })
    for (let i = 0; i < 3; i++)
      expect(
        (await login(s, ADMIN_EMAIL, 'x', { 'x-forwarded-for': `198.51.100.${i}` })).status
      ).toBe(401)
    expect((await login(s, ADMIN_EMAIL, 'x', { 'x-forwarded-for': '198.51.100.99' })).status).toBe(
      429
    )
  })

  it('behind a trusted proxy the forwarded address is the key', async () => {
    const s = await start({ maxFailuresPerAccount: 3 }, { trustedProxies: ['127.0.0.1'] })
    for (let i = 0; i < 3; i++)
      expect((await login(s, ADMIN_EMAIL, 'x', { 'x-forwarded-for': '198.51.100.1' })).status).toBe(
        401
      )
    expect((await login(s, ADMIN_EMAIL, 'x', { 'x-forwarded-for': '198.51.100.1' })).status).toBe(
      429
    )
    expect((await login(s, ADMIN_EMAIL, 'x', { 'x-forwarded-for': '198.51.100.2' })).status).toBe(
      401
    )
  })

  it('refuses a login body over the cap with 413 and never reads more', async () => {
    const s = await start({ maxBodyBytes: 1024 })
    const big = await send(`${s.url}/api/auth/login`, {
      method: 'POST',
      headers: JSON_HEADERS,
      body: JSON.stringify({ email: ADMIN_EMAIL, password: 'x'.repeat(2000) }),
    })
    expect(big.status).toBe(413)
    expect(s.immich.loginAttempts()).toBe(0)
  })

  it('a body that never arrives gets 408 after bodyTimeoutSeconds, and the connection is closed', async () => {
    const s = await start({ bodyTimeoutSeconds: 1 })
    const { port } = new URL(s.url)
    const socket = connect(Number(port), '127.0.0.1')
    let answer = ''
    socket.on('data', (d) => (answer += d.toString()))
    const closed = new Promise((r) => socket.once('close', r))
    socket.write(
      'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"email":'
    )
    const started = Date.now()
    await closed
    expect(Date.now() - started).toBeGreaterThan(900)
    expect(answer).toMatch(/^HTTP\/1\.1 408 /)
    expect(answer.toLowerCase()).toContain('connection: close')
    expect(s.immich.loginAttempts()).toBe(0)
  })

  it('a body that is not JSON still counts against the address', async () => {
    const s = await start({ maxFailuresPerIp: 2 })
    s.immich.setHandler('POST', '/api/auth/login', (_req, res) => {
      res
        .writeHead(401, { 'content-type': 'application/json' })
        .end('{"message":"Incorrect email or password"}')
    })
    for (let i = 0; i < 2; i++) {
      expect(
        (
          await send(`${s.url}/api/auth/login`, {
            method: 'POST',
            headers: JSON_HEADERS,
            body: 'not json',
          })
        ).status
      ).toBe(401)
    }
    expect((await login(s, ADMIN_EMAIL, 'x')).status).toBe(429)
  })

  it('does nothing on other routes and when passwordLogin is off', async () => {
    const s = await start({ maxFailuresPerAccount: 1, passwordLogin: false })
    for (let i = 0; i < 3; i++) expect((await login(s, ADMIN_EMAIL, 'x')).status).toBe(401)
  })
})

describe('login-guard: shared-link password', () => {
  it('blocks a link after N wrong passwords; another link is still tried', async () => {
    const s = await start({ maxFailuresPerAccount: 3 })
    for (let i = 0; i < 3; i++)
      expect((await shareLogin(s, 'fake-share-key-protected', 'wrong')).status).toBe(401)
    const blocked = await shareLogin(s, 'fake-share-key-protected', SHARED_LINK_PASSWORD)
    expect(blocked.status).toBe(429)
    expect(blocked.headers['retry-after']).toBeDefined()
    expect((await shareLogin(s, 'fake-share-key', 'wrong')).status).toBe(401)
    expect(s.immich.requestsTo('/api/shared-links/login')).toHaveLength(4)
    expect(await counter(s, 'loginBlocked')).toEqual([
      { labels: { kind: 'shared-link' }, value: 1 },
    ])
  })

  it('a right password resets the link counter', async () => {
    const s = await start({ maxFailuresPerAccount: 3 })
    for (let i = 0; i < 2; i++)
      expect((await shareLogin(s, 'fake-share-key-protected', 'wrong')).status).toBe(401)
    expect((await shareLogin(s, 'fake-share-key-protected', SHARED_LINK_PASSWORD)).status).toBe(201)
    for (let i = 0; i < 3; i++)
      expect((await shareLogin(s, 'fake-share-key-protected', 'wrong')).status).toBe(401)
    expect((await shareLogin(s, 'fake-share-key-protected', 'wrong')).status).toBe(429)
  })
})
