import type { Context } from 'hono'
import { ConfigError } from '../../src/config/load.js'
import type { Env } from '../../src/env.js'
import { refuse } from '../../src/auth/refusal.js'
import { decideAccess } from '../../src/auth/scopes.js'
import { UsageRecorder, type RecordedRoute } from '../../src/auth/usage.js'
import { definePolicy } from '../types.js'
import { usageStoreFor } from './learn.js'
import { scopesOptions } from './schema.js'

const NO_SCOPES: ReadonlySet<string> = new Set()
/** The websocket is not in the route table; learn mode records it under this one key. */
const SOCKET_ROUTE: RecordedRoute = { method: 'GET', path: '/api/socket.io' }

/**
 * Authorization. Gateway principals (gateway keys, JWTs) must hold the route's Immich permission
 * (src/auth/scopes.ts has the rule: exact, wildcard, `all`; admin-only routes need an exact grant);
 * a route not in the table gets 403. Native and shared-link principals are Immich's to judge.
 * An anonymous request to a known route that is not public gets 401 here, at the edge.
 *
 * Keys in learn mode have each call's permission and route template recorded (src/auth/usage.ts);
 * report-only keys have calls outside their scopes forwarded, logged and counted instead of refused.
 */
export const scopes = definePolicy({
  name: 'scopes',
  phase: 'authorize',
  options: scopesOptions,
  create(options, { config, deps, onClose }) {
    const { metrics, logger } = deps
    const { websocketPermission } = options
    if (!deps.catalogue.permissions.has(websocketPermission)) {
      throw new ConfigError(
        `policies.scopes.websocketPermission: "${websocketPermission}" is not an Immich permission of the route table`
      )
    }
    const recorder = new UsageRecorder(
      usageStoreFor(config, deps.redis),
      options.learn.flushSeconds * 1000,
      logger
    )
    onClose(() => recorder.close())

    return (c: Context<Env>, next) => {
      const principal = c.get('principal')
      if (principal.kind === 'gateway-key' || principal.kind === 'jwt') {
        const path = c.get('path')
        const route = c.get('route')?.route
        const decision = decideAccess(
          principal.scopes ?? NO_SCOPES,
          { path, route },
          websocketPermission
        )
        if (principal.learning && decision.permission !== null) {
          recorder.record(
            principal.client,
            decision.permission,
            route ?? SOCKET_ROUTE,
            decision.allowed
          )
        }
        if (!decision.allowed) {
          if (principal.reportOnly && decision.reason === 'missing_permission') {
            metrics.scopeWouldRefuse.inc({
              client: principal.client,
              permission: decision.permission!,
            })
            logger.warn(
              {
                requestId: c.get('requestId'),
                client: principal.client,
                permission: decision.permission,
                route: c.get('routeLabel'),
              },
              'scope would refuse (report-only key: forwarded)'
            )
            c.get('notes').wouldRefuse = decision.permission!
            return next()
          }
          throw refuse(metrics, decision.reason, 403, decision.message)
        }
      } else if (principal.kind === 'anonymous') {
        const route = c.get('route')?.route
        if (route !== undefined && !route.public)
          throw refuse(metrics, 'missing_credential', 401, 'Authentication required')
      }
      return next()
    }
  },
})
