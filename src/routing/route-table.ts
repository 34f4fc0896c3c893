/**
 * The Immich route table (config/immich-routes.json) and its compiled matcher.
 *
 * Matching follows Express, which Immich runs on: static segments are case-insensitive, one trailing
 * slash is tolerated, a `{param}` matches one non-empty segment, and HEAD falls back to GET.
 * Static segments take precedence over params, with backtracking.
 */
import { readFileSync } from 'node:fs'
import { z } from 'zod'
import type { RouteInfo, RouteMatch } from '../env.js'

export interface RouteMatcher {
  /** `path` is the request path without the query string. Undefined when no operation matches. */
  match(method: string, path: string): RouteMatch | undefined
}

const routeInfoSchema = z.object({
  method: z.string().regex(/^[A-Z]+$/, 'upper-case HTTP method'),
  path: z.string().regex(/^\/api(\/[^/]+)+$/, 'path starting with /api and without empty segments'),
  operationId: z.string().min(1),
  permission: z.string().min(1).nullable(),
  adminOnly: z.boolean(),
  public: z.boolean(),
  sharedLink: z.boolean(),
  deprecated: z.boolean(),
})

const routeTableFileSchema = z
  .object({
    generatedFrom: z.object({ title: z.string(), version: z.string() }),
    count: z.number().int().nonnegative(),
    routes: z.array(routeInfoSchema),
  })
  .refine((f) => f.count === f.routes.length, {
    message: 'count does not match the number of routes',
  })

/** Reads and validates a route table written by writeRouteTable. */
export function loadRouteTable(file: string): RouteInfo[] {
  let raw: unknown
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new Error(`Cannot read route table ${file}: ${(err as Error).message}`, { cause: err })
  }
  const result = routeTableFileSchema.safeParse(raw)
  if (!result.success) {
    throw new Error(`Invalid route table ${file}:\n${z.prettifyError(result.error)}`)
  }
  return result.data.routes
}

/** The label metrics and logs use for a matched route: the template itself, `/api/assets/{id}/thumbnail`. */
export function routeTemplateLabel(route: RouteInfo): string {
  return route.path
}

interface Terminal {
  route: RouteInfo
  /** Names of the template's params, in path order (names may differ between routes sharing a node). */
  paramNames: string[]
}

interface TrieNode {
  /** Keyed by lower-cased segment. */
  statics: Map<string, TrieNode> | undefined
  param: TrieNode | undefined
  terminal: Terminal | undefined
}

function newNode(): TrieNode {
  return { statics: undefined, param: undefined, terminal: undefined }
}

const PARAM_SEGMENT = /^\{([A-Za-z_$][\w$]*)\}$/

function insert(root: TrieNode, route: RouteInfo): void {
  const segments = route.path.split('/').slice(1)
  const paramNames: string[] = []
  let node = root
  for (const segment of segments) {
    if (segment === '') throw new Error(`Route ${route.method} ${route.path}: empty path segment`)
    const param = PARAM_SEGMENT.exec(segment)
    if (param) {
      paramNames.push(param[1]!)
      node = node.param ??= newNode()
    } else {
      if (segment.includes('{') || segment.includes('}')) {
        throw new Error(
          `Route ${route.method} ${route.path}: a param must be a whole segment (${segment})`
        )
      }
      const key = segment.toLowerCase()
      const statics = (node.statics ??= new Map())
      let child = statics.get(key)
      if (child === undefined) {
        child = newNode()
        statics.set(key, child)
      }
      node = child
    }
  }
  if (node.terminal !== undefined) {
    const other = node.terminal.route
    throw new Error(
      `Ambiguous routes: ${route.method} ${route.path} (${route.operationId}) and ${other.method} ${other.path} (${other.operationId})`
    )
  }
  node.terminal = { route, paramNames }
}

/** Depth-first: the static child first, then the param child; `values` collects param segments. */
function walk(
  node: TrieNode,
  segments: string[],
  index: number,
  values: string[]
): Terminal | undefined {
  if (index === segments.length) return node.terminal
  const segment = segments[index]!
  if (segment === '') return undefined
  if (node.statics !== undefined) {
    let child = node.statics.get(segment)
    if (child === undefined) {
      const lower = segment.toLowerCase()
      if (lower !== segment) child = node.statics.get(lower)
    }
    if (child !== undefined) {
      const found = walk(child, segments, index + 1, values)
      if (found !== undefined) return found
    }
  }
  if (node.param !== undefined) {
    values.push(segment)
    const found = walk(node.param, segments, index + 1, values)
    if (found !== undefined) return found
    values.pop()
  }
  return undefined
}

/** Builds the per-method segment tries once; `match` is then a walk over the request's segments. */
export function compileRouteTable(routes: readonly RouteInfo[]): RouteMatcher {
  const tries = new Map<string, TrieNode>()
  for (const route of routes) {
    const method = route.method.toUpperCase()
    let root = tries.get(method)
    if (root === undefined) {
      root = newNode()
      tries.set(method, root)
    }
    insert(root, route)
  }
  const getRoot = tries.get('GET')

  function matchIn(root: TrieNode | undefined, segments: string[]): RouteMatch | undefined {
    if (root === undefined) return undefined
    const values: string[] = []
    const terminal = walk(root, segments, 1, values)
    if (terminal === undefined) return undefined
    const params: Record<string, string> = {}
    const names = terminal.paramNames
    for (let i = 0; i < names.length; i++) params[names[i]!] = values[i]!
    return { route: terminal.route, params }
  }

  return {
    match(method: string, path: string): RouteMatch | undefined {
      if (path.charCodeAt(0) !== 47 /* / */) return undefined
      // Express non-strict routing: one trailing slash is ignored (a second leaves an empty segment).
      const trimmed =
        path.length > 1 && path.charCodeAt(path.length - 1) === 47 ? path.slice(0, -1) : path
      const segments = trimmed.split('/')
      const root = tries.get(method) ?? tries.get(method.toUpperCase())
      const found = matchIn(root, segments)
      if (found !== undefined) return found
      // Express answers HEAD with the GET route when no HEAD route matched.
      if (getRoot !== undefined && root !== getRoot && method.toUpperCase() === 'HEAD')
        return matchIn(getRoot, segments)
      return undefined
    },
  }
}
