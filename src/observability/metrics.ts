import { readFileSync } from 'node:fs'
import { packageFile } from '../paths.js'
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client'
import { LeanCounter, LeanHistogram } from './lean-metrics.js'

const GATEWAY_VERSION: string = (
  JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string }
).version

/**
 * Buckets from a sub-millisecond cache hit to a minutes-long upload (seconds).
 * Immich's mobile apps give up after 60 s without progress; uploads can take far longer.
 */
export const DURATION_BUCKETS = [
  0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300,
  600, 1800,
]

/**
 * Every metric the gateway exports, on an injected registry (tests make their own).
 * Label values are bounded: route is a template or `unmatched`/`web`, client a configured name or
 * `native`/`anonymous`/`shared-link`, never a raw path or a credential.
 */
export class Metrics {
  readonly registry: Registry
  // Updated on every request: lean series (see lean-metrics.ts), read by the registry at scrape time.
  readonly requests: LeanCounter<'method' | 'route' | 'status' | 'client'>
  readonly requestDuration: LeanHistogram<'method' | 'route'>
  readonly upstreamDuration: LeanHistogram<'method' | 'route'>
  readonly requestBytes: LeanCounter<'route' | 'client'>
  readonly responseBytes: LeanCounter<'route' | 'client'>
  readonly clientTypes: LeanCounter<'type'>
  /** Requests being handled now: a plain number, read by the in-flight gauge at scrape time. */
  inFlightNow = 0
  readonly inFlight: Gauge
  readonly websocketsOpen: Gauge
  readonly websocketConnections: Counter<'client' | 'outcome'>
  readonly connectionsRefused: Counter<'reason'>
  readonly authFailures: Counter<'reason'>
  readonly jwksFailures: Counter<'issuer' | 'kind'>
  readonly scopeWouldRefuse: Counter<'client' | 'permission'>
  readonly rateLimited: Counter<'class' | 'client'>
  readonly rateLimitStoreErrors: Counter<'store'>
  readonly rateLimitInsurance: Gauge
  readonly loginBlocked: Counter<'kind'>
  readonly loginFailures: Counter<'kind'>
  readonly cacheRequests: LeanCounter<'result' | 'route'>
  readonly cacheStoredBytes: Gauge<'tier'>
  readonly cacheServedBytes: Counter
  readonly cacheEvictions: Counter
  readonly cacheCoalesced: Counter
  readonly legacyRequests: Counter<'rule' | 'client'>
  readonly upstreamErrors: Counter<'kind'>
  readonly redisUp: Gauge
  readonly upstreamUp: Gauge
  readonly breakerState: Gauge
  readonly breakerTransitions: Counter<'to'>
  readonly buildInfo: Gauge<'version' | 'node'>

