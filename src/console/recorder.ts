/**
 * What the console shows about traffic, kept in process: per client its last request, counts over the
 * last 24 hours and its most recent refusals; for the gateway, requests and refusals per minute over
 * the last hour and Immich's probe latency. Fixed-size ring buffers only: memory is bounded by the
 * number of clients (names from the keys file and a few fixed labels), never by traffic.
 * Grafana (the Prometheus metrics) stays the place for history; this is what a console page needs.
 */
import type { Context } from 'hono'
import type { Env } from '../env.js'

/** Counts in fixed time buckets; a bucket from a previous lap of the ring reads as 0. */
export class RingCounter {
  private readonly stamps: Float64Array
  private readonly counts: Uint32Array

  constructor(
    readonly buckets: number,
    readonly bucketMs: number
  ) {
    this.stamps = new Float64Array(buckets).fill(-1)
    this.counts = new Uint32Array(buckets)
  }

  add(now: number, n = 1): void {
    const slot = Math.floor(now / this.bucketMs)
    const i = slot % this.buckets
    if (this.stamps[i] !== slot) {
      this.stamps[i] = slot
      this.counts[i] = 0
    }
    this.counts[i]! += n
  }

  /** The total over the whole window ending now. */
  sum(now: number): number {
    const oldest = Math.floor(now / this.bucketMs) - this.buckets + 1
    let total = 0
    for (let i = 0; i < this.buckets; i++) if (this.stamps[i]! >= oldest) total += this.counts[i]!
    return total
  }

  /** Oldest first, one value per bucket, the current one last. */
  series(now: number): number[] {
    const current = Math.floor(now / this.bucketMs)
    const out: number[] = []
    for (let slot = current - this.buckets + 1; slot <= current; slot++) {
      const i = ((slot % this.buckets) + this.buckets) % this.buckets
      out.push(this.stamps[i] === slot ? this.counts[i]! : 0)
    }
    return out
  }
}

/** A refusal as the console lists it: never a credential, only what was asked and why it was refused. */
export interface Refusal {
  /** epoch ms */
  at: number
  status: number
  method: string
  /** Route template (`/api/assets/{id}/thumbnail`), never a raw path. */
  route: string
  /** The permission the route needs, when known. */
  permission: string | null
  /** The gateway's error code (MISSING_PERMISSION, RATE_LIMITED...), when it refused itself. */
  code?: string
}

const DAY_BUCKETS = 288 // 5 minutes each
const FIVE_MINUTES = 300_000
const MAX_REFUSALS = 50
const MAX_CLIENTS = 1000

/** Per-client traffic over the last 24 hours. */
export class ClientStats {
  lastSeen?: number
  readonly requests = new RingCounter(DAY_BUCKETS, FIVE_MINUTES)
  readonly unauthorized = new RingCounter(DAY_BUCKETS, FIVE_MINUTES)
  readonly forbidden = new RingCounter(DAY_BUCKETS, FIVE_MINUTES)
  readonly limited = new RingCounter(DAY_BUCKETS, FIVE_MINUTES)
  readonly legacy = new RingCounter(DAY_BUCKETS, FIVE_MINUTES)
  /** Permissions this client used successfully, with the last time (what it needs, against what it holds). */
  readonly used = new Map<string, number>()
  /** The most recent refusals, newest last. */
  readonly refusals: Refusal[] = []
}

/** One probe of Immich (GET /api/server/ping), for the health chart. */
export interface Probe {
  at: number
  /** undefined: Immich did not answer. */
  ms?: number
}

/**
 * The console's view of traffic. One call per request (`record`, from the access record of the
 * pipeline) keeps it current; the console reads it when it renders a page.
 */
export class ConsoleRecorder {
  private readonly clients = new Map<string, ClientStats>()
  readonly requestsPerMinute = new RingCounter(60, 60_000)
  readonly refusalsPerMinute = new RingCounter(60, 60_000)
  readonly probes: Probe[] = []

  /** Records one finished request (its final status). Cheap: a few array writes. */
  record(c: Context<Env>, status: number, now = Date.now()): void {
    this.requestsPerMinute.add(now)
    const refused = status === 401 || status === 403 || status === 429
    if (refused) this.refusalsPerMinute.add(now)
    const client = c.get('principal').client
    const stats = this.stats(client)
    if (stats === undefined) return
    stats.lastSeen = now
    stats.requests.add(now)
    if (c.get('legacy') !== undefined) stats.legacy.add(now)
    const permission = c.get('route')?.route.permission ?? null
    if (!refused) {
      if (permission !== null && status < 400) stats.used.set(permission, now)
      return
    }
    ;(status === 401 ? stats.unauthorized : status === 403 ? stats.forbidden : stats.limited).add(
      now
    )
    const refusal: Refusal = {
      at: now,
      status,
      method: c.get('upstream').method,
      route: c.get('routeLabel'),
      permission,
    }
    const code = c.get('notes').error
    if (code !== undefined) refusal.code = code
    stats.refusals.push(refusal)
    if (stats.refusals.length > MAX_REFUSALS) stats.refusals.shift()
  }

  /** A client's stats; undefined for a name never seen (and for new names past the bound). */
  get(client: string): ClientStats | undefined {
    return this.clients.get(client)
  }

  /** Every client seen so far, gateway keys and the fixed labels (`native`, `anonymous`...). */
  names(): string[] {
    return [...this.clients.keys()]
  }

  /** Adds an Immich probe; the last hour's are kept. */
  probe(at: number, ms: number | undefined): void {
    this.probes.push(ms === undefined ? { at } : { at, ms })
    while (this.probes.length > 0 && this.probes[0]!.at < at - 3_600_000) this.probes.shift()
  }

  private stats(client: string): ClientStats | undefined {
    let stats = this.clients.get(client)
    if (stats === undefined && this.clients.size < MAX_CLIENTS) {
      stats = new ClientStats()
      this.clients.set(client, stats)
    }
    return stats
  }
}
