/**
 * Derives the gateway's route table from Immich's OpenAPI spec.
 *
 * The spec is reference input only (it is not committed); the output, config/immich-routes.json,
 * is our derived data. Regenerate with:
 *   npx tsx src/routing/generate-routes.ts <immich-openapi.json> config/immich-routes.json
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { z } from 'zod'
import type { RouteInfo } from '../env.js'

/** HTTP methods that name operations in an OpenAPI path item (other keys are not operations). */
const OPERATION_METHODS = [
  'get',
  'put',
  'post',
  'delete',
  'options',
  'head',
  'patch',
  'trace',
] as const

/**
 * Authenticated operations without `x-immich-permission` that Immich lets any API key call. The spec
 * cannot tell them from the ones that need `all`, so they are listed by operationId (see FACTS.md).
 */
const NO_PERMISSION_OPERATIONS: ReadonlySet<string> = new Set([
  'getMyApiKey',
  'validateAccessToken',
  'getWorkflowTriggers',
])

/** Immich serves every operation under /api; the spec's paths omit it (`servers: [{url: '/api'}]`). */
const API_PREFIX = '/api'

const securitySchema = z.array(z.record(z.string(), z.unknown()))

const parameterSchema = z.object({
  name: z.string().optional(),
  in: z.string().optional(),
})

const operationSchema = z.object({
  operationId: z.string().min(1),
  security: securitySchema.optional(),
  parameters: z.array(parameterSchema).optional(),
  deprecated: z.boolean().optional(),
  'x-immich-permission': z.string().min(1).nullable().optional(),
  'x-immich-admin-only': z.boolean().optional(),
})

const pathItemSchema = z.record(z.string(), z.unknown())

const specSchema = z.object({
  openapi: z.string().regex(/^3\./, 'expected an OpenAPI 3.x document'),
  info: z.object({ title: z.string(), version: z.string() }),
  security: securitySchema.optional(),
  paths: z.record(z.string().startsWith('/'), pathItemSchema),
})

export interface RouteTableFile {
  generatedFrom: { title: string; version: string }
  count: number
  routes: RouteInfo[]
}

type Parameter = z.infer<typeof parameterSchema>

function isSharedLinkParameter(p: Parameter): boolean {
  return p.in === 'query' && (p.name === 'key' || p.name === 'slug')
}

function parseSpec(spec: unknown): z.infer<typeof specSchema> {
  const result = specSchema.safeParse(spec)
  if (!result.success) {
    throw new Error(
      `Not an OpenAPI 3 document (expected openapi, info.title, info.version, paths):\n${z.prettifyError(result.error)}`
    )
  }
  return result.data
}

function buildRoutes(doc: z.infer<typeof specSchema>): RouteInfo[] {
  const routes: RouteInfo[] = []
  for (const [specPath, item] of Object.entries(doc.paths)) {
    const pathLevelParams = z.array(parameterSchema).optional().safeParse(item['parameters'])
    const sharedParams = pathLevelParams.success ? (pathLevelParams.data ?? []) : []
    for (const method of OPERATION_METHODS) {
      const raw = item[method]
      if (raw === undefined) continue
      const parsed = operationSchema.safeParse(raw)
      if (!parsed.success) {
        throw new Error(
          `Invalid operation ${method.toUpperCase()} ${specPath}:\n${z.prettifyError(parsed.error)}`
        )
      }
      const op = parsed.data
      // OpenAPI: an operation without `security` inherits the document's; none or [] means no auth.
      // An empty requirement object ({}) means anonymous access is allowed, so it is public too.
      const security = op.security ?? doc.security ?? []
      const isPublic =
        security.length === 0 || security.some((req) => Object.keys(req).length === 0)
      const declared = op['x-immich-permission'] ?? null
      const permission = isPublic
        ? null
        : (declared ?? (NO_PERMISSION_OPERATIONS.has(op.operationId) ? null : 'all'))
      routes.push({
        method: method.toUpperCase(),
        path: API_PREFIX + specPath,
        operationId: op.operationId,
        permission,
        adminOnly: op['x-immich-admin-only'] === true,
        public: isPublic,
        sharedLink: [...sharedParams, ...(op.parameters ?? [])].some(isSharedLinkParameter),
        deprecated: op.deprecated === true,
      })
    }
  }
  routes.sort((a, b) => compare(a.path, b.path) || compare(a.method, b.method))
  return routes
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/** One RouteInfo per operation of the spec, sorted by path then method. */
export function generateRouteTable(spec: unknown): RouteInfo[] {
  return buildRoutes(parseSpec(spec))
}

/** The file written to config/immich-routes.json. */
export function generateRouteTableFile(spec: unknown): RouteTableFile {
  const doc = parseSpec(spec)
  const routes = buildRoutes(doc)
  return {
    generatedFrom: { title: doc.info.title, version: doc.info.version },
    count: routes.length,
    routes,
  }
}

export function serializeRouteTableFile(file: RouteTableFile): string {
  return `${JSON.stringify(file, null, 2)}\n`
}

/** Reads an OpenAPI JSON file and writes the route table JSON (2-space pretty-printed). */
export function writeRouteTable(specFile: string, outFile: string): { count: number } {
  let spec: unknown
  try {
    spec = JSON.parse(readFileSync(specFile, 'utf8'))
  } catch (err) {
    throw new Error(`Cannot read OpenAPI spec ${specFile}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  const file = generateRouteTableFile(spec)
  writeFileSync(outFile, serializeRouteTableFile(file))
  return { count: file.count }
}

const invokedAs = process.argv[1]
if (invokedAs !== undefined && import.meta.url === pathToFileURL(resolve(invokedAs)).href) {
  const [specFile, outFile] = process.argv.slice(2)
  if (specFile === undefined || outFile === undefined) {
    console.error('usage: tsx src/routing/generate-routes.ts <immich-openapi.json> <out.json>')
    process.exit(2)
  }
  const { count } = writeRouteTable(specFile, outFile)
  console.log(`wrote ${count} routes to ${outFile}`)
}
