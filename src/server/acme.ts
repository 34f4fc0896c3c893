import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { Agent } from 'node:https'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import * as acme from 'acme-client'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { acmeSchema } from '../config/schema.js'
import type { TlsMetrics } from './tls-metrics.js'

export type AcmeConfig = z.output<typeof acmeSchema>

/** A certificate chain (leaf first) and its private key, both PEM. */
export interface KeyPair {
  key: string
  cert: string
}

/** The longest a Node timer can wait (~24.8 days); longer waits are taken in steps. */
const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * Obtains and renews the certificate from an ACME CA with acme-client (HTTP-01 challenges, answered
 * by the plain listener through `challengeResponse`). The account key and the certificate live in
 * `storageDir` (0600) and are reused across restarts; a certificate is renewed once
 * `renewBeforeFraction` of its lifetime is left, and a failure is retried with a doubling wait while
 * the old certificate keeps being served.
 */
export class AcmeManager {
  private readonly challenges = new Map<string, string>()
  private current: (KeyPair & { x509: X509Certificate }) | undefined
  private timer: NodeJS.Timeout | undefined
  private failures = 0
  private stopped = false
  private readonly listeners: ((pair: KeyPair) => void)[] = []
  private readonly files: { account: string; key: string; cert: string }

  constructor(
    private readonly config: AcmeConfig,
    private readonly logger: Logger,
    private readonly metrics: TlsMetrics
  ) {
    const dir = config.storageDir
    const name = config.domains[0]!.replace(/[^a-zA-Z0-9.-]/g, '_')
    this.files = {
      account: join(dir, 'account.key.pem'),
      key: join(dir, `${name}.key.pem`),
      cert: join(dir, `${name}.crt.pem`),
    }
    // acme-client's own axios instance only: nothing else in the process trusts this CA.
    acme.axios.defaults.httpsAgent = config.caFile
      ? new Agent({ ca: readFileSync(config.caFile) })
      : undefined
  }

  /** The key authorization for an HTTP-01 token being validated now, if any. */
  challengeResponse(token: string): string | undefined {
    return this.challenges.get(token)
  }

  /** The certificate in use, if there is one yet. */
  get certificate(): KeyPair | undefined {
    return this.current
  }

  /** Called with every newly issued certificate (after the one `start` settles with). */
  onCertificate(listener: (pair: KeyPair) => void): void {
    this.listeners.push(listener)
  }

  /**
   * Loads the stored certificate; when there is none, or it does not cover the domains, or it is due,
   * issues one now (awaited, so a first boot serves its certificate from the first handshake). A
   * failure is logged and retried in the background; the gateway starts anyway.
   */
  async start(): Promise<void> {
    mkdirSync(this.config.storageDir, { recursive: true, mode: 0o700 })
    this.current = this.loadStored()
    if (this.current && !this.isDue(this.current.x509)) {
      this.logger.info(
        {
          domains: this.config.domains,
          notAfter: this.current.x509.validTo,
          serial: this.current.x509.serialNumber,
        },
        'acme certificate loaded from storage'
      )
      this.metrics.expiry.set(Date.parse(this.current.x509.validTo) / 1000)
      this.schedule(this.renewalDelay(this.current.x509))
      return
    }
    if (this.current) this.metrics.expiry.set(Date.parse(this.current.x509.validTo) / 1000)
    await this.run()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private loadStored(): (KeyPair & { x509: X509Certificate }) | undefined {
    let pair: KeyPair
    try {
      pair = {
        key: readFileSync(this.files.key, 'utf8'),
        cert: readFileSync(this.files.cert, 'utf8'),
      }
    } catch {
      return undefined
    }
    try {
      const x509 = new X509Certificate(pair.cert)
      const covered = this.config.domains.every((d) => x509.checkHost(d, { wildcards: true }))
      if (!covered) {
        this.logger.info(
          { domains: this.config.domains },
          'acme: stored certificate does not cover the configured domains; a new one is requested'
        )
        return undefined
      }
      return { ...pair, x509 }
    } catch (err) {
      this.logger.warn({ err: (err as Error).message }, 'acme: stored certificate unreadable')
      return undefined
    }
  }

  /** Due once `renewBeforeFraction` of the lifetime is left. */
  private renewalDelay(x509: X509Certificate): number {
    const from = Date.parse(x509.validFrom)
    const to = Date.parse(x509.validTo)
    const at = to - (to - from) * this.config.renewBeforeFraction
    return Math.max(0, at - Date.now())
  }

  private isDue(x509: X509Certificate): boolean {
    return this.renewalDelay(x509) === 0
  }

  private schedule(ms: number): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    const step = Math.min(ms, MAX_TIMER_MS)
    this.timer = setTimeout(() => {
      if (step < ms) this.schedule(ms - step)
      else void this.run()
    }, step)
    this.timer.unref()
  }

