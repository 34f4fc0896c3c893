import { randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { exportJWK, exportSPKI, generateKeyPair, SignJWT, type JWK, type JWTPayload } from 'jose'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { validatePolicyOptions } from '../../../policies/index.js'
import { buildConfig, startStack, type Stack } from '../../support/stack.js'
import { ADMIN_KEY_ENV, leakedSecrets, remember, USER_KEY_ENV } from '../api-key-auth/support.js'

const ASSET = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
const ISSUER = 'https://idp.example.test/realms/home'
const AUDIENCE = 'immich-gateway'
const HMAC_ISSUER = 'https://hmac.example.test'
const HMAC_SECRET_ENV = 'IGW_TEST_JWT_HMAC_SECRET'
const HMAC_SECRET = remember('a-very-long-shared-secret-for-hs256-tests-0123456789')
process.env[HMAC_SECRET_ENV] = HMAC_SECRET

type KeyPair = Awaited<ReturnType<typeof generateKeyPair>>
let rsa: KeyPair
let ec: KeyPair
let stranger: KeyPair
let jwks: Server
let jwksUrl: string
let jwksFetches = 0
let stack: Stack

beforeAll(async () => {
  rsa = await generateKeyPair('RS256', { extractable: true })
  ec = await generateKeyPair('ES256', { extractable: true })
  stranger = await generateKeyPair('RS256', { extractable: true })
  const keys: JWK[] = [
    { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
    { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
  ]
  jwks = createServer((req, res) => {
    jwksFetches++
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }))
  })
  await new Promise<void>((resolve) => jwks.listen(0, '127.0.0.1', resolve))
  jwksUrl = `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/jwks`
  stack = await startStack({ policies: { 'jwt-auth': jwtOptions() } })
})

afterAll(async () => {
  await stack?.close()
  jwks?.close()
})

function jwtOptions(overrides: Record<string, unknown> = {}) {
  return {
    issuers: [
      {
        name: 'home-idp',
        issuer: ISSUER,
        audience: AUDIENCE,
        jwksUri: jwksUrl,
        groupScopes: { frames: ['photo-frame'], 'immich-admins': ['all'] },
        upstreamKeyEnv: USER_KEY_ENV,
        upstreamKeyEnvByGroup: { 'immich-admins': ADMIN_KEY_ENV },
        ...overrides,
      },
      {
        name: 'hmac-app',
        issuer: HMAC_ISSUER,
        audience: AUDIENCE,
        secretEnv: HMAC_SECRET_ENV,
        upstreamKeyEnv: USER_KEY_ENV,
      },
    ],
  }
}

interface SignOptions {
  key?: CryptoKey | Uint8Array
  alg?: string
  kid?: string | undefined
  claims?: JWTPayload
  issuer?: string
  audience?: string
  expiresIn?: string | number | undefined
}

async function sign(opts: SignOptions = {}): Promise<string> {
  const alg = opts.alg ?? 'RS256'
  const key = opts.key ?? (alg === 'ES256' ? ec.privateKey : rsa.privateKey)
  const kid = 'kid' in opts ? opts.kid : alg === 'ES256' ? 'ec-1' : 'rsa-1'
  let jwt = new SignJWT({ scope: 'openid profile asset.view album.read', ...opts.claims })
    .setProtectedHeader({ alg, ...(kid ? { kid } : {}) })
    .setIssuer(opts.issuer ?? ISSUER)
    .setAudience(opts.audience ?? AUDIENCE)
    .setSubject('user-123')
    .setIssuedAt()
  if (opts.expiresIn !== undefined) jwt = jwt.setExpirationTime(opts.expiresIn)
  else if (!('expiresIn' in opts)) jwt = jwt.setExpirationTime('5m')
  return remember(await jwt.sign(key))
}

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString('base64url')
}

async function get(path: string, token: string | undefined, headers: Record<string, string> = {}) {
  const before = stack.immich.requests.length
  const res = await request(`${stack.url}${path}`, {
    headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), ...headers },
  })
  const text = await res.body.text()
  return {
    status: res.statusCode,
    headers: res.headers,
    text,
    upstream: stack.immich.requests.slice(before),
  }
}

const thumbnail = `/api/assets/${ASSET}/thumbnail`

