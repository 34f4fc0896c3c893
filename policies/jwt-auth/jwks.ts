import type { Logger } from 'pino'
import { createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose'
import type { Metrics } from '../../src/observability/metrics.js'
import { redactUrl } from '../../src/observability/logging.js'

/** Why a JWKS fetch failed: a bounded label for the metric and the log. */
type JwksFailure = 'unreachable' | 'timeout' | 'status' | 'invalid'

/** At most one log line per issuer and failure kind in this time; the metric counts every failure. */
const JWKS_LOG_INTERVAL_MS = 60_000

interface JwksOptions {
  issuer: string
  uri: string
  cacheMaxAgeMs: number
  cooldownMs: number
  timeoutMs: number
  metrics: Metrics
  logger: Logger
}

/** A JSON Web Key Set: `{keys: [{kty: ...}, ...]}`. */
function isJwkSet(text: string): boolean {
  let json: unknown
  try {
    json = JSON.parse(text)
  } catch {
    return false
  }
  const keys = (json as { keys?: unknown } | null)?.keys
  return (
    Array.isArray(keys) &&
    keys.every((k) => typeof k === 'object' && k !== null && typeof k.kty === 'string')
  )
}

/** A bounded description of a network error: its code (`ECONNREFUSED`, `ENOTFOUND`...), never a message. */
function errorCode(err: unknown): string {
  const e = err as { code?: unknown; name?: unknown; cause?: { code?: unknown } }
  for (const code of [e?.cause?.code, e?.code, e?.name]) if (typeof code === 'string') return code
  return 'error'
}

/**
 * jose's remote JWKS (cached, refetched for an unknown `kid`), with each failed fetch counted in
 * `immich_gateway_jwks_failures_total{issuer,kind}` and logged (at most one line per kind a minute):
 * a JWKS that is down, slow or garbage otherwise shows only as 401s. The fetch is observed through
 * jose's customFetch, which sees the failure before jose turns it into a generic verification error.
 */
export function observedRemoteJwks(options: JwksOptions): JWTVerifyGetKey {
  const { issuer, metrics, logger } = options
  const lastLogged = new Map<JwksFailure, number>()
  const suppressed = new Map<JwksFailure, number>()
  const uri = redactUrl(options.uri)

  const report = (kind: JwksFailure, detail: string): void => {
    metrics.jwksFailures.inc({ issuer, kind })
    const now = Date.now()
    const last = lastLogged.get(kind)
    if (last !== undefined && now - last < JWKS_LOG_INTERVAL_MS) {
      suppressed.set(kind, (suppressed.get(kind) ?? 0) + 1)
      return
    }
    lastLogged.set(kind, now)
    const more = suppressed.get(kind) ?? 0
    suppressed.delete(kind)
    logger.warn(
      { issuer, kind, detail, jwksUri: uri, ...(more ? { suppressed: more } : {}) },
      "JWKS fetch failed: this issuer's tokens are refused until it succeeds"
    )
  }

  const observed = async (input: string | URL, init: RequestInit): Promise<Response> => {
    const timedOut = () => init.signal?.aborted === true
    const failed = (err: unknown) =>
      timedOut()
        ? report('timeout', `no answer within ${options.timeoutMs} ms`)
        : report('unreachable', errorCode(err))
    let res: Response
    try {
      res = await fetch(input, init)
    } catch (err) {
      failed(err)
      throw err
    }
    if (res.status !== 200) {
      report('status', `HTTP ${res.status}`)
      await res.body?.cancel()
      return new Response(null, { status: res.status })
    }
    let text: string
    try {
      text = await res.text()
    } catch (err) {
      failed(err)
      throw err
    }
    if (!isJwkSet(text)) report('invalid', 'not a JSON Web Key Set')
    return new Response(text, { status: 200, headers: res.headers })
  }

  return createRemoteJWKSet(new URL(options.uri), {
    cacheMaxAge: options.cacheMaxAgeMs,
    cooldownDuration: options.cooldownMs,
    timeoutDuration: options.timeoutMs,
    [customFetch]: observed,
  })
}
