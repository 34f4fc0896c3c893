import { copyFileSync, writeFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ConfigError, describeIssues, loadConfig } from '../../src/config/load.js'
import { configSchema } from '../../src/config/schema.js'
import { freePort } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import {
  h1request,
  h2request,
  h2session,
  handshake,
  makeCa,
  makeLeaf,
  type TestCa,
} from './support.js'

function plainGet(
  url: string,
  headers: Record<string, string> = {}
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => (body += c))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }))
    })
    req.on('error', reject)
    req.end()
  })
}

async function metric(stack: Stack, name: string): Promise<string[]> {
  const text = await stack.gateway.deps.metrics.registry.metrics()
  return text.split('\n').filter((l) => l.startsWith(name))
}

describe('TLS listener with certificate files', () => {
  let ca: TestCa
  let certFile: string
  let keyFile: string
  let stack: Stack
  let httpPort: number

  beforeAll(async () => {
    ca = makeCa()
    certFile = join(ca.dir, 'live.pem')
    keyFile = join(ca.dir, 'live.key')
    makeLeaf(ca, 'first', { certFile, keyFile })
    httpPort = await freePort()
    stack = await startStack({
      server: { tls: { certFile, keyFile, reloadCheckSeconds: 0.1, httpPort } },
    })
  })
  afterAll(async () => {
    await stack?.close()
  })

  it('reports an https URL and speaks h2 and HTTP/1.1 on the same port, chosen by ALPN', async () => {
    expect(stack.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/)
    expect((await handshake(stack.url, ca.pem)).alpn).toBe('h2')
    expect((await handshake(stack.url, ca.pem, ['http/1.1'])).alpn).toBe('http/1.1')

    const h1 = await h1request(`${stack.url}/api/server/ping`, ca.pem)
    expect(h1.httpVersion).toBe('1.1')
    expect(h1.status).toBe(200)
    expect(JSON.parse(h1.body.toString())).toEqual({ res: 'pong' })

    const session = await h2session(stack.url, ca.pem)
    try {
      const h2 = await h2request(session, '/api/server/ping')
      expect(h2.status).toBe(200)
      expect(JSON.parse(h2.body.toString())).toEqual({ res: 'pong' })
    } finally {
      session.close()
    }
  })

  it('refuses TLS 1.1 and below', async () => {
    const u = new URL(stack.url)
    const outcome = await new Promise<string>((resolve) => {
      const socket = tlsConnect(
        {
          host: u.hostname,
          port: Number(u.port),
          ca: ca.pem,
          servername: 'localhost',
          minVersion: 'TLSv1',
          maxVersion: 'TLSv1.1',
        },
        () => {
          socket.end()
          resolve('connected')
        }
      )
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
    })
    expect(outcome).not.toBe('connected')
  })

  it('reloads a changed certificate on the live listener: open connections keep working', async () => {
    const session = await h2session(stack.url, ca.pem)
    try {
      expect((await h2request(session, '/api/server/ping')).status).toBe(200)
      expect((await handshake(stack.url, ca.pem)).cert.subject.CN).toBe('first')

      makeLeaf(ca, 'second', { certFile, keyFile })
      const deadline = Date.now() + 5000
      let cn = 'first'
      while (cn !== 'second' && Date.now() < deadline) {
        await sleep(100)
        cn = String((await handshake(stack.url, ca.pem)).cert.subject.CN)
      }
      expect(cn).toBe('second')
      // The session opened before the reload was not dropped.
      expect(session.closed || session.destroyed).toBe(false)
      expect((await h2request(session, '/api/server/ping')).status).toBe(200)
      expect(await metric(stack, 'immich_gateway_tls_reloads_total')).toContain(
        'immich_gateway_tls_reloads_total{result="ok"} 1'
      )
      expect(stack.logs.some((l) => l.includes('"CN=second"') || l.includes('CN=second'))).toBe(
        true
      )
    } finally {
      session.close()
    }
  })

  it('keeps the previous certificate when the changed files do not load', async () => {
    const before = (await handshake(stack.url, ca.pem)).cert.fingerprint256
    // A key that is not the certificate's: the pair is refused as a whole.
    const other = makeLeaf(ca, 'other')
    copyFileSync(other.keyFile, keyFile)
    const deadline = Date.now() + 5000
    while (Date.now() < deadline && !stack.logs.some((l) => l.includes('reload failed'))) {
      await sleep(100)
    }
    const line = stack.logs.find((l) => l.includes('tls certificate reload failed'))
    expect(line).toBeDefined()
    expect(line).toContain(keyFile)
    expect((await handshake(stack.url, ca.pem)).cert.fingerprint256).toBe(before)
    expect((await h1request(`${stack.url}/api/server/ping`, ca.pem)).status).toBe(200)
    expect(await metric(stack, 'immich_gateway_tls_reloads_total{result="error"}')).not.toEqual([])
  })

  it('the plain listener redirects to https with 301, path and query kept', async () => {
    const port = new URL(stack.url).port
    const res = await plainGet(`http://127.0.0.1:${httpPort}/photos/abc?x=1&y=%20z`, {
      host: 'photos.example.com',
    })
    expect(res.status).toBe(301)
    expect(res.headers.location).toBe(`https://photos.example.com:${port}/photos/abc?x=1&y=%20z`)
    const v6 = await plainGet(`http://127.0.0.1:${httpPort}/`, { host: '[::1]:80' })
    expect(v6.headers.location).toBe(`https://[::1]:${port}/`)
    // No ACME configured: a challenge path is simply not found, never redirected.
    const challenge = await plainGet(`http://127.0.0.1:${httpPort}/.well-known/acme-challenge/abc`)
    expect(challenge.status).toBe(404)
    const bad = await plainGet(`http://127.0.0.1:${httpPort}/`, { host: 'evil.com/x' })
    expect(bad.status).toBe(400)
  })

  it('sends no Strict-Transport-Security unless configured', async () => {
    const res = await h1request(`${stack.url}/api/server/ping`, ca.pem)
    expect(res.headers['strict-transport-security']).toBeUndefined()
  })
})

