import { ConfigError } from '../config/load.js'
import type { Deps } from '../deps.js'
import type { RouteInfo } from '../env.js'
import type { RouteMatcher } from '../routing/route-table.js'
import {
  createLimiter,
  createLocalLimiter,
  type Budget,
  type Limiter,
  type StoreOptions,
} from './limiter.js'

/** A route class as configured: a budget and, except for the fallback class, the routes it covers. */
export interface RouteClassSpec {
  points: number
  durationSeconds: number
  methods?: readonly string[]
  routes?: readonly string[]
}

/** Per-client budget changes: a partial budget, or `false` for no limit on that class. */
export type ClientOverride = Partial<Budget> | false

/** A budget in force for a request, with its `RateLimit-Policy` field value ready. */
export interface ClassLimit {
  limiter: Limiter
  /** draft-ietf-httpapi-ratelimit-headers-10 §3: `"api";q=600;w=60`. */
  policyField: string
  /**
   * The address ceiling for principals the gateway cannot verify (native credentials, shared links):
   * anyone can make up a new credential, so each also spends from its client address's budget
   * (per replica, in memory).
   */
  address?: { name: string; limiter: Limiter; policyField: string }
}

export interface CompiledClass {
  name: string
  /** The class budget, for clients without an override. */
  limit: ClassLimit
  /** Client name → its own budget, or null for unlimited. */
  perClient: ReadonlyMap<string, ClassLimit | null>
}

export interface ClassifierOptions {
  classes: Record<string, RouteClassSpec>
  /** The class of every /api request no other class claims. */
  fallback: string
  clients: Record<string, Record<string, ClientOverride>>
  /** Limit web UI paths (routeLabel `web`) under the fallback class. */
  webUi: boolean
  /** Address ceiling = class budget × this, for unverified principals; 0 for none. */
  addressFactor: number
  store: StoreOptions
  /** Where config errors point: `policies.rate-limit`. */
  configPath: string
}

/** A template's placeholders filled, so the route table can say whether the template is one of its own. */
function samplePath(template: string): string {
  return template.replace(/\{[^}]+\}/g, '0')
}

function assertKnownRoute(
  routes: RouteMatcher,
  methods: readonly string[],
  template: string,
  where: string
): void {
  const path = samplePath(template)
  const known = methods.some((method) => routes.match(method, path)?.route.path === template)
  if (!known)
    throw new ConfigError(
      `${where}: no Immich route ${methods.join('/')} ${template} in the route table`
    )
}

/**
 * Route → class lookup, built once: a map from route template to method to class, so a request costs
 * two map lookups. A (method, template) pair claimed by two classes stops the boot.
 */
export class RouteClassifier {
  private readonly byTemplate = new Map<string, Map<string, CompiledClass>>()
  private readonly fallback: CompiledClass
  private readonly webUi: boolean

  constructor(options: ClassifierOptions, deps: Deps) {
    const { configPath, store } = options
    const compiled = new Map<string, CompiledClass>()
    for (const [name, spec] of Object.entries(options.classes)) {
      const where = `${configPath}.classes.${name}`
      const build = (budget: Budget, prefix: string) =>
        classLimit(name, budget, prefix, options.addressFactor, store, deps)
      const limit = build(spec, `${store.keyPrefix}:${name}`)
      const perClient = new Map<string, ClassLimit | null>()
      for (const [client, overrides] of Object.entries(options.clients)) {
        const override = overrides[name]
        if (override === undefined) continue
        perClient.set(
          client,
          override === false
            ? null
            : build({ ...spec, ...override }, `${store.keyPrefix}:${name}@${client}`)
        )
      }
      const cls: CompiledClass = { name, limit, perClient }
      compiled.set(name, cls)
      if (name === options.fallback) continue
      const methods = spec.methods ?? []
      ;(spec.routes ?? []).forEach((template, i) => {
        assertKnownRoute(deps.routes, methods, template, `${where}.routes[${i}]`)
        let byMethod = this.byTemplate.get(template)
        if (!byMethod) this.byTemplate.set(template, (byMethod = new Map()))
        for (const method of methods) {
          const taken = byMethod.get(method)
          if (taken)
            throw new ConfigError(
              `${where}.routes[${i}]: ${method} ${template} is already in class "${taken.name}"`
            )
          byMethod.set(method, cls)
        }
      })
    }
    for (const [client, overrides] of Object.entries(options.clients)) {
      for (const name of Object.keys(overrides)) {
        if (!compiled.has(name)) {
          throw new ConfigError(
            `${configPath}.clients.${client}.${name}: unknown route class (known: ${[...compiled.keys()].join(', ')})`
          )
        }
      }
    }
    const fallback = compiled.get(options.fallback)
    if (!fallback)
      throw new ConfigError(
        `${configPath}.classes.${options.fallback}: the fallback class is missing`
      )
    this.fallback = fallback
    this.webUi = options.webUi
  }

  /**
   * The class of a request: by its matched route template and method, else the fallback for /api
   * paths; undefined (not limited) for web UI paths unless `webUi` is on.
   */
  classify(
    method: string,
    route: RouteInfo | undefined,
    routeLabel: string
  ): CompiledClass | undefined {
    if (route) return this.byTemplate.get(route.path)?.get(method) ?? this.fallback
    if (routeLabel === 'web') return this.webUi ? this.fallback : undefined
    return this.fallback
  }
}

function classLimit(
  name: string,
  budget: Budget,
  keyPrefix: string,
  addressFactor: number,
  store: StoreOptions,
  deps: Deps
): ClassLimit {
  const { points, durationSeconds } = budget
  const limit: ClassLimit = {
    limiter: createLimiter({ points, durationSeconds }, { ...store, keyPrefix }, deps),
    policyField: `"${name}";q=${points};w=${durationSeconds}`,
  }
  if (addressFactor > 0) {
    const addressPoints = Math.ceil(points * addressFactor)
    const addressName = `${name}-address`
    limit.address = {
      name: addressName,
      // Counted per replica, in memory: a coarse guard (a multiple of the budget) that need not be exact
      // across replicas, and a second Redis round trip per request would double the limiter's cost.
      limiter: createLocalLimiter(
        { points: addressPoints, durationSeconds },
        `${keyPrefix}:address`
      ),
      policyField: `${limit.policyField}, "${addressName}";q=${addressPoints};w=${durationSeconds}`,
    }
  }
  return limit
}