  constructor(registry = new Registry(), { processMetrics = true } = {}) {
    this.registry = registry
    const r = [registry]
    if (processMetrics) collectDefaultMetrics({ register: registry, prefix: 'immich_gateway_' })
    this.requests = new LeanCounter({
      name: 'immich_gateway_requests_total',
      help: 'Requests answered, by method, route template, status and client.',
      labelNames: ['method', 'route', 'status', 'client'],
      registers: r,
    })
    this.requestDuration = new LeanHistogram({
      name: 'immich_gateway_request_duration_seconds',
      help: 'Time from arrival to the last byte sent (gateway total).',
      labelNames: ['method', 'route'],
      buckets: DURATION_BUCKETS,
      registers: r,
    })
    this.upstreamDuration = new LeanHistogram({
      name: 'immich_gateway_upstream_duration_seconds',
      help: 'Time from sending to Immich to its response headers.',
      labelNames: ['method', 'route'],
      buckets: DURATION_BUCKETS,
      registers: r,
    })
    const inFlightNow = (): number => this.inFlightNow
    this.inFlight = new Gauge({
      name: 'immich_gateway_requests_in_flight',
      help: 'Requests being handled now.',
      registers: r,
      collect() {
        this.set(inFlightNow())
      },
    })
    this.requestBytes = new LeanCounter({
      name: 'immich_gateway_request_bytes_total',
      help: 'Request body bytes received (declared Content-Length).',
      labelNames: ['route', 'client'],
      registers: r,
    })
    this.responseBytes = new LeanCounter({
      name: 'immich_gateway_response_bytes_total',
      help: 'Response body bytes sent.',
      labelNames: ['route', 'client'],
      registers: r,
    })
    this.websocketsOpen = new Gauge({
      name: 'immich_gateway_websockets_open',
      help: 'Websockets (socket.io) open through the gateway.',
      registers: r,
    })
    this.websocketConnections = new Counter({
      name: 'immich_gateway_websocket_connections_total',
      help: 'Websocket upgrades, by client and outcome.',
      labelNames: ['client', 'outcome'],
      registers: r,
    })
    this.connectionsRefused = new Counter({
      name: 'immich_gateway_connections_refused_total',
      help: 'Client connections closed by the gateway before a request: too many from one address, or a request head too slow or too large.',
      labelNames: ['reason'],
      registers: r,
    })
    for (const reason of ['per_address_limit', 'header_timeout', 'header_too_large'])
      this.connectionsRefused.inc({ reason }, 0)
    this.authFailures = new Counter({
      name: 'immich_gateway_auth_failures_total',
      help: 'Requests refused by authentication or authorization, by reason.',
      labelNames: ['reason'],
      registers: r,
    })
    this.jwksFailures = new Counter({
      name: 'immich_gateway_jwks_failures_total',
      help: "Failed fetches of an issuer's JWKS, by issuer and kind (unreachable, timeout, status, invalid).",
      labelNames: ['issuer', 'kind'],
      registers: r,
    })
    this.scopeWouldRefuse = new Counter({
      name: 'immich_gateway_scope_would_refuse_total',
      help: 'Calls of report-only keys outside their scopes: forwarded, but the scopes would have refused them.',
      labelNames: ['client', 'permission'],
      registers: r,
    })
    this.rateLimited = new Counter({
      name: 'immich_gateway_ratelimit_refusals_total',
      help: 'Requests refused with 429, by route class and client.',
      labelNames: ['class', 'client'],
      registers: r,
    })
    this.rateLimitStoreErrors = new Counter({
      name: 'immich_gateway_ratelimit_store_errors_total',
      help: 'Rate-limit store (Redis) errors.',
      labelNames: ['store'],
      registers: r,
    })
    this.rateLimitInsurance = new Gauge({
      name: 'immich_gateway_ratelimit_insurance_active',
      help: '1 while the in-memory insurance limiter stands in for Redis.',
      registers: r,
    })
    this.loginBlocked = new Counter({
      name: 'immich_gateway_login_blocked_total',
      help: 'Login / share-password attempts refused by the brute-force guard.',
      labelNames: ['kind'],
      registers: r,
    })
    this.loginFailures = new Counter({
      name: 'immich_gateway_login_failures_total',
      help: 'Failed logins / share-password attempts seen (upstream 401).',
      labelNames: ['kind'],
      registers: r,
    })
    this.cacheRequests = new LeanCounter({
      name: 'immich_gateway_cache_requests_total',
      help: 'Thumbnail cache lookups, by result (hit, miss, bypass, revalidated, stale).',
      labelNames: ['result', 'route'],
      registers: r,
    })
    this.cacheStoredBytes = new Gauge({
      name: 'immich_gateway_cache_stored_bytes',
      help: 'Bytes held by the thumbnail cache, by tier.',
      labelNames: ['tier'],
      registers: r,
    })
    this.cacheServedBytes = new Counter({
      name: 'immich_gateway_cache_served_bytes_total',
      help: 'Bytes served from the cache (bytes Immich did not have to send).',
      registers: r,
    })
    this.cacheEvictions = new Counter({
      name: 'immich_gateway_cache_evictions_total',
      help: 'Entries evicted from the in-memory cache to stay within its byte bound.',
      registers: r,
    })
    this.cacheCoalesced = new Counter({
      name: 'immich_gateway_cache_coalesced_total',
      help: 'Cache misses that waited for an identical in-flight upstream fetch.',
      registers: r,
    })
    this.legacyRequests = new Counter({
      name: 'immich_gateway_legacy_requests_total',
      help: 'Legacy (pre-rename) API calls translated or answered, by rule and client.',
      labelNames: ['rule', 'client'],
      registers: r,
    })
    this.upstreamErrors = new Counter({
      name: 'immich_gateway_upstream_errors_total',
      help: 'Failed exchanges with Immich, by kind (refused, reset, timeout, dns, other).',
      labelNames: ['kind'],
      registers: r,
    })
    this.clientTypes = new LeanCounter({
      name: 'immich_gateway_client_type_total',
      help: 'Requests by client type (web, ios, android, cli, other).',
      labelNames: ['type'],
      registers: r,
    })
    this.buildInfo = new Gauge({
      name: 'immich_gateway_build_info',
      help: 'Always 1; labels carry the gateway and Node.js versions.',
      labelNames: ['version', 'node'],
      registers: r,
    })
    this.buildInfo.set({ version: GATEWAY_VERSION, node: process.version }, 1)
    this.upstreamUp = new Gauge({
      name: 'immich_gateway_upstream_up',
      help: '1 when the last probe of Immich (GET /api/server/ping) succeeded, else 0.',
      registers: r,
    })
    this.breakerState = new Gauge({
      name: 'immich_gateway_upstream_breaker_state',
      help: 'Circuit breaker in front of Immich: 0 closed, 1 half-open, 2 open (answering 503 at once).',
      registers: r,
    })
    this.breakerTransitions = new Counter({
      name: 'immich_gateway_upstream_breaker_transitions_total',
      help: 'Circuit breaker transitions, by the state entered (open, half_open, closed).',
      labelNames: ['to'],
      registers: r,
    })
    // Present from the start: a dashboard shows 0 rather than "No data", and a rate has a base.
    for (const kind of ['refused', 'reset', 'timeout', 'dns', 'other'])
      this.upstreamErrors.inc({ kind }, 0)
    this.upstreamUp.set(0)
    this.breakerState.set(0)
    for (const to of ['open', 'half_open', 'closed']) this.breakerTransitions.inc({ to }, 0)
    this.redisUp = new Gauge({
      name: 'immich_gateway_redis_up',
      help: '1 when Redis is configured and reachable, 0 when configured and not, absent without Redis.',
      registers: r,
    })
  }
}

