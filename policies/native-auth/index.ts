import type { Context } from 'hono'
import type { Env } from '../../src/env.js'
import {
  credentialQueryParams,
  editQuery,
  findNativeCredential,
  holdsGatewayKey,
  isCleanToken,
  upstreamView,
  type NativeCredential,
  type NativeKind,
} from '../../src/auth/credentials.js'
import { credentialIdentity } from '../../src/auth/hash.js'
import { GATEWAY_KEY_PREFIX } from '../../src/auth/keygen.js'
import { refuse } from '../../src/auth/refusal.js'
import { isApiPath } from '../../src/routing/path.js'
import { definePolicy } from '../types.js'
import { nativeAuthOptions } from './schema.js'

/** Immich's own messages for a bad credential of each kind. */
const INVALID: Record<NativeKind, string> = {
  sharedLink: 'Invalid share key',
  session: 'Invalid user token',
  apiKey: 'Invalid API key',
}

const NOT_ALLOWED: Record<NativeKind, string> = {
  sharedLink: 'Shared links are not accepted by this gateway',
  session: 'Immich sessions are not accepted by this gateway',
  apiKey: 'Immich API keys are not accepted by this gateway',
}

const QUERY_X_API_KEY = 'query:x-api-key'
const X_API_KEY_PARAM: ReadonlySet<string> = new Set(['x-api-key'])

/**
 * `?x-api-key=` — what old clients (a Discord bot's embed URLs, LEGACY.md §2.1) put in URLs. Immich
 * itself never read it; the gateway moves it into the `x-api-key` header when no credential Immich
 * reads is present, so those URLs work and the key leaves the URL Immich logs.
 */
function queryApiKey(query: string): NativeCredential | undefined {
  if (query.length < 2) return undefined
  for (const { value } of credentialQueryParams(query, X_API_KEY_PARAM)) {
    if (value !== '') return { kind: 'apiKey', source: QUERY_X_API_KEY, value }
  }
  return undefined
}

/**
 * Native Immich credentials (what the official apps and the web UI send): the one Immich will decide
 * the request by, in Immich's order (share key, share slug, session, API key), becomes a `native` or
 * `shared-link` principal and passes through untouched. Immich judges its permissions. A kind that
 * `allow` refuses gets 401 — except on public routes and web UI paths, where Immich does not read
 * credentials at all (a stale cookie must not break the login page). A credential that is oversized,
 * not visible ASCII, or an `igw_` gateway key nobody claimed gets 401 without reaching Immich.
 */
export const nativeAuth = definePolicy({
  name: 'native-auth',
  phase: 'authenticate',
  options: nativeAuthOptions,
  create(options, { deps }) {
    const { metrics } = deps
    const { allow, maxCredentialBytes } = options
    return (c: Context<Env>, next) => {
      if (c.get('principal').kind !== 'anonymous') return next()
      // A gateway key nobody claimed, wherever it sits in the URL (`?q=apiKey%3Digw_...`, a path
      // segment, a doubly encoded name): refused, so it never reaches Immich or its logs.
      if (holdsGatewayKey(c.get('upstream').url))
        throw refuse(metrics, 'invalid_key', 401, INVALID.apiKey)
      const view = upstreamView(c)
      // Immich reads websocket credentials from headers only.
      const query = c.env.upgrade ? '' : view.query
      const credential = findNativeCredential(view.headers, query) ?? queryApiKey(query)
      if (credential === undefined) return next()
      const { kind, value, source } = credential
      const judged = isApiPath(c.get('path')) && !c.get('route')?.route.public
      // A gateway key here means api-key-auth is off or did not claim it: never hand it to Immich.
      if (value.startsWith(GATEWAY_KEY_PREFIX) || !isCleanToken(value, maxCredentialBytes)) {
        throw refuse(
          metrics,
          kind === 'apiKey' ? 'invalid_key' : 'invalid_token',
          401,
          INVALID[kind]
        )
      }
      if (!allow[kind]) {
        if (!judged) return next()
        throw refuse(metrics, 'native_not_allowed', 401, NOT_ALLOWED[kind])
      }
      const shared = kind === 'sharedLink'
      c.set('principal', {
        kind: shared ? 'shared-link' : 'native',
        client: shared ? 'shared-link' : 'native',
        upstreamIdentity: credentialIdentity('n:', value),
      })
      if (source === QUERY_X_API_KEY) {
        c.get('upstream').headerEdits['x-api-key'] = value
        editQuery(c, X_API_KEY_PARAM)
      }
      c.get('notes').credential = source
      return next()
    }
  },
})
