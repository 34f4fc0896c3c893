import type { MiddlewareHandler } from 'hono'
import type { GatewayConfig } from '../src/config/schema.js'
import { ConfigError, describeIssues } from '../src/config/load.js'
import type { Deps } from '../src/deps.js'
import type { Env } from '../src/env.js'
import type { PolicyDefinition } from './types.js'
import { legacyRoutes } from './legacy-routes/index.js'
import { apiKeyAuth } from './api-key-auth/index.js'
import { jwtAuth } from './jwt-auth/index.js'
import { nativeAuth } from './native-auth/index.js'
import { scopes } from './scopes/index.js'
import { albumBinding } from './album-binding/index.js'
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
  albumBinding,
  rateLimit,
  loginGuard,
  thumbnailCache,
]

/**
 * Validates every policy's options (bad ones stop the boot naming `policies.<name>.<field>`, all of
 * them in one ConfigError).
 */
export function validatePolicyOptions(config: GatewayConfig): Map<string, unknown> {
  const known = new Set(POLICIES.map((p) => p.name))
  const problems: string[] = []
  for (const name of Object.keys(config.policies)) {
    if (!known.has(name))
      problems.push(`policies.${name}: unknown policy (known: ${[...known].join(', ')})`)
  }
  const options = new Map<string, unknown>()
  for (const policy of POLICIES) {
    const raw = config.policies[policy.name]
    if (raw === false) continue
    const result = policy.options.safeParse(raw ?? {})
    if (!result.success) problems.push(describeIssues(result.error, `policies.${policy.name}`))
    else options.set(policy.name, result.data)
  }
  if (problems.length) throw new ConfigError(problems.join('\n'))
  return options
}

/** The enabled policies' middlewares by name; src/pipeline.ts places them, in its own order. */
export type PolicyMiddlewares = ReadonlyMap<string, MiddlewareHandler<Env>>

/** Builds each enabled policy once. */
export async function buildPolicies(
  config: GatewayConfig,
  deps: Deps,
  onClose: (fn: () => void | Promise<void>) => void
): Promise<PolicyMiddlewares> {
  const options = validatePolicyOptions(config)
  const built = new Map<string, MiddlewareHandler<Env>>()
  for (const policy of POLICIES) {
    if (!options.has(policy.name)) continue
    built.set(policy.name, await policy.create(options.get(policy.name), { config, deps, onClose }))
  }
  return built
}