/** What the observe phase knows of one answered request. */
export interface RequestRecord {
  method: string
  route: string
  status: number
  client: string
  seconds: number
  bytesIn: number
  bytesOut: number
  deviceType: string | undefined
  userAgent: string | undefined
}

/** Records the RED metrics of one request (the observe phase). */
export function requestRecorder(metrics: Metrics): (r: RequestRecord) => void {
  // The client type is a pure function of two headers: remembered (bounded) rather than re-matched.
  const typeOf = new Map<string, Map<string, string>>()
  let remembered = 0
  const typeFor = (deviceType: string, userAgent: string): string => {
    let byAgent = typeOf.get(deviceType)
    let type = byAgent?.get(userAgent)
    if (type === undefined) {
      type = clientType(deviceType || undefined, userAgent || undefined)
      if (remembered < 10_000) {
        if (byAgent === undefined) typeOf.set(deviceType, (byAgent = new Map()))
        byAgent.set(userAgent, type)
        remembered++
      }
    }
    return type
  }
  return (r) => {
    const status = STATUS_TEXT[r.status] ?? String(r.status)
    metrics.requests.series(r.method, r.route, status, r.client).inc()
    metrics.requestDuration.series(r.method, r.route).observe(r.seconds)
    if (r.bytesIn) metrics.requestBytes.series(r.route, r.client).inc(r.bytesIn)
    if (r.bytesOut) metrics.responseBytes.series(r.route, r.client).inc(r.bytesOut)
    metrics.clientTypes.series(typeFor(r.deviceType ?? '', r.userAgent ?? '')).inc()
  }
}

const STATUS_TEXT: string[] = Array.from({ length: 600 }, (_, i) => String(i))

/** Client type from Immich's `deviceType` header and the User-Agent (bounded to five values). */
function clientType(deviceType: string | undefined, userAgent: string | undefined): string {
  const device = deviceType?.toLowerCase()
  if (device === 'ios') return 'ios'
  if (device === 'android') return 'android'
  const ua = userAgent ?? ''
  if (/Immich_(iOS|ios)/.test(ua) || /\bDart\b.*\bios\b/i.test(ua)) return 'ios'
  if (/Immich_Android|Dart/i.test(ua)) return 'android'
  if (/Mozilla\//.test(ua)) return 'web'
  if (/immich-cli|immich-go|curl|python|node|axios|Go-http-client|wget|got\b/i.test(ua))
    return 'cli'
  return 'other'
}
