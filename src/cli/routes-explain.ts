/**
 * `immich-gateway routes explain METHOD PATH [--client NAME]`: what the gateway makes of a request —
 * the canonical path, the Immich route and its permission, and for a client whether its key may call
 * it and why. Uses the same rules as the running gateway (src/auth/scopes.ts decideAccess).
 */
import { resolve } from 'node:path'
import { keysFileFor, parseKeysText, readKeysFile } from '../auth/keys-file.js'
import { decideAccess, loadScopeResolver, type ScopeResolver } from '../auth/scopes.js'
import { loadConfig } from '../config/load.js'
import { GatewayError } from '../errors.js'
import { DEFAULT_ROUTES_FILE } from '../gateway.js'
import { canonicalPath, isApiPath } from '../routing/path.js'
import { compileRouteTable, loadRouteTable } from '../routing/route-table.js'
import { apiKeyAuthOptions } from '../../policies/api-key-auth/schema.js'
import { scopesOptions } from '../../policies/scopes/schema.js'
import { flag, registerCommand, type Parsed } from './index.js'

function out(line = ''): void {
  process.stdout.write(`${line}\n`)
}

const yes = (b: boolean) => (b ? 'yes' : 'no')

/** Which of the client's own scope entries brought in `token` (itself, or a preset containing it). */
function origin(token: string, raw: readonly string[], resolver: ScopeResolver): string {
  if (raw.includes(token)) return `scope ${token}`
  const via = raw.filter(
    (entry) => resolver.kind(entry) === 'preset' && resolver.expand([entry]).has(token)
  )
  return via.length
    ? `${token === 'all' || token.endsWith('.*') ? `${token} in ` : ''}preset ${via.join(', ')}`
    : `scope ${token}`
}

/** Options of the configured policies (GATEWAY_CONFIG), defaults when unset: the CLI sees what the gateway sees. */
function policyOptions(): { keysFile?: string; presetsFile?: string; websocketPermission: string } {
  const config = loadConfig()
  const apiKey = apiKeyAuthOptions.parse(config.policies['api-key-auth'] || {})
  const scopes = config.policies.scopes
  return {
    keysFile: keysFileFor(apiKey.keysFile, config.environment)?.file,
    presetsFile: apiKey.presetsFile ?? config.environment?.presetsFile,
    websocketPermission: scopesOptions.parse(scopes || {}).websocketPermission,
  }
}

const explain = (parsed: Parsed): number => {
  const [rawMethod, target] = parsed.positionals as [string, string]
  const values = { client: flag(parsed, 'client'), file: flag(parsed, 'file') }
  const method = rawMethod.toUpperCase()
  const q = target.indexOf('?')
  const rawPath = q === -1 ? target : target.slice(0, q)

  out(`${method} ${target}`)
  let path: string
  try {
    path = canonicalPath(rawPath)
  } catch (err) {
    if (!(err instanceof GatewayError)) throw err
    out(
      `  refused before routing: ${err.status} ${err.message} (dot segments, //, encoded slashes or control bytes)`
    )
    return 0
  }
  if (path !== rawPath) out(`  canonical path  ${path}`)
  const routes = compileRouteTable(loadRouteTable(DEFAULT_ROUTES_FILE))
  const isApi = isApiPath(path)
  const route = isApi && !path.includes(';') ? routes.match(method, path)?.route : undefined
  if (isApi && path.includes(';')) {
    out('  refused before routing: 400 Invalid request path (matrix parameters)')
    return 0
  }
  if (!isApi) out('  web UI path (not /api): no Immich route, passed to Immich as a static page')
  else if (!route)
    out(
      '  no Immich route: unknown to the route table (gateway keys and tokens get 403; others pass to Immich, which answers)'
    )
  else {
    out(
      `  route           ${route.method} ${route.path} (${route.operationId})${route.deprecated ? ' [deprecated]' : ''}`
    )
    out(`  permission      ${route.permission ?? 'none needed'}`)
    out(`  admin-only      ${yes(route.adminOnly)}`)
    out(`  public          ${yes(route.public)}`)
    out(`  shared-link     ${route.sharedLink ? 'yes (key/slug accepted)' : 'no'}`)
    out(
      `  no credential   ${route.public ? 'passes (public route)' : '401 Authentication required, at the gateway'}`
    )
  }

  if (values.client === undefined) return 0
  const options = policyOptions()
  const file = values.file ? resolve(values.file) : options.keysFile
  if (!file) throw new Error('no keys file: give --file')
  const { clients } = parseKeysText(readKeysFile(file, false).text, file)
  const client = clients.find((c) => c.name === values.client)
  if (!client) throw new Error(`no client named "${values.client}" in ${file}`)
  const resolver = loadScopeResolver(options.presetsFile)
  const scopes = resolver.expand(client.scopes)
  const decision = decideAccess(scopes, { path, route }, options.websocketPermission)
  const label = `  client ${client.name}`
  if (decision.allowed) {
    const by = decision.grantedBy
      ? `${decision.permission} granted by ${origin(decision.grantedBy, client.scopes, resolver)}`
      : decision.why
    out(`${label}: ALLOWED — ${by}`)
  } else {
    out(
      `${label}: DENIED (403 ${decision.message}) — ${decision.why}; its scopes: ${client.scopes.join(', ')}`
    )
  }
  if (client.expiresAt && Date.parse(client.expiresAt) <= Date.now())
    out(`  note: the key expired at ${client.expiresAt} (401 before any route check)`)
  if (client.allowFrom) out(`  note: only from ${client.allowFrom.join(', ')}`)
  return 0
}

registerCommand('routes explain', {
  summary:
    'What the gateway makes of a request: route, permission, and whether a client may call it',
  usage: 'METHOD PATH [--client NAME] [--file KEYS_FILE]',
  details: `METHOD PATH     the request, e.g. GET /api/assets/123/thumbnail
--client NAME   also decide for this client of the keys file
--file FILE     the keys file (default: the one the gateway uses)`,
  example: 'immich-gateway routes explain GET /api/albums --client frame',
  options: { client: { type: 'string' }, file: { type: 'string' } },
  positionals: { min: 2, max: 2 },
  run: explain,
})
