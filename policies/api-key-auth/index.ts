import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import { ConfigError } from '../../src/config/load.js'
import type { Env, Principal } from '../../src/env.js'
import {
  bearerToken,
  credentialQueryParams,
  injectUpstreamKey,
  upstreamView,
} from '../../src/auth/credentials.js'
import { GATEWAY_KEY_PREFIX } from '../../src/auth/keygen.js'
import { isLearning, keysFileFor, KeysFileError } from '../../src/auth/keys-file.js'
import { KeysStore } from '../../src/auth/keys-store.js'
import { refuse } from '../../src/auth/refusal.js'
import { GatewayError } from '../../src/errors.js'
import { requireScopesPolicy, ScopeError } from '../../src/auth/scopes.js'
import { definePolicy } from '../types.js'
import { apiKeyAuthOptions } from './schema.js'

type Presented = { key: string; via: 'header' | 'bearer' | 'query' }

/** Query parameters that carry a gateway key (lower-cased, as credentialParamName reads names). */
const KEY_PARAMS: ReadonlySet<string> = new Set(['apikey', 'x-api-key'])

/**
 * The gateway keys on a request: `x-api-key`, `Authorization: Bearer`, and (for URL-only clients)
 * the `apiKey` / `x-api-key` query parameter. Only `igw_` values count; anything else is a native
 * Immich credential and is left to native-auth.
 */
function presentedKeys(headers: IncomingHttpHeaders, query: string): Presented[] {
  const found: Presented[] = []
  const header = headers['x-api-key']
  if (typeof header === 'string' && header.startsWith(GATEWAY_KEY_PREFIX))
    found.push({ key: header, via: 'header' })
  const bearer = bearerToken(headers)
  if (bearer?.startsWith(GATEWAY_KEY_PREFIX)) found.push({ key: bearer, via: 'bearer' })
  // A key in the query is plain `igw_` or percent-encoded; an encoded one that slips past this check
  // is refused by native-auth (it never hands an igw_ value to Immich). Names are read as the
  // stripping and the log redaction read them (credentialParamName), in every spelling.
  if (query.length > 1 && query.indexOf(GATEWAY_KEY_PREFIX) !== -1) {
    for (const { value } of credentialQueryParams(query, KEY_PARAMS)) {
      if (value.startsWith(GATEWAY_KEY_PREFIX)) found.push({ key: value, via: 'query' })
    }
  }
  return found
}

/**
 * Authenticates gateway API keys against the keys file (hot-reloaded). A valid key becomes a
 * `gateway-key` principal named after its client; every Immich credential is taken off the upstream
 * request and the client's own Immich key is injected. An `igw_` key that is unknown, expired,
 * revoked or used from a disallowed address is refused here and never reaches Immich.
 */
export const apiKeyAuth = definePolicy({
  name: 'api-key-auth',
  phase: 'authenticate',
  options: apiKeyAuthOptions,
  async create(options, { config, deps, onClose }) {
    requireScopesPolicy(config, 'api-key-auth')
    const { metrics, logger } = deps
    const { environment } = config
    const keysFile = keysFileFor(options.keysFile, environment)
    let store: KeysStore | undefined
    if (keysFile) {
      try {
        store = await KeysStore.open({
          ...keysFile,
          presetsFile: options.presetsFile ?? environment?.presetsFile,
          catalogue: deps.catalogue,
          env: environment?.vars ?? {},
          logger,
          pollMs: options.reloadCheckMs,
        })
      } catch (err) {
        if (err instanceof KeysFileError || err instanceof ScopeError)
          throw new ConfigError(`policies.api-key-auth: ${err.message}`)
        throw err
      }
      const opened = store
      onClose(() => opened.close())
      logger.info({ file: keysFile.file, clients: store.clientCount }, 'gateway keys loaded')
    }

    // Synchronous throughout (a key is a hash lookup): no async frame per request.
    return (c: Context<Env>, next) => {
      if (c.get('principal').kind !== 'anonymous') return next()
      const view = upstreamView(c)
      const presented = presentedKeys(view.headers, view.query)
      if (presented.length === 0) return next()
      const first = presented[0]!
      if (presented.some((p) => p.key !== first.key))
        throw refuse(metrics, 'invalid_key', 401, 'Invalid API key')
      if (!options.allowQuery && presented.some((p) => p.via === 'query')) {
        throw refuse(metrics, 'invalid_key', 401, 'API keys are not accepted in the URL')
      }
      const found = store?.lookup(first.key) ?? { status: 'unknown' }
      if (found.status === 'unknown') throw refuse(metrics, 'invalid_key', 401, 'Invalid API key')
      if (found.status === 'expired') throw refuse(metrics, 'expired_key', 401, 'API key expired')
      const { client } = found
      if (client.allowFrom && !client.allowFrom.has(c.get('clientIp'))) {
        throw refuse(metrics, 'ip_not_allowed', 403, 'API key not allowed from this address')
      }
      if (client.disabled !== undefined) {
        // The key is right; the gateway's own configuration is not: say so, not "Invalid API key".
        c.set('principal', {
          kind: 'anonymous',
          client: client.name,
          upstreamIdentity: c.get('principal').upstreamIdentity,
        })
        throw new GatewayError(
          503,
          'UPSTREAM_KEY_MISSING',
          `Gateway client "${client.name}" is disabled: ${client.disabled}`
        )
      }
      const principal: Principal = {
        kind: 'gateway-key',
        client: client.name,
        scopes: client.scopes,
        upstreamIdentity: client.upstreamIdentity,
      }
      if (client.albums) principal.albums = client.albums
      if (client.learning !== undefined && isLearning(client)) {
        principal.scopes = client.learning.scopes
        principal.learning = true
      }
      if (client.reportOnly) principal.reportOnly = true
      c.set('principal', principal)
      injectUpstreamKey(c, client.upstreamKey)
      c.get('notes').keyVia = first.via
      if (found.rotated) c.get('notes').rotatedKey = 'true'
      return next()
    }
  },
})