describe('redirect port, HSTS, HTTP/1.1 only', () => {
  let ca: TestCa
  let stack: Stack
  let httpPort: number

  beforeAll(async () => {
    ca = makeCa()
    const leaf = makeLeaf(ca, 'hsts')
    httpPort = await freePort()
    stack = await startStack({
      server: {
        tls: {
          certFile: leaf.certFile,
          keyFile: leaf.keyFile,
          httpPort,
          redirectPort: 443,
          http2: false,
          hsts: { maxAgeSeconds: 600, includeSubDomains: true },
        },
      },
    })
  })
  afterAll(async () => {
    await stack?.close()
  })

  it('leaves port 443 out of the Location', async () => {
    const res = await plainGet(`http://127.0.0.1:${httpPort}/a?b`, { host: 'photos.example.com' })
    expect(res.headers.location).toBe('https://photos.example.com/a?b')
  })

  it('sends HSTS on forwarded answers and on the gateway’s own error answers', async () => {
    const ok = await h1request(`${stack.url}/api/server/ping`, ca.pem)
    expect(ok.headers['strict-transport-security']).toBe('max-age=600; includeSubDomains')
    const refused = await h1request(`${stack.url}/api/albums`, ca.pem, {
      headers: { 'x-api-key': 'igw_short' },
    })
    expect(refused.status).toBe(401)
    expect(refused.headers['strict-transport-security']).toBe('max-age=600; includeSubDomains')
  })

  it('offers only HTTP/1.1 by ALPN when http2 is off', async () => {
    expect((await handshake(stack.url, ca.pem)).alpn).toBe('http/1.1')
  })
})

