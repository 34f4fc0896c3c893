/**
 * Scopes: Immich's own permission names (`asset.view`), wildcards over a name prefix (`asset.*`),
 * `all`, and presets (config/scopes.yaml) that stand for a list of those.
 *
 * What a set of scopes grants:
 * - a route whose permission is null needs nothing (public routes and the three Immich lets any
 *   credential call);
 * - `all` grants every route, admin-only ones included;
 * - the exact permission grants its routes;
 * - a wildcard `p.*` grants every permission starting with `p.` — except on admin-only routes, which
 *   need their permission named exactly (or `all`): `server.*` does not reach the admin-only
 *   `server.statistics`, and no wildcard ever turns a key into an admin key by accident;
 * - the websocket (`/api/socket.io`) needs the scopes policy's `websocketPermission` (default `all`,
 *   as Immich requires of an API key there: its events describe every asset change of the user).
 */
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { ConfigError } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'
import type { RouteInfo } from '../env.js'
import { packageFile } from '../paths.js'
import { isApiPath } from '../routing/path.js'
import { loadRouteTable } from '../routing/route-table.js'
import type { AuthFailureReason } from './refusal.js'

/** The shipped presets; env `GATEWAY_SCOPES_FILE` (resolved by loadConfig) or a policy's `presetsFile` points elsewhere. */
export const DEFAULT_PRESETS_FILE = packageFile('config/scopes.yaml')
const ROUTES_FILE = packageFile('config/immich-routes.json')

/** A scope list names something that is neither a permission, a wildcard of one, `all`, nor a preset. */
export class ScopeError extends Error {
  override name = 'ScopeError'
}

/** Every permission the route table names, and every dotted prefix a wildcard may use. */
export interface PermissionCatalogue {
  permissions: ReadonlySet<string>
  prefixes: ReadonlySet<string>
}

export function catalogueFromRoutes(routes: readonly RouteInfo[]): PermissionCatalogue {
  const permissions = new Set<string>(['all'])
  const prefixes = new Set<string>()
  for (const route of routes) {
    const p = route.permission
    if (p === null) continue
    permissions.add(p)
    for (let dot = p.indexOf('.'); dot !== -1; dot = p.indexOf('.', dot + 1))
      prefixes.add(p.slice(0, dot))
  }
  return { permissions, prefixes }
}

let shippedCatalogue: PermissionCatalogue | undefined

/** The catalogue of the shipped route table (config/immich-routes.json), read once. */
export function defaultCatalogue(): PermissionCatalogue {
  return (shippedCatalogue ??= catalogueFromRoutes(loadRouteTable(ROUTES_FILE)))
}

const PRESET_NAME = /^[a-z][a-z0-9-]{0,63}$/

const presetsFileSchema = z
  .object({
    presets: z
      .record(
        z.string().regex(PRESET_NAME, 'preset names are lower-case kebab-case (photo-frame)'),
        z
          .object({
            description: z
              .string()
              .optional()
              .describe('What a client with this preset can do, for `keys list` and humans.'),
            scopes: z
              .array(z.string().min(1))
              .min(1)
              .describe('Permissions, wildcards, `all` or other presets.'),
          })
          .strict()
      )
      .default({})
      .describe('Named scope lists.'),
  })
  .strict()

export interface Preset {
  description?: string
  scopes: readonly string[]
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}

/** Reads and validates a presets file against the catalogue. Throws ScopeError naming the field. */
export function loadPresets(file: string, catalogue: PermissionCatalogue): Map<string, Preset> {
  let raw: unknown
  try {
    raw = parseYaml(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new ScopeError(`${file}: ${firstLine((err as Error).message)}`)
  }
  const parsed = presetsFileSchema.safeParse(raw ?? {})
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      // A bad record key: zod nests the key's own issue.
      const message =
        issue.code === 'invalid_key' ? (issue.issues[0]?.message ?? issue.message) : issue.message
      return `${file}: ${issue.path.map(String).join('.') || '(root)'}: ${message}`
    })
    throw new ScopeError(lines.join('\n'))
  }
  const presets = new Map<string, Preset>(Object.entries(parsed.data.presets))
  for (const name of presets.keys()) {
    if (catalogue.permissions.has(name))
      throw new ScopeError(
        `${file}: presets.${name}: a preset cannot have the name of a permission`
      )
  }
  // Expanding every preset once checks its entries and rejects cycles.
  const resolver = new ScopeResolver(catalogue, presets)
  for (const name of presets.keys()) {
    try {
      resolver.expandPreset(name)
    } catch (err) {
      throw new ScopeError(`${file}: presets.${name}.scopes: ${(err as Error).message}`)
    }
  }
  return presets
}

/** Turns scope lists (as written in the keys file, a preset or a token) into the set a principal holds. */
export class ScopeResolver {
  constructor(
    readonly catalogue: PermissionCatalogue,
    readonly presets: ReadonlyMap<string, Preset>
  ) {}

  /** What a scope entry is, or undefined when it names nothing known. */
  kind(entry: string): 'all' | 'permission' | 'wildcard' | 'preset' | undefined {
    if (entry === 'all') return 'all'
    if (this.catalogue.permissions.has(entry)) return 'permission'
    if (entry.endsWith('.*') && this.catalogue.prefixes.has(entry.slice(0, -2))) return 'wildcard'
    if (this.presets.has(entry)) return 'preset'
    return undefined
  }

