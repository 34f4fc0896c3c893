import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import type { Metrics } from './observability/metrics.js'
import type { Forwarder } from './upstream/forward.js'
import type { RouteMatcher } from './routing/route-table.js'

/** Everything stateful a phase may use, injected once so tests pass real local instances. */
export interface Deps {
  logger: Logger
  metrics: Metrics
  forwarder: Forwarder
  routes: RouteMatcher
  /** Present only when REDIS_URL is set. */
  redis?: Redis
}
