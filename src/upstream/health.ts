import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { Agent } from 'undici'
import type { GatewayConfig } from '../config/schema.js'
import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'
import type { UpstreamErrorKind } from './forward.js'

/** Shows in Immich's logs what these requests are. */
const USER_AGENT = 'immich-gateway-health/1'

/** The breaker's states; the gauge exports them as 0, 1, 2. */
export type BreakerState = 'closed' | 'half_open' | 'open'
const STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 }

/**
 * What `admit` grants: `REFUSED` (answer 503 now), `PASS` (go ahead) or `TRIAL` (the one request a
 * half-open breaker lets through). Plain numbers: the forwarder asks once per request.
 */
export const REFUSED = 0
export const PASS = 1
export const TRIAL = 2
export type Admission = typeof REFUSED | typeof PASS | typeof TRIAL

/** Failures that say Immich cannot be reached at all (a reset or a bad answer says it can). */
export function isConnectFailure(kind: UpstreamErrorKind): boolean {
  return kind === 'refused' || kind === 'timeout' || kind === 'dns'
}

export interface Readiness {
  ok: boolean
  detail: Record<string, string>
}

export interface UpstreamHealthDeps {
  metrics: Metrics
  logger: Logger
}

/**
 * Immich's health as the gateway sees it: a probe of `GET /api/server/ping` every
 * `upstream.health.intervalSeconds` (its own one-connection agent, so a saturated pool never delays
 * it), and a circuit breaker over the requests. The breaker opens after `failureThreshold`
 * consecutive connect failures or timeouts, or at once when a probe fails; while open every request
 * is answered 503 with Retry-After without touching the network. A successful probe makes it
 * half-open: one trial request goes through, and closes it (success) or opens it again (failure).
 */
export class UpstreamHealth {
  /** The last probe's verdict (false until the first probe answered). */
  up = false
  /** Why the last probe failed (`refused`, `timeout`, `status 502`...), for /readyz. */
  lastProbe = 'not probed yet'
  private state: BreakerState = 'closed'
  private failures = 0
  private trialInFlight = false
  private timer: ReturnType<typeof setTimeout> | undefined
  private probing: Promise<void> | undefined
  private firstProbe: Promise<void> | undefined
  private closed = false
  private readonly agent: Agent
  private readonly origin: string
  private readonly intervalMs: number
  private readonly timeoutMs: number
  private readonly threshold: number
  private readonly enabled: boolean
  /** Seconds a refused client should wait: one probe interval, the soonest the answer can change. */
  readonly retryAfter: string

  constructor(
    config: GatewayConfig,
    private readonly deps: UpstreamHealthDeps
  ) {
    const { health, breaker, url } = config.upstream
    this.origin = new URL(url).origin
    this.intervalMs = health.intervalSeconds * 1000
    this.timeoutMs = health.timeoutSeconds * 1000
    this.threshold = breaker.failureThreshold
    this.enabled = breaker.enabled
    this.retryAfter = String(Math.max(1, Math.ceil(health.intervalSeconds)))
    this.agent = new Agent({
      connections: 1,
      keepAliveTimeout: 4000,
      connect: { timeout: this.timeoutMs },
    })
  }

  /** Starts probing (the first probe at once). */
  start(): void {
    this.firstProbe = this.probe()
  }

  get breakerState(): BreakerState {
    return this.state
  }

  /** Would a request be refused now (open, or half-open with its one trial out)? */
  get refusing(): boolean {
    return this.state === 'open' || (this.state === 'half_open' && this.trialInFlight)
  }

  /** May a request go to Immich now? Call exactly one of succeeded/failed/released afterwards. */
  admit(): Admission {
    if (this.state === 'closed') return PASS
    if (this.state === 'open' || this.trialInFlight) return REFUSED
    this.trialInFlight = true
    return TRIAL
  }

  /** The 503 a refused request is answered with (Immich's error shape, rendered by the pipeline). */
  refusal(): GatewayError {
    return new GatewayError(503, 'UPSTREAM_DOWN', 'Immich is unavailable, try again shortly', {
      'retry-after': this.retryAfter,
    })
  }

  /** Immich answered (response headers came). */
  succeeded(admission: Admission): void {
    if (admission === TRIAL) {
      this.trialInFlight = false
      if (this.state === 'half_open') this.transition('closed', 'trial request answered')
    }
    if (this.state === 'closed') this.failures = 0
  }