describe('jwt-auth: valid tokens', () => {
  it('RS256 via JWKS passes; the upstream sees the injected Immich key, not the token', async () => {
    const token = await sign()
    const res = await get(`/api/assets/${randomUUID()}/thumbnail`, token)
    expect(res.status).toBe(200)
    const up = res.upstream[0]!
    expect(up.headers['x-api-key']).toBe('fake-user-key')
    expect(up.headers.authorization).toBeUndefined()
    expect(up.rawHeaders.join('\n')).not.toContain(token)
    expect(stack.logs.some((l) => l.includes('"client":"home-idp"'))).toBe(true)
  })

  it('ES256 via JWKS passes', async () => {
    expect((await get(thumbnail, await sign({ alg: 'ES256' }))).status).toBe(200)
  })

  it("HS256 with the issuer's configured secret passes", async () => {
    const token = await sign({
      alg: 'HS256',
      key: new TextEncoder().encode(HMAC_SECRET),
      kid: undefined,
      issuer: HMAC_ISSUER,
    })
    expect((await get('/api/albums', token)).status).toBe(200)
  })

  it('scopes come from the scope claim: what it does not grant is 403', async () => {
    const res = await get(`/api/assets/${ASSET}/original`, await sign())
    expect(res.status).toBe(403)
    expect(JSON.parse(res.text).message).toBe('Missing required permission: asset.download')
    expect(res.upstream).toHaveLength(0)
  })

  it('scopes from an scp array and from groups mapped to presets', async () => {
    expect(
      (
        await get(
          `/api/assets/${ASSET}/original`,
          await sign({ claims: { scope: undefined, scp: ['asset.download'] } })
        )
      ).status
    ).toBe(200)
    const frame = await sign({ claims: { scope: 'openid', groups: ['frames'] } })
    expect((await get(`/api/assets/${ASSET}/original`, frame)).status).toBe(200)
    expect((await get('/api/albums', frame)).status).toBe(200)
    expect((await get('/api/users/me', frame)).status).toBe(403)
  })

  it('the upstream key is chosen per group', async () => {
    const res = await get(
      '/api/users/me',
      await sign({ claims: { scope: '', groups: ['immich-admins'] } })
    )
    expect(res.status).toBe(200)
    expect(res.upstream[0]!.headers['x-api-key']).toBe('fake-admin-key')
    expect(res.upstream[0]!.user?.id).toBe('u-admin')
  })

  it('a token within the clock tolerance of its expiry still passes', async () => {
    const token = await sign({ expiresIn: Math.floor(Date.now() / 1000) - 10 })
    expect((await get(thumbnail, token)).status).toBe(200)
  })
})

describe('jwt-auth: every bad token gets 401 with error="invalid_token", and Immich never sees it', () => {
  const cases: [string, () => Promise<string>][] = [
    ['expired', () => sign({ expiresIn: Math.floor(Date.now() / 1000) - 120 })],
    ['not yet valid (nbf)', () => sign({ claims: { nbf: Math.floor(Date.now() / 1000) + 600 } })],
    ['without exp', () => sign({ expiresIn: undefined })],
    ['wrong aud', () => sign({ audience: 'someone-else' })],
    ['wrong iss', () => sign({ issuer: 'https://evil.example.test' })],
    ['iss of the HMAC issuer but RS256', () => sign({ issuer: HMAC_ISSUER })],
    [
      'alg: none',
      async () =>
        `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ iss: ISSUER, aud: AUDIENCE, sub: 'x', exp: Math.floor(Date.now() / 1000) + 300, scope: 'all' })}.`,
    ],
    [
      'HS256 signed with the RSA public key (key confusion)',
      async () =>
        sign({
          alg: 'HS256',
          key: new TextEncoder().encode(await exportSPKI(rsa.publicKey)),
          kid: 'rsa-1',
          claims: { scope: 'all' },
        }),
    ],
    [
      'unknown kid (a key the JWKS does not hold)',
      () => sign({ key: stranger.privateKey, kid: 'rotated-away' }),
    ],
    ['right kid, wrong key', () => sign({ key: stranger.privateKey, kid: 'rsa-1' })],
    ['no kid, wrong key', () => sign({ key: stranger.privateKey, kid: undefined })],
    ['truncated signature', async () => (await sign()).slice(0, -12)],
    [
      'tampered payload',
      async () => {
        const [h, , s] = (await sign()).split('.')
        return `${h}.${b64({ iss: ISSUER, aud: AUDIENCE, sub: 'x', exp: Math.floor(Date.now() / 1000) + 300, scope: 'all' })}.${s}`
      },
    ],
    ['garbage in three parts', async () => 'abc.def.ghi'],
    [
      'header that is not JSON',
      async () => `${Buffer.from('nope').toString('base64url')}.${b64({ iss: ISSUER })}.sig`,
    ],
    ['larger than 8 KiB', async () => sign({ claims: { pad: 'x'.repeat(9000) } })],
  ]

  it.each(cases)('%s', async (_label, make) => {
    const res = await get(thumbnail, await make())
    expect(res.status).toBe(401)
    expect(res.headers['www-authenticate']).toBe(
      'Bearer realm="immich-gateway", error="invalid_token"'
    )
    expect(JSON.parse(res.text)).toMatchObject({
      message: 'Invalid token',
      statusCode: 401,
      error: 'Unauthorized',
    })
    expect(res.upstream).toHaveLength(0)
  })

  it('tokens that are not JWTs at all (two parts, opaque) are native session tokens: Immich refuses them', async () => {
    const token = (await sign()).split('.').slice(0, 2).join('.')
    const res = await get(thumbnail, token)
    expect(res.status).toBe(401)
    expect((await get(thumbnail, 'garbage')).status).toBe(401)
  })

  it('an unknown kid refetches the JWKS (at most once per cooldown)', async () => {
    const before = jwksFetches
    await get(thumbnail, await sign({ key: stranger.privateKey, kid: 'another-unknown' }))
    await get(thumbnail, await sign({ key: stranger.privateKey, kid: 'yet-another' }))
    expect(jwksFetches - before).toBeLessThanOrEqual(1)
  })

  it('the refusals are counted as invalid_token', async () => {
    expect(await stack.gateway.deps.metrics.registry.metrics()).toMatch(
      /immich_gateway_auth_failures_total\{reason="invalid_token"\} (1[0-9]|[2-9][0-9])/
    )
  })
})

