// The fake Immich's API keys with permissions, as Immich 3 has them: `POST /api/api-keys` mints a key
// with a list of permissions, `DELETE /api/api-keys/{id}` removes it, `GET /api/api-keys/me` shows the
// calling key, `POST /api/auth/logout` ends a session; and every request made with such a key is
// checked against the permission its route needs (config/immich-routes.json, the spec's
// x-immich-permission), `all` granting everything, admin-only routes also needing an admin user.
import { randomBytes, randomUUID } from 'node:crypto'
import type { RouteInfo } from '../../src/env.js'
import { packageFile } from '../../src/paths.js'
import {
  compileRouteTable,
  loadRouteTable,
  type RouteMatcher,
} from '../../src/routing/route-table.js'

export interface MintedKey {
  id: string
  name: string
  /** The secret (what `x-api-key` carries). */
  secret: string
  userId: string
  permissions: string[]
  createdAt: string
}

/** A caller as the fake authenticated it: the user, and the API key when one was used. */
export interface KeyCaller {
  user: { id: string; isAdmin: boolean }
  /** Permissions of the API key used; undefined for a session. `['all']` for the fake's fixed keys. */
  keyPermissions?: readonly string[]
  keyId?: string
}

export type Denial = { status: number; message: string }

let routeTable: { routes: RouteInfo[]; matcher: RouteMatcher; permissions: Set<string> } | undefined
function table() {
  if (!routeTable) {
    const routes = loadRouteTable(packageFile('config/immich-routes.json'))
    const permissions = new Set<string>(['all'])
    for (const r of routes) if (r.permission) permissions.add(r.permission)
    routeTable = { routes, matcher: compileRouteTable(routes), permissions }
  }
  return routeTable
}

/** The route-table operation a request is, if any. */
export function immichRoute(method: string, path: string): RouteInfo | undefined {
  return table().matcher.match(method, path)?.route
}

/** Immich's rule for an API key: the route's permission, or `all`; routes needing nothing pass. */
export function apiKeyDenial(route: RouteInfo, caller: KeyCaller): Denial | undefined {
  if (route.adminOnly && !caller.user.isAdmin) return { status: 403, message: 'Forbidden' }
  const perms = caller.keyPermissions
  if (perms === undefined || route.permission === null) return undefined
  if (perms.includes('all') || perms.includes(route.permission)) return undefined
  return { status: 403, message: `Missing required permission: ${route.permission}` }
}

export class FakeApiKeyStore {
  private readonly byId = new Map<string, MintedKey>()
  /** Sessions ended with POST /api/auth/logout (the fake's session token itself stays valid for others). */
  logouts = 0

  bySecret(secret: string): MintedKey | undefined {
    for (const key of this.byId.values()) if (key.secret === secret) return key
    return undefined
  }

  get(id: string): MintedKey | undefined {
    return this.byId.get(id)
  }

  list(): MintedKey[] {
    return [...this.byId.values()]
  }

  /** Immich's createApiKey: permissions must be known, and a key cannot grant more than its own. */
  create(
    caller: KeyCaller,
    name: string,
    permissions: unknown
  ): { ok: true; key: MintedKey } | ({ ok: false } & Denial) {
    if (
      !Array.isArray(permissions) ||
      permissions.length === 0 ||
      !permissions.every((p) => typeof p === 'string' && table().permissions.has(p))
    ) {
      return { ok: false, status: 400, message: 'permissions: each value must be a Permission' }
    }
    const own = caller.keyPermissions
    if (own && !own.includes('all') && !permissions.every((p: string) => own.includes(p)))
      return { ok: false, status: 400, message: 'Cannot grant permissions you do not have' }
    const key: MintedKey = {
      id: randomUUID(),
      name,
      secret: randomBytes(32).toString('base64url'),
      userId: caller.user.id,
      permissions: [...(permissions as string[])],
      createdAt: new Date().toISOString(),
    }
    this.byId.set(key.id, key)
    return { ok: true, key }
  }

  delete(caller: KeyCaller, id: string): boolean {
    const key = this.byId.get(id)
    if (!key || key.userId !== caller.user.id) return false
    this.byId.delete(id)
    return true
  }

  clear(): void {
    this.byId.clear()
    this.logouts = 0
  }
}

/** The DTO Immich answers for a key (never with its secret, except once on creation). */
export function apiKeyDto(key: MintedKey) {
  return {
    id: key.id,
    name: key.name,
    createdAt: key.createdAt,
    updatedAt: key.createdAt,
    permissions: key.permissions,
  }
}

/** A body for an operation the fake has no handler of: enough for a replayed client to go on. */
export function genericAnswer(method: string): { status: number; body: unknown } {
  if (method === 'POST') return { status: 201, body: { id: randomUUID() } }
  if (method === 'DELETE') return { status: 204, body: undefined }
  return { status: 200, body: {} }
}
