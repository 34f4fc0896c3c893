import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from './observability/metrics.js'
import type { Forwarder } from './upstream/forward.js'
import type { UpstreamHealth } from './upstream/health.js'
import type { PermissionCatalogue } from './auth/scopes.js'
import type { RouteMatcher } from './routing/route-table.js'

/** Everything stateful a phase may use, injected once so tests pass real local instances. */
export interface Deps {
  logger: Logger
  metrics: Metrics
  forwarder: Forwarder
  /** Immich's route table, loaded once (config/immich-routes.json or GatewayOptions.routesFile). */
  routes: RouteMatcher
  /** The Immich permissions and wildcard prefixes of that same table, for scopes and presets. */
  catalogue: PermissionCatalogue
  /** Immich's health: the probe (`immich_gateway_upstream_up`, /readyz) and the circuit breaker. */
  health: UpstreamHealth
  /** Present only when REDIS_URL is set. */
  redis?: Redis
}
