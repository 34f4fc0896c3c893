import type { MiddlewareHandler } from 'hono'
import type { GatewayConfig } from '../src/config/schema.js'
import { ConfigError, describeIssues } from '../src/config/load.js'
import type { Deps } from '../src/deps.js'
import type { Env } from '../src/env.js'
import type { PhaseMiddlewares } from '../src/app.js'
import { PHASES, type PolicyDefinition } from './types.js'
import { legacyRoutes } from './legacy-routes/index.js'
import { apiKeyAuth } from './api-key-auth/index.js'
import { jwtAuth } from './jwt-auth/index.js'
import { nativeAuth } from './native-auth/index.js'
import { scopes } from './scopes/index.js'
import { loginGuard } from './login-guard/index.js'
import { rateLimit } from './rate-limit/index.js'
import { thumbnailCache } from './thumbnail-cache/index.js'

/** The registry: every policy, by the name its options go under in `policies:`. The only list. */
export const POLICIES: readonly PolicyDefinition[] = [
  legacyRoutes,
  apiKeyAuth,
  jwtAuth,
  nativeAuth,
  scopes,
  rateLimit,
  loginGuard,
  thumbnailCache,
]

/** Validates every policy's options (a bad one stops the boot naming `policies.<name>.<field>`). */
export function validatePolicyOptions(config: GatewayConfig): Map<string, unknown> {
  const known = new Set(POLICIES.map((p) => p.name))
  for (const name of Object.keys(config.policies)) {
    if (!known.has(name))
      throw new ConfigError(`policies.${name}: unknown policy (known: ${[...known].join(', ')})`)
  }
  const options = new Map<string, unknown>()
  for (const policy of POLICIES) {
    const raw = config.policies[policy.name]
    if (raw === false) continue
    const result = policy.options.safeParse(raw ?? {})
    if (!result.success)
      throw new ConfigError(describeIssues(result.error, `policies.${policy.name}`))
    options.set(policy.name, result.data)
  }
  return options
}

/** Builds each enabled policy once, in phase order. */
export async function buildPolicies(
  config: GatewayConfig,
  deps: Deps,
  onClose: (fn: () => void | Promise<void>) => void
): Promise<PhaseMiddlewares> {
  const options = validatePolicyOptions(config)
  const built: { phase: number; mw: MiddlewareHandler<Env> }[] = []
  for (const policy of POLICIES) {
    if (!options.has(policy.name)) continue
    const mw = await policy.create(options.get(policy.name), { config, deps, onClose })
    built.push({ phase: PHASES.indexOf(policy.phase), mw })
  }
  built.sort((a, b) => a.phase - b.phase)
  const legacyPhase = PHASES.indexOf('legacy')
  return {
    legacy: built.filter((b) => b.phase === legacyPhase).map((b) => b.mw),
    rest: built.filter((b) => b.phase !== legacyPhase).map((b) => b.mw),
  }
}