  /** Strict: an unknown entry throws a ScopeError naming it and its index. */
  expand(entries: readonly string[]): Set<string> {
    const out = new Set<string>()
    entries.forEach((entry, i) => this.add(entry, out, [], `[${i}]`))
    return out
  }

  /** A preset's permissions; throws on an unknown entry or a cycle (`a → b → a`). */
  expandPreset(name: string): Set<string> {
    const out = new Set<string>()
    this.add(name, out, [], '')
    return out
  }

  /** Lenient (scopes from a token, which also carry `openid`, `email`...): unknown entries are ignored. */
  expandKnown(entries: readonly string[]): Set<string> {
    const out = new Set<string>()
    for (const entry of entries) if (this.kind(entry) !== undefined) this.add(entry, out, [], '')
    return out
  }

  private add(entry: string, out: Set<string>, stack: string[], where: string): void {
    const kind = this.kind(entry)
    if (kind === undefined) {
      throw new ScopeError(
        `${where ? `${where}: ` : ''}unknown scope "${entry}" (expected an Immich permission such as asset.view, a wildcard such as asset.*, all, or a preset: ${[...this.presets.keys()].join(', ') || 'none defined'})`
      )
    }
    if (kind !== 'preset') {
      out.add(entry)
      return
    }
    if (stack.includes(entry))
      throw new ScopeError(
        `${where ? `${where}: ` : ''}preset cycle ${[...stack, entry].join(' → ')}`
      )
    for (const inner of this.presets.get(entry)!.scopes)
      this.add(inner, out, [...stack, entry], where)
  }
}

/** Builds a resolver from a presets file (default: the shipped one). */
export function loadScopeResolver(
  presetsFile?: string,
  catalogue = defaultCatalogue()
): ScopeResolver {
  const file = presetsFile ?? DEFAULT_PRESETS_FILE
  return new ScopeResolver(catalogue, loadPresets(file, catalogue))
}

/**
 * The scope entry in `scopes` that grants `permission`, or undefined. Wildcards are tried for every
 * dotted prefix (`asset.*` and `asset.edit.*` both grant `asset.edit.create`) but not on admin-only routes.
 */
export function grantingScope(
  scopes: ReadonlySet<string>,
  permission: string,
  adminOnly: boolean
): string | undefined {
  if (scopes.has('all')) return 'all'
  if (scopes.has(permission)) return permission
  if (adminOnly) return undefined
  for (let dot = permission.indexOf('.'); dot !== -1; dot = permission.indexOf('.', dot + 1)) {
    const wildcard = `${permission.slice(0, dot)}.*`
    if (scopes.has(wildcard)) return wildcard
  }
  return undefined
}

function isSocketIoPath(path: string): boolean {
  const lower = path.toLowerCase()
  return lower === '/api/socket.io' || lower.startsWith('/api/socket.io/')
}

export type AccessDecision =
  | { allowed: true; permission: string | null; grantedBy?: string; why: string }
  | {
      allowed: false
      permission: string | null
      reason: AuthFailureReason
      message: string
      why: string
    }

export interface AccessTarget {
  /** Canonical request path (no query). */
  path: string
  route?: RouteInfo
}

/** May a gateway principal holding `scopes` call this path/route? The one rule, shared by the policy and `routes explain`. */
export function decideAccess(
  scopes: ReadonlySet<string>,
  target: AccessTarget,
  websocketPermission: string
): AccessDecision {
  const { path, route } = target
  if (isSocketIoPath(path)) {
    const grantedBy = grantingScope(scopes, websocketPermission, false)
    if (grantedBy)
      return {
        allowed: true,
        permission: websocketPermission,
        grantedBy,
        why: `websocket: ${websocketPermission} granted by ${grantedBy}`,
      }
    return {
      allowed: false,
      permission: websocketPermission,
      reason: 'missing_permission',
      message: `Missing required permission: ${websocketPermission}`,
      why: `the websocket needs ${websocketPermission}`,
    }
  }
  if (!isApiPath(path))
    return { allowed: true, permission: null, why: 'web UI path (not /api): static assets pass' }
  if (route === undefined) {
    return {
      allowed: false,
      permission: null,
      reason: 'unknown_route',
      message: 'Route not allowed for this key',
      why: 'not an Immich API route (not in the route table)',
    }
  }
  const permission = route.permission
  if (permission === null)
    return {
      allowed: true,
      permission,
      why: route.public ? 'public route' : 'route needs no permission',
    }
  const grantedBy = grantingScope(scopes, permission, route.adminOnly)
  if (grantedBy)
    return { allowed: true, permission, grantedBy, why: `${permission} granted by ${grantedBy}` }
  const adminNote =
    route.adminOnly && !scopes.has(permission)
      ? ` (admin-only route: needs ${permission} itself or all; wildcards do not count)`
      : ''
  return {
    allowed: false,
    permission,
    reason: 'missing_permission',
    message: `Missing required permission: ${permission}`,
    why: `${permission} not granted${adminNote}`,
  }
}

/** Gateway principals are only safe with the scopes policy in place: without it every key reaches every route. */
export function requireScopesPolicy(config: GatewayConfig, policy: string): void {
  if (config.policies.scopes === false) {
    throw new ConfigError(
      `policies.${policy}: needs the scopes policy (policies.scopes is false, so every gateway principal would reach every route)`
    )
  }
}