describe('jwt-auth: options are checked at boot, naming the field', () => {
  const check = (options: unknown) => () => validateAndBuild(options)
  async function validateAndBuild(options: unknown) {
    const config = buildConfig('http://127.0.0.1:9', { policies: { 'jwt-auth': options } })
    validatePolicyOptions(config)
    const s = await startStack({ policies: { 'jwt-auth': options } })
    await s.close()
  }

  it('alg none is not an algorithm', async () => {
    await expect(check(jwtOptions({ algorithms: ['none'] }))()).rejects.toThrow(
      /policies\.jwt-auth\.issuers\.0\.algorithms\.0/
    )
  })

  it('HS256 is refused for an issuer with public keys', async () => {
    await expect(check(jwtOptions({ algorithms: ['RS256', 'HS256'] }))()).rejects.toThrow(
      /issuers\.0\.algorithms\.1: HS256 is an HMAC algorithm/
    )
  })

  it('exactly one key source', async () => {
    await expect(check(jwtOptions({ secretEnv: HMAC_SECRET_ENV }))()).rejects.toThrow(
      /exactly one of jwksUri, publicKeyEnv, secretEnv/
    )
  })

  it('a missing env var names the issuer and the field', async () => {
    await expect(check(jwtOptions({ upstreamKeyEnv: 'IGW_TEST_NOT_SET' }))()).rejects.toThrow(
      /issuers\[0\] \(home-idp\)\.upstreamKeyEnv: environment variable IGW_TEST_NOT_SET is not set/
    )
  })

  it('an unknown scope in a group mapping', async () => {
    await expect(check(jwtOptions({ groupScopes: { x: ['asset.veiw'] } }))()).rejects.toThrow(
      /groupScopes\.x: .*unknown scope "asset\.veiw"/
    )
  })

  it('a short HMAC secret', async () => {
    process.env.IGW_TEST_SHORT_SECRET = 'short'
    await expect(
      check({
        issuers: [
          {
            name: 'h',
            issuer: 'https://h',
            audience: 'a',
            secretEnv: 'IGW_TEST_SHORT_SECRET',
            upstreamKeyEnv: USER_KEY_ENV,
          },
        ],
      })()
    ).rejects.toThrow(/at least 32 bytes/)
  })
})

describe('jwt-auth: a static public key from the environment', () => {
  it('PEM public key: RS256 passes, a token from another key does not', async () => {
    process.env.IGW_TEST_JWT_PEM = await exportSPKI(rsa.publicKey)
    const s = await startStack({
      policies: {
        'jwt-auth': {
          issuers: [
            {
              name: 'static',
              issuer: ISSUER,
              audience: AUDIENCE,
              publicKeyEnv: 'IGW_TEST_JWT_PEM',
              upstreamKeyEnv: USER_KEY_ENV,
            },
          ],
        },
      },
    })
    try {
      const ok = await request(`${s.url}${thumbnail}`, {
        headers: { authorization: `Bearer ${await sign()}` },
      })
      expect(ok.statusCode).toBe(200)
      await ok.body.dump()
      const bad = await request(`${s.url}${thumbnail}`, {
        headers: { authorization: `Bearer ${await sign({ key: stranger.privateKey })}` },
      })
      expect(bad.statusCode).toBe(401)
      await bad.body.dump()
    } finally {
      await s.close()
    }
  })
})

describe('secrets', () => {
  it('no token or secret made in this file appears in any captured log line', () => {
    expect(leakedSecrets()).toEqual([])
  })
})
