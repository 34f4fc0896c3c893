import { GatewayError } from '../errors.js'
import type { Metrics } from '../observability/metrics.js'

/** The `reason` label of immich_gateway_auth_failures_total: a small fixed set, never free text. */
export const AUTH_FAILURE_REASONS = [
  'missing_credential',
  'invalid_key',
  'expired_key',
  'ip_not_allowed',
  'invalid_token',
  'native_not_allowed',
  'missing_permission',
  'unknown_route',
] as const
export type AuthFailureReason = (typeof AUTH_FAILURE_REASONS)[number]

const REALM = 'Bearer realm="immich-gateway"'

/**
 * Counts the refusal and returns the error to throw. 401s carry `WWW-Authenticate` (RFC 6750 §3:
 * `error="invalid_token"` when a bearer token was presented and is bad); the GatewayError code is the
 * reason in SCREAMING_SNAKE, so the access log line says why.
 */
export function refuse(
  metrics: Metrics,
  reason: AuthFailureReason,
  status: 400 | 401 | 403,
  message: string
): GatewayError {
  metrics.authFailures.inc({ reason })
  const headers: Record<string, string> = {}
  if (status === 401)
    headers['WWW-Authenticate'] =
      reason === 'invalid_token' ? `${REALM}, error="invalid_token"` : REALM
  return new GatewayError(status, reason.toUpperCase(), message, headers)
}