  private async run(): Promise<void> {
    const renewal = this.current !== undefined
    const started = Date.now()
    try {
      const pair = await this.issue()
      if (this.stopped) return
      const x509 = new X509Certificate(pair.cert)
      this.current = { ...pair, x509 }
      this.failures = 0
      this.metrics.acme.inc({ outcome: renewal ? 'renewed' : 'issued' })
      this.metrics.expiry.set(Date.parse(x509.validTo) / 1000)
      this.logger.info(
        {
          domains: this.config.domains,
          notAfter: x509.validTo,
          serial: x509.serialNumber,
          seconds: (Date.now() - started) / 1000,
        },
        renewal ? 'acme certificate renewed' : 'acme certificate issued'
      )
      for (const listener of this.listeners) listener(pair)
      this.schedule(this.renewalDelay(x509))
    } catch (err) {
      if (this.stopped) return
      this.failures += 1
      const wait = Math.min(
        this.config.retryMinSeconds * 2 ** (this.failures - 1),
        this.config.retryMaxSeconds
      )
      this.metrics.acme.inc({ outcome: 'failed' })
      this.logger.error(
        {
          domains: this.config.domains,
          directoryUrl: this.config.directoryUrl,
          err: errorText(err),
          attempt: this.failures,
          retryInSeconds: wait,
          serving: this.current
            ? `previous certificate, valid until ${this.current.x509.validTo}`
            : 'no certificate yet: TLS handshakes fail until one is issued',
        },
        renewal ? 'acme certificate renewal failed' : 'acme certificate issuance failed'
      )
      this.schedule(wait * 1000)
    }
  }

  private async accountKey(): Promise<Buffer> {
    try {
      return readFileSync(this.files.account)
    } catch {
      const key = await acme.crypto.createPrivateEcdsaKey()
      writePrivate(this.files.account, key)
      return key
    }
  }

  private async issue(): Promise<KeyPair> {
    const client = new acme.Client({
      directoryUrl: this.config.directoryUrl,
      accountKey: await this.accountKey(),
      backoffAttempts: 10,
      backoffMin: 1000,
      backoffMax: 10_000,
    })
    const [key, csr] = await acme.crypto.createCsr({
      commonName: this.config.domains[0]!,
      altNames: this.config.domains,
    })
    const cert = await client.auto({
      csr,
      email: this.config.email,
      termsOfServiceAgreed: true,
      challengePriority: ['http-01'],
      // The CA's validation is the check that counts; a self-check through the public name fails
      // behind NAT without hairpinning, a common homelab setup.
      skipChallengeVerification: true,
      challengeCreateFn: async (_authz, challenge, keyAuthorization) => {
        this.challenges.set(challenge.token, keyAuthorization)
      },
      challengeRemoveFn: async (_authz, challenge) => {
        this.challenges.delete(challenge.token)
      },
    })
    const pair = { key: key.toString(), cert }
    // The key first: a certificate on disk always has its key beside it.
    writePrivate(this.files.key, pair.key)
    writePrivate(this.files.cert, pair.cert)
    return pair
  }
}

/** Written to a temporary file then renamed: a crash never leaves half a key on disk. */
function writePrivate(file: string, content: string | Buffer): void {
  const tmp = `${file}.${process.pid}.tmp`
  writeFileSync(tmp, content, { mode: 0o600 })
  renameSync(tmp, file)
}

/** The CA's problem document says what failed (e.g. the challenge connection); keep it on one line. */
function errorText(err: unknown): string {
  const e = err as Error & { response?: { data?: unknown } }
  const detail = e.response?.data ? ` ${JSON.stringify(e.response.data)}` : ''
  return `${e.message ?? String(err)}${detail}`.slice(0, 1000)
}
