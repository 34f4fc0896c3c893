import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { request as httpRequest } from 'node:http'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { freePort } from '../support/http.js'
import { childEnv, startStack, type Stack } from '../support/stack.js'

describe('operability', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(async () => {
    await stack.close()
  })

  it('answers /healthz, and /readyz by asking Immich', async () => {
    const health = await request(`${stack.url}/healthz`)
    expect(health.statusCode).toBe(200)
    await health.body.dump()
    const ready = await request(`${stack.url}/readyz`)
    expect(ready.statusCode).toBe(200)
    expect(await ready.body.json()).toMatchObject({ status: 'ready', upstream: 'ok' })
  })

  it('writes one JSON access line per request, with credentials redacted', async () => {
    stack.logs.length = 0
    const res = await request(
      `${stack.url}/api/assets/a1/thumbnail?size=preview&apiKey=fake-admin-key&key=share-secret`,
      {
        headers: {
          'x-request-id': 'log-test-1',
          'x-api-key': 'fake-admin-key',
          cookie: 'immich_access_token=tok',
        },
      }
    )
    await res.body.dump()
    const lines = stack.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.requestId === 'log-test-1')
    expect(lines).toHaveLength(1)
    const line = lines[0]!
    expect(line).toMatchObject({
      method: 'GET',
      route: '/api/assets/{id}/thumbnail',
      status: res.statusCode,
    })
    expect(typeof line.ms).toBe('number')
    expect(line.bytesOut).toBeGreaterThan(0)
    expect(line.url).toBe('/api/assets/a1/thumbnail?size=preview&apiKey=[REDACTED]&key=[REDACTED]')
    const all = stack.logs.join('\n')
    expect(all).not.toContain('fake-admin-key')
    expect(all).not.toContain('share-secret')
  })

  it('answers a malformed request with an Immich-shaped 400, not a crash', async () => {
    // node:http sends the path as written (undici's URL parser would resolve the dots first).
    const res = await new Promise<{
      statusCode: number
      headers: Record<string, unknown>
      text: string
    }>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: new URL(stack.url).port, path: '/api/%2e%2e/admin/users' },
        (r) => {
          let text = ''
          r.on('data', (c: Buffer) => (text += c))
          r.on('end', () => resolve({ statusCode: r.statusCode!, headers: r.headers, text }))
        }
      )
      req.on('error', reject)
      req.end()
    })
    expect(res.statusCode).toBe(400)
    const body = JSON.parse(res.text) as Record<string, unknown>
    expect(body).toMatchObject({
      message: 'Invalid request path',
      error: 'Bad Request',
      statusCode: 400,
    })
    expect(body.correlationId).toBe(res.headers['x-correlation-id'])
  })
})

describe('graceful shutdown', () => {
  let immich: FakeImmich
  beforeAll(async () => {
    immich = await startFakeImmich()
  })
  afterAll(async () => {
    await immich.close()
  })

  it('on SIGTERM stops accepting, lets the in-flight request finish, then exits 0', async () => {
    const port = await freePort()
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: childEnv({
        PORT: String(port),
        HOST: '127.0.0.1',
        IMMICH_URL: immich.url,
        LOG_LEVEL: 'warn',
      }),
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    try {
      await expect
        .poll(
          async () =>
            await request(`http://127.0.0.1:${port}/healthz`).then(
              (r) => r.statusCode,
              () => 0
            ),
          { timeout: 15_000 }
        )
        .toBe(200)
      const inFlight = request(`http://127.0.0.1:${port}/api/slow-headers?ms=800`, {
        headers: { 'x-api-key': 'fake-admin-key' },
      })
      await new Promise((r) => setTimeout(r, 200))
      child.kill('SIGTERM')
      const res = await inFlight
      expect(res.statusCode).toBe(200)
      await res.body.dump()
      const [code] = await once(child, 'exit')
      expect(code).toBe(0)
      await expect(request(`http://127.0.0.1:${port}/healthz`)).rejects.toThrow()
    } finally {
      child.kill('SIGKILL')
    }
  }, 30_000)
})
