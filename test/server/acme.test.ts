import { mkdtempSync, readdirSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { freePort } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import { startPebble, type Pebble } from './pebble.js'
import { h2request, h2session, handshake } from './support.js'

/** Short enough to see a renewal in the test: due after two thirds, 10 s. */
const LIFETIME_SECONDS = 15

let pebble: Pebble
let immich: FakeImmich
let httpPort: number
let root: string
const storageDir = mkdtempSync(join(tmpdir(), 'igw-acme-'))

beforeAll(async () => {
  httpPort = await freePort()
  pebble = await startPebble({ httpPort, certificateValidityPeriod: LIFETIME_SECONDS })
  immich = await startFakeImmich()
})
afterAll(async () => {
  await pebble?.stop()
  await immich?.close()
})

function acmeStack(overrides: Record<string, unknown> = {}, port = httpPort): Promise<Stack> {
  return startStack(
    {
      server: {
        tls: {
          httpPort: port,
          acme: {
            email: 'admin@example.com',
            domains: ['localhost'],
            directoryUrl: pebble.directoryUrl,
            caFile: pebble.caFile,
            storageDir,
            retryMinSeconds: 1,
            ...overrides,
          },
        },
      },
    },
    { immich }
  )
}

async function waitForLog(stack: Stack, text: string, ms: number): Promise<string | undefined> {
  const deadline = Date.now() + ms
  for (;;) {
    const line = stack.logs.find((l) => l.includes(text))
    if (line || Date.now() > deadline) return line
    await sleep(100)
  }
}

async function acmeMetric(stack: Stack, outcome: string): Promise<number> {
  const text = await stack.gateway.deps.metrics.registry.metrics()
  const m = new RegExp(`immich_gateway_acme_certificates_total\\{outcome="${outcome}"\\} (\\d+)`)
  return Number(m.exec(text)?.[1] ?? 0)
}

describe('ACME against pebble', { timeout: 40_000 }, () => {
  let firstSerial: string
  let renewedSerial: string

  it('obtains a certificate from scratch over HTTP-01 and serves it over h2', async () => {
    const stack = await acmeStack()
    try {
      root = await pebble.root()
      const seen = await handshake(stack.url, root)
      expect(seen.cert.subjectaltname).toBe('DNS:localhost')
      firstSerial = seen.cert.serialNumber
      expect(pebble.orders()).toBe(1)
      expect(stack.logs.some((l) => l.includes('acme certificate issued'))).toBe(true)
      expect(await acmeMetric(stack, 'issued')).toBe(1)
      const session = await h2session(stack.url, root)
      try {
        expect((await h2request(session, '/api/server/ping')).status).toBe(200)
      } finally {
        session.close()
      }
      const files = readdirSync(storageDir).sort()
      expect(files).toEqual(['account.key.pem', 'localhost.crt.pem', 'localhost.key.pem'])
      for (const f of files) expect(statSync(join(storageDir, f)).mode & 0o777).toBe(0o600)
      expect(statSync(storageDir).mode & 0o777).toBe(0o700)
      // Nothing secret in the log lines: no PEM, no key authorization.
      expect(stack.logs.join('').includes('PRIVATE KEY')).toBe(false)
    } finally {
      await stack.close()
    }
  })

  it('reuses the stored certificate after a restart (no new order), renews it at 2/3 of its lifetime', async () => {
    const stack = await acmeStack()
    try {
      expect(pebble.orders()).toBe(1)
      expect((await handshake(stack.url, root)).cert.serialNumber).toBe(firstSerial)
      expect(stack.logs.some((l) => l.includes('acme certificate loaded from storage'))).toBe(true)

      const session = await h2session(stack.url, root)
      try {
        const renewed = await waitForLog(stack, 'acme certificate renewed', LIFETIME_SECONDS * 1000)
        expect(renewed).toBeDefined()
        expect(pebble.orders()).toBe(2)
        renewedSerial = (await handshake(stack.url, root)).cert.serialNumber
        expect(renewedSerial).not.toBe(firstSerial)
        // The connection opened on the old certificate is still served.
        expect((await h2request(session, '/api/server/ping')).status).toBe(200)
        expect(await acmeMetric(stack, 'renewed')).toBe(1)
      } finally {
        session.close()
      }
    } finally {
      await stack.close()
    }
  })

  it('a renewal that cannot be validated is logged clearly and the old certificate stays', async () => {
    // The plain listener is not where pebble sends the HTTP-01 validation: the challenge fails.
    const elsewhere = await freePort()
    const stack = await acmeStack({ renewBeforeFraction: 0.99 }, elsewhere)
    try {
      const line = await waitForLog(stack, 'acme certificate renewal failed', 10_000)
      expect(line).toBeDefined()
      const entry = JSON.parse(line!) as Record<string, unknown>
      expect(entry.level).toBe(50)
      expect(entry.err).toMatch(/connection refused|urn:ietf:params:acme:error/i)
      expect(entry.serving).toMatch(/^previous certificate, valid until/)
      expect(entry.retryInSeconds).toBe(1)
      expect((await handshake(stack.url, root)).cert.serialNumber).toBe(renewedSerial)
      const session = await h2session(stack.url, root)
      try {
        expect((await h2request(session, '/api/server/ping')).status).toBe(200)
      } finally {
        session.close()
      }
      expect(await acmeMetric(stack, 'failed')).toBeGreaterThanOrEqual(1)
      // Retried with backoff: a second attempt after ~1 s, which fails the same way.
      const retried = await waitForLog(stack, '"attempt":2', 10_000)
      expect(retried).toContain('"retryInSeconds":2')
      expect(await acmeMetric(stack, 'failed')).toBeGreaterThanOrEqual(2)
    } finally {
      await stack.close()
    }
  })

  it('a first issuance that fails still starts the gateway: redirects, retries, no handshake yet', async () => {
    const elsewhere = await freePort()
    const empty = mkdtempSync(join(tmpdir(), 'igw-acme-'))
    const stack = await acmeStack({ storageDir: empty }, elsewhere)
    try {
      const line = stack.logs.find((l) => l.includes('acme certificate issuance failed'))
      expect(line).toContain('no certificate yet')
      await expect(handshake(stack.url, root)).rejects.toThrow()
      const redirect = await fetch(`http://127.0.0.1:${elsewhere}/x?y=1`, { redirect: 'manual' })
      expect(redirect.status).toBe(301)
      expect(redirect.headers.get('location')).toBe(
        `https://127.0.0.1:${new URL(stack.url).port}/x?y=1`
      )
    } finally {
      await stack.close()
    }
  })
})