describe('server.tls configuration', () => {
  const parse = (tls: unknown) => {
    const result = configSchema.safeParse({ server: { tls } })
    return result.success ? 'ok' : describeIssues(result.error)
  }

  it('names the field of a missing or unreadable file', () => {
    const ca = makeCa()
    const leaf = makeLeaf(ca, 'cfg')
    expect(parse({ certFile: leaf.certFile, keyFile: leaf.keyFile })).toBe('ok')
    expect(parse({ certFile: join(ca.dir, 'nope.pem'), keyFile: leaf.keyFile })).toBe(
      'server.tls.certFile: file does not exist or is not readable'
    )
    expect(parse({ certFile: leaf.certFile, keyFile: join(ca.dir, 'nope.key') })).toBe(
      'server.tls.keyFile: file does not exist or is not readable'
    )
  })

  it('loadConfig (startup and `config check`) fails with a ConfigError naming the field', () => {
    const ca = makeCa()
    const file = join(ca.dir, 'gateway.yaml')
    writeFileSync(
      file,
      `server:\n  tls:\n    certFile: ${ca.dir}/missing.pem\n    keyFile: ${ca.keyFile}\n`
    )
    expect(() => loadConfig({ GATEWAY_CONFIG: file })).toThrow(ConfigError)
    expect(() => loadConfig({ GATEWAY_CONFIG: file })).toThrow(
      'server.tls.certFile: file does not exist or is not readable'
    )
  })

  it('refuses a key that is not the certificate’s, a certificate without key, both modes at once', () => {
    const ca = makeCa()
    const a = makeLeaf(ca, 'a')
    const b = makeLeaf(ca, 'b')
    expect(parse({ certFile: a.certFile, keyFile: b.keyFile })).toMatch(
      /^server\.tls\.certFile: cannot be used with keyFile/
    )
    const garbage = join(ca.dir, 'garbage.pem')
    writeFileSync(garbage, 'not a certificate')
    expect(parse({ certFile: garbage, keyFile: a.keyFile })).toMatch(/^server\.tls\.certFile:/)
    expect(parse({ certFile: a.certFile })).toBe('server.tls.keyFile: certFile needs keyFile')
    expect(parse({})).toBe('server.tls: expected certFile and keyFile, or acme')
    const acme = { email: 'a@example.com', domains: ['example.com'] }
    expect(parse({ acme })).toBe(
      'server.tls.httpPort: acme answers HTTP-01 challenges on the plain listener: set httpPort (80)'
    )
    expect(parse({ acme, httpPort: 80 })).toBe('ok')
    expect(parse({ acme, httpPort: 80, certFile: a.certFile, keyFile: a.keyFile })).toBe(
      'server.tls.acme: use either certFile/keyFile or acme'
    )
    expect(parse({ acme: { ...acme, caFile: '/nonexistent/ca.pem' }, httpPort: 80 })).toBe(
      'server.tls.acme.caFile: file does not exist or is not readable'
    )
  })
})

describe('shutdown over HTTP/2', () => {
  it('drains: a download in flight finishes, idle sessions are told GOAWAY, close resolves', async () => {
    const ca = makeCa()
    const leaf = makeLeaf(ca, 'drain')
    const stack = await startStack({
      server: { tls: { certFile: leaf.certFile, keyFile: leaf.keyFile } },
    })
    stack.immich.setAssetSize('drain-1', 256 * 1024)
    const busy = await h2session(stack.url, ca.pem)
    const idle = await h2session(stack.url, ca.pem)
    try {
      const goaway = new Promise<void>((resolve) => idle.once('goaway', () => resolve()))
      // 16 KiB every 50 ms: under a second in all, still running when the shutdown starts.
      const download = h2request(busy, '/api/assets/drain-1/video/playback?slow=1', {
        headers: { 'x-api-key': 'fake-admin-key' },
      })
      await sleep(150)
      const started = Date.now()
      const closed = stack.close()
      const res = await download
      expect(res.status).toBe(200)
      expect(res.body.length).toBe(256 * 1024)
      await goaway
      await closed
      // Well before the grace period (2 s in test stacks) would cut connections.
      expect(Date.now() - started).toBeLessThan(1800)
    } finally {
      busy.destroy()
      idle.destroy()
    }
  })
})
