import type { Context } from 'hono'
import { ConfigError } from '../../src/config/load.js'
import type { Env } from '../../src/env.js'
import { refuse } from '../../src/auth/refusal.js'
import { decideAccess, defaultCatalogue } from '../../src/auth/scopes.js'
import { definePolicy } from '../types.js'
import { scopesOptions } from './schema.js'

const NO_SCOPES: ReadonlySet<string> = new Set()

/**
 * Authorization. Gateway principals (gateway keys, JWTs) must hold the route's Immich permission
 * (src/auth/scopes.ts has the rule: exact, wildcard, `all`; admin-only routes need an exact grant);
 * a route not in the table gets 403. Native and shared-link principals are Immich's to judge.
 * An anonymous request to a known route that is not public gets 401 here, at the edge.
 */
export const scopes = definePolicy({
  name: 'scopes',
  phase: 'authorize',
  options: scopesOptions,
  create(options, { deps }) {
    const { metrics } = deps
    const { websocketPermission } = options
    if (!defaultCatalogue().permissions.has(websocketPermission)) {
      throw new ConfigError(
        `policies.scopes.websocketPermission: "${websocketPermission}" is not an Immich permission of the route table`
      )
    }
    return (c: Context<Env>, next) => {
      const principal = c.get('principal')
      if (principal.kind === 'gateway-key' || principal.kind === 'jwt') {
        const decision = decideAccess(
          principal.scopes ?? NO_SCOPES,
          { path: c.get('path'), route: c.get('route')?.route },
          websocketPermission
        )
        if (!decision.allowed) throw refuse(metrics, decision.reason, 403, decision.message)
      } else if (principal.kind === 'anonymous') {
        const route = c.get('route')?.route
        if (route !== undefined && !route.public)
          throw refuse(metrics, 'missing_credential', 401, 'Authentication required')
      }
      return next()
    }
  },
})
