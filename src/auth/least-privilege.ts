/**
 * From learned usage to least privilege: the default learning base, the usage report (`keys usage`),
 * the tightened scope list (`keys tighten`, written as a preset when one matches exactly) and the
 * concrete Immich permissions a scope list stands for (what a minted Immich key carries).
 */
import type { RouteInfo } from '../env.js'
import { packageFile } from '../paths.js'
import { loadRouteTable } from '../routing/route-table.js'
import type { ScopeResolver } from './scopes.js'
import { usageEntries, type ClientUsage, type UsageEntry } from './usage.js'

let shippedRoutes: RouteInfo[] | undefined
function routes(): RouteInfo[] {
  return (shippedRoutes ??= loadRouteTable(packageFile('config/immich-routes.json')))
}

/**
 * Every permission some non-admin route needs (`all` excluded): what a learning key may do unless
 * its `learn.base` says otherwise.
 */
export function nonAdminPermissions(table: readonly RouteInfo[] = routes()): Set<string> {
  const out = new Set<string>()
  for (const r of table)
    if (!r.adminOnly && r.permission !== null && r.permission !== 'all') out.add(r.permission)
  return out
}

/**
 * The concrete Immich permissions an expanded scope set stands for: wildcards become the permissions
 * they reach (not admin-only ones, as in the gateway's own rule); `all` stays `all`. Sorted.
 */
export function immichPermissions(
  expanded: ReadonlySet<string>,
  table: readonly RouteInfo[] = routes()
): string[] {
  if (expanded.has('all')) return ['all']
  const nonAdmin = nonAdminPermissions(table)
  const out = new Set<string>()
  for (const scope of expanded) {
    if (!scope.endsWith('.*')) {
      out.add(scope)
      continue
    }
    const prefix = scope.slice(0, -1)
    for (const p of nonAdmin) if (p.startsWith(prefix)) out.add(p)
  }
  return [...out].sort()
}

export interface PermissionUsage {
  permission: string
  granted: number
  refused: number
  first: number
  last: number
  /** `GET /api/albums`, most used first. */
  routes: string[]
}

export interface UsageReport {
  client: string
  /** Permissions called and granted, most used first. */
  used: PermissionUsage[]
  /** Permissions called only to be refused (outside the learning base, or report-only misses). */
  refused: PermissionUsage[]
  /** Permissions the key holds now (or while learning) that no call needed. Sorted. */
  unused: string[]
}

function byPermission(entries: UsageEntry[]): PermissionUsage[] {
  const out = new Map<string, PermissionUsage & { counts: Map<string, number> }>()
  for (const e of entries) {
    let p = out.get(e.permission)
    if (!p) {
      p = {
        permission: e.permission,
        granted: 0,
        refused: 0,
        first: e.first,
        last: e.last,
        routes: [],
        counts: new Map(),
      }
      out.set(e.permission, p)
    }
    p.granted += e.granted
    p.refused += e.refused
    p.first = Math.min(p.first, e.first)
    p.last = Math.max(p.last, e.last)
    const route = `${e.method} ${e.route}`
    p.counts.set(route, (p.counts.get(route) ?? 0) + e.granted + e.refused)
  }
  return [...out.values()]
    .map(({ counts, ...p }) => ({
      ...p,
      routes: [...counts].sort((a, b) => b[1] - a[1]).map(([r]) => r),
    }))
    .sort(
      (a, b) =>
        b.granted + b.refused - (a.granted + a.refused) || a.permission.localeCompare(b.permission)
    )
}

/** `held`: the permissions the key holds (its learning base while learning), concrete or `all`. */
export function usageReport(
  client: string,
  usage: ClientUsage,
  held: readonly string[]
): UsageReport {
  const all = byPermission(usageEntries(usage))
  const used = all.filter((p) => p.granted > 0)
  const usedNames = new Set(used.map((p) => p.permission))
  return {
    client,
    used,
    refused: all.filter((p) => p.granted === 0),
    unused: held.filter((p) => !usedNames.has(p)).sort(),
  }
}

export interface TightenPlan {
  /** What goes into the keys file: one preset when it matches the used set exactly, else the permissions. */
  scopes: string[]
  /** The concrete permissions, sorted. */
  permissions: string[]
  /** Against the key's current scopes (expanded to concrete permissions). */
  removed: string[]
  added: string[]
}

/**
 * The scopes a key needs: the permissions its learned calls were granted. Written as a preset when
 * one expands to exactly that set. `current`: what the key has now (its `scopes`, expanded).
 */
export function tightenPlan(
  report: UsageReport,
  current: ReadonlySet<string>,
  resolver: ScopeResolver,
  table: readonly RouteInfo[] = routes()
): TightenPlan {
  const permissions = report.used.map((p) => p.permission).sort()
  const wanted = new Set(permissions)
  let scopes = permissions
  for (const name of [...resolver.presets.keys()].sort()) {
    const preset = immichPermissions(resolver.expandPreset(name), table)
    if (preset.length === wanted.size && preset.every((p) => wanted.has(p))) {
      scopes = [name]
      break
    }
  }
  const before = new Set(immichPermissions(current, table))
  const held = before.has('all') ? new Set(['all']) : before
  return {
    scopes,
    permissions,
    removed: [...held].filter((p) => !wanted.has(p)).sort(),
    added: permissions.filter((p) => !held.has(p) && !held.has('all')),
  }
}