  /** The exchange failed before an answer; only connect failures and timeouts count. */
  failed(admission: Admission, kind: UpstreamErrorKind): void {
    if (!isConnectFailure(kind) || !this.enabled) return this.released(admission)
    if (admission === TRIAL) {
      this.trialInFlight = false
      if (this.state === 'half_open')
        return this.transition('open', `trial request failed (${kind})`)
    }
    if (this.state === 'closed' && ++this.failures >= this.threshold)
      this.transition('open', `${this.failures} consecutive failures (${kind})`)
  }

  /** Neither (the client went away first): a trial is given back for the next request. */
  released(admission: Admission): void {
    if (admission === TRIAL) this.trialInFlight = false
  }

  /** /readyz: the last probe (waiting for the first one), and Redis when configured. */
  async readiness(redis?: Redis): Promise<Readiness> {
    if (this.firstProbe) await this.firstProbe
    const detail: Record<string, string> = { upstream: this.up ? 'ok' : this.lastProbe }
    let ok = this.up
    if (redis) {
      try {
        await redis.ping()
        detail.redis = 'ok'
      } catch {
        detail.redis = 'unreachable'
        ok = false
      }
    }
    return { ok, detail }
  }

  /** Stops probing and releases the probe's connection. */
  async close(): Promise<void> {
    this.closed = true
    clearTimeout(this.timer)
    await this.probing
    await this.agent.close()
  }

  private probe(): Promise<void> {
    this.probing = this.ping().then((verdict) => {
      this.probing = undefined
      if (this.closed) return
      this.record(verdict)
      this.timer = setTimeout(() => void this.probe(), this.intervalMs)
      this.timer.unref()
    })
    return this.probing
  }

  private async ping(): Promise<string> {
    try {
      const res = await this.agent.request({
        origin: this.origin,
        path: '/api/server/ping',
        method: 'GET',
        headers: { 'user-agent': USER_AGENT },
        // A new connection each time: the probe checks that Immich accepts connections, and holds
        // no idle socket between probes.
        reset: true,
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
        signal: AbortSignal.timeout(this.timeoutMs),
      })
      await res.body.dump()
      return res.statusCode === 200 ? 'ok' : `status ${res.statusCode}`
    } catch (err) {
      const e = err as { code?: string; name?: string; cause?: { code?: string } }
      if (e.name === 'TimeoutError' || e.name === 'AbortError') return 'timeout'
      const code = e.code ?? e.cause?.code ?? ''
      if (code === 'ECONNREFUSED') return 'refused'
      if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT') return 'timeout'
      return code || 'unreachable'
    }
  }

  private record(verdict: string): void {
    const up = verdict === 'ok'
    if (up !== this.up || verdict !== this.lastProbe) {
      if (up) this.deps.logger.info('upstream probe: Immich answers')
      else this.deps.logger.warn({ probe: verdict }, 'upstream probe: Immich does not answer')
    }
    this.up = up
    this.lastProbe = verdict
    this.deps.metrics.upstreamUp.set(up ? 1 : 0)
    if (!this.enabled) return
    if (!up && this.state !== 'open') this.transition('open', `probe failed (${verdict})`)
    else if (up && this.state === 'open') this.transition('half_open', 'probe succeeded')
    // A second good probe closes it too: a quiet gateway gets no trial request, and a trial that is
    // a long upload answers only at its end.
    else if (up && this.state === 'half_open') this.transition('closed', 'second probe succeeded')
  }

  private transition(to: BreakerState, reason: string): void {
    const from = this.state
    this.state = to
    this.failures = 0
    if (to !== 'half_open') this.trialInFlight = false
    this.deps.metrics.breakerState.set(STATE_VALUE[to])
    this.deps.metrics.breakerTransitions.inc({ to })
    const line = { breaker: to, from, reason }
    if (to === 'open') this.deps.logger.warn(line, 'upstream breaker open: answering 503 at once')
    else this.deps.logger.info(line, `upstream breaker ${to.replace('_', '-')}`)
  }
}

/** The gateway's upstream health: built once per gateway (src/gateway.ts), then `start()`ed. */
export function createUpstreamHealth(
  config: GatewayConfig,
  deps: UpstreamHealthDeps
): UpstreamHealth {
  return new UpstreamHealth(config, deps)
}
