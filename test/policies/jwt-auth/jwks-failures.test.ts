import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo, Socket } from 'node:net'
import { exportJWK, generateKeyPair, SignJWT, type JWK } from 'jose'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startStack, type Stack } from '../../support/stack.js'
import { USER_KEY_ENV } from '../api-key-auth/support.js'

/**
 * Issue 13 item 7: a JWKS that is down, slow or answers garbage is counted by kind in
 * immich_gateway_jwks_failures_total and logged, at most one line per kind a minute; tokens of the
 * issuer get 401 meanwhile, and pass again once the JWKS answers.
 */

const ISSUER = 'https://idp.example.test/realms/jwks-faults'
const AUDIENCE = 'immich-gateway'
type Mode = 'ok' | 'garbage' | 'not-a-jwks' | 'status' | 'slow' | 'down'

let mode: Mode = 'garbage'
let keys: JWK[]
let privateKey: CryptoKey
let jwks: Server
let port: number
const sockets = new Set<Socket>()
let stack: Stack

function answer(_req: IncomingMessage, res: ServerResponse): void {
  if (mode === 'ok') res.writeHead(200, { 'content-type': 'application/json' })
  if (mode === 'ok') return void res.end(JSON.stringify({ keys }))
  if (mode === 'garbage') return void res.writeHead(200).end('<html>login</html>')
  if (mode === 'not-a-jwks') return void res.writeHead(200).end('{"keys":"none"}')
  if (mode === 'status') return void res.writeHead(503).end('maintenance')
  // slow: headers never come within the gateway's timeout (the socket is closed at the end).
}

async function listen(at = 0): Promise<void> {
  jwks = createServer(answer)
  jwks.on('connection', (s: Socket) => {
    sockets.add(s)
    s.on('close', () => sockets.delete(s))
  })
  await new Promise<void>((resolve) => jwks.listen(at, '127.0.0.1', resolve))
  port = (jwks.address() as AddressInfo).port
}

async function down(): Promise<void> {
  for (const s of sockets) s.destroy()
  await new Promise<void>((resolve) => jwks.close(() => resolve()))
}

beforeAll(async () => {
  const pair = await generateKeyPair('ES256', { extractable: true })
  privateKey = pair.privateKey
  keys = [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }]
  await listen()
  stack = await startStack({
    policies: {
      scopes: {},
      'jwt-auth': {
        issuers: [
          {
            name: 'faulty-idp',
            issuer: ISSUER,
            audience: AUDIENCE,
            jwksUri: `http://127.0.0.1:${port}/jwks`,
            jwksTimeoutMs: 300,
            jwksCooldownSeconds: 0,
            defaultScopes: ['album.read'],
            upstreamKeyEnv: USER_KEY_ENV,
          },
        ],
      },
    },
  })
})

afterAll(async () => {
  await stack?.close()
  for (const s of sockets) s.destroy()
  jwks?.close()
})

async function token(): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: 'ES256', kid: 'k1' })
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setSubject('someone')
    .setExpirationTime('5m')
    .sign(privateKey)
}

async function albums(): Promise<number> {
  const res = await request(`${stack.url}/api/albums`, {
    headers: { authorization: `Bearer ${await token()}` },
  })
  await res.body.dump()
  return res.statusCode
}

async function failures(kind: string): Promise<number> {
  const text = await stack.gateway.deps.metrics.registry.metrics()
  const m = new RegExp(
    `immich_gateway_jwks_failures_total\\{issuer="faulty-idp",kind="${kind}"\\} (\\d+)`
  ).exec(text)
  return m ? Number(m[1]) : 0
}

function warnings(kind: string): { issuer: string; detail: string; jwksUri: string }[] {
  return stack.logs
    .map((l) => JSON.parse(l) as Record<string, string> & { level: number })
    .filter((l) => l.level === 40 && l.kind === kind && l.msg?.startsWith('JWKS fetch failed'))
    .map((l) => ({ issuer: l.issuer!, detail: l.detail!, jwksUri: l.jwksUri! }))
}

describe('a JWKS that fails is counted by kind and logged once a minute per kind', () => {
  it.each([
    ['garbage', 'invalid', 'not a JSON Web Key Set'],
    ['not-a-jwks', 'invalid', 'not a JSON Web Key Set'],
    ['status', 'status', 'HTTP 503'],
    ['slow', 'timeout', 'no answer within 300 ms'],
  ] as const)('%s → kind %s', async (m, kind, detail) => {
    mode = m
    const before = await failures(kind)
    const loggedBefore = warnings(kind).length
    expect([await albums(), await albums(), await albums()]).toEqual([401, 401, 401])
    expect(await failures(kind)).toBe(before + 3)
    const logged = warnings(kind)
    // One line for the kind's first failure; the repeats within the minute only count.
    expect(logged.length).toBe(loggedBefore === 0 ? 1 : loggedBefore)
    expect(logged[0]).toMatchObject({
      issuer: 'faulty-idp',
      jwksUri: `http://127.0.0.1:${port}/jwks`,
    })
    if (loggedBefore === 0) expect(logged[0]!.detail).toContain(detail)
  })

  it('down → kind unreachable; answering again → the token passes', async () => {
    await down()
    expect([await albums(), await albums()]).toEqual([401, 401])
    expect(await failures('unreachable')).toBe(2)
    expect(warnings('unreachable')).toHaveLength(1)
    expect(warnings('unreachable')[0]!.detail).toBe('ECONNREFUSED')
    mode = 'ok'
    await listen(port)
    expect(await albums()).toBe(200)
  })
})
