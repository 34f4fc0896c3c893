import { createPublicKey, type KeyObject } from 'node:crypto'
import type { Context, Next } from 'hono'
import {
  decodeJwt,
  errors as joseErrors,
  jwtVerify,
  type JWTPayload,
  type JWTVerifyGetKey,
} from 'jose'
import { ConfigError } from '../../src/config/load.js'
import type { Env } from '../../src/env.js'
import {
  bearerToken,
  injectUpstreamKey,
  isCleanToken,
  upstreamView,
} from '../../src/auth/credentials.js'
import { credentialIdentity } from '../../src/auth/hash.js'
import { refuse } from '../../src/auth/refusal.js'
import {
  loadScopeResolver,
  requireScopesPolicy,
  ScopeError,
  type ScopeResolver,
} from '../../src/auth/scopes.js'
import { definePolicy } from '../types.js'
import { jwtAuthOptions, type JwtIssuerOptions } from './schema.js'
import { observedRemoteJwks } from './jwks.js'
import type { Deps } from '../../src/deps.js'

/** Three base64url parts: what jwt-auth claims. An opaque Immich session token never looks like this. */
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/

interface Upstream {
  key: string
  identity: string
}

interface Issuer {
  name: string
  issuer: string
  audience: string | string[]
  algorithms: string[]
  clockTolerance: number
  key: KeyObject | Uint8Array | JWTVerifyGetKey
  scopeClaims: boolean
  groupsClaim: string
  groupScopes: Map<string, ReadonlySet<string>>
  defaultScopes: ReadonlySet<string>
  upstream: Upstream
  byGroup: Map<string, Upstream>
  bySubject: Map<string, Upstream>
}

const KEY_TYPE_ALGORITHMS: Record<string, RegExp> = {
  rsa: /^(RS|PS)/,
  'rsa-pss': /^PS/,
  ec: /^ES/,
  ed25519: /^EdDSA$/,
  ed448: /^EdDSA$/,
}

function stringList(value: unknown): string[] {
  if (typeof value === 'string') return value.split(/\s+/).filter(Boolean)
  if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string')
  return []
}

/** Everything checkable is checked here, once: env vars, keys, scopes. Errors name the field. */
function buildIssuer(
  options: JwtIssuerOptions,
  index: number,
  resolver: ScopeResolver,
  deps: Pick<Deps, 'metrics' | 'logger'>,
  vars: Readonly<Record<string, string | undefined>>
): Issuer {
  const where = `policies.jwt-auth.issuers[${index}] (${options.name})`
  const env = (name: string, field: string): string => {
    const value = vars[name]
    if (!value) throw new ConfigError(`${where}.${field}: environment variable ${name} is not set`)
    return value
  }
  const upstream = (name: string, field: string): Upstream => {
    const key = env(name, field)
    return { key, identity: credentialIdentity('u:', key) }
  }
  const scopes = (list: readonly string[], field: string): ReadonlySet<string> => {
    try {
      return resolver.expand(list)
    } catch (err) {
      throw new ConfigError(`${where}.${field}: ${(err as Error).message}`)
    }
  }

  let key: Issuer['key']
  let algorithms: string[]
  if (options.jwksUri) {
    algorithms = options.algorithms ?? ['RS256', 'ES256']
    key = observedRemoteJwks({
      issuer: options.name,
      uri: options.jwksUri,
      cacheMaxAgeMs: options.jwksCacheSeconds * 1000,
      cooldownMs: options.jwksCooldownSeconds * 1000,
      timeoutMs: options.jwksTimeoutMs,
      metrics: deps.metrics,
      logger: deps.logger,
    })
  } else if (options.publicKeyEnv) {
    algorithms = options.algorithms ?? ['RS256', 'ES256']
    const text = env(options.publicKeyEnv, 'publicKeyEnv').trim()
    let publicKey: KeyObject
    try {
      publicKey = text.startsWith('{')
        ? createPublicKey({ key: JSON.parse(text) as never, format: 'jwk' })
        : createPublicKey(text)
    } catch {
      throw new ConfigError(
        `${where}.publicKeyEnv: ${options.publicKeyEnv} does not hold a PEM public key or a JWK`
      )
    }
    const type = publicKey.asymmetricKeyType ?? ''
    const fits = KEY_TYPE_ALGORITHMS[type]
    const usable = fits ? algorithms.filter((alg) => fits.test(alg)) : []
    if (usable.length === 0)
      throw new ConfigError(
        `${where}.algorithms: none of ${algorithms.join(', ')} works with a${type ? ` ${type}` : 'n unsupported'} key`
      )
    algorithms = usable
    key = publicKey
  } else {
    algorithms = options.algorithms ?? ['HS256']
    const secret = new TextEncoder().encode(env(options.secretEnv!, 'secretEnv'))
    if (secret.length < 32)
      throw new ConfigError(`${where}.secretEnv: an HMAC secret must be at least 32 bytes`)
    key = secret
  }

  return {
    name: options.name,
    issuer: options.issuer,
    audience: options.audience,
    algorithms,
    clockTolerance: options.clockToleranceSeconds,
    key,
    scopeClaims: options.scopeClaims,
    groupsClaim: options.groupsClaim,
    groupScopes: new Map(
      Object.entries(options.groupScopes).map(([group, list]) => [
        group,
        scopes(list, `groupScopes.${group}`),
      ])
    ),
    defaultScopes: scopes(options.defaultScopes, 'defaultScopes'),
    upstream: upstream(options.upstreamKeyEnv, 'upstreamKeyEnv'),
    byGroup: new Map(
      Object.entries(options.upstreamKeyEnvByGroup).map(([group, name]) => [
        group,
        upstream(name, `upstreamKeyEnvByGroup.${group}`),
      ])
    ),
    bySubject: new Map(
      Object.entries(options.upstreamKeyEnvBySubject).map(([sub, name]) => [
        sub,
        upstream(name, `upstreamKeyEnvBySubject.${sub}`),
      ])
    ),
  }
}

function grantedScopes(
  issuer: Issuer,
  payload: JWTPayload,
  groups: string[],
  resolver: ScopeResolver
): ReadonlySet<string> {
  const out = new Set(issuer.defaultScopes)
  if (issuer.scopeClaims) {
    const claimed = [...stringList(payload.scope), ...stringList(payload.scp)]
    if (claimed.length) for (const s of resolver.expandKnown(claimed)) out.add(s)
  }
  for (const group of groups) {
    const granted = issuer.groupScopes.get(group)
    if (granted) for (const s of granted) out.add(s)
  }
  return out
}

function chooseUpstream(issuer: Issuer, payload: JWTPayload, groups: string[]): Upstream {
  const bySubject = payload.sub === undefined ? undefined : issuer.bySubject.get(payload.sub)
  if (bySubject) return bySubject
  if (issuer.byGroup.size && groups.length) {
    const member = new Set(groups)
    for (const [group, upstream] of issuer.byGroup) if (member.has(group)) return upstream
  }
  return issuer.upstream
}

/** A bounded label for the access log: jose's error code, never the token or its claims. */
function failureCode(err: unknown): string {
  return err instanceof joseErrors.JOSEError ? err.code : 'ERR_INVALID'
}

/**
 * Authenticates `Authorization: Bearer <JWT>` from trusted issuers (OIDC providers): signature (JWKS,
 * static public key or HMAC secret, per-issuer algorithm allow-list), `iss`, `aud`, `exp` (required),
 * `nbf`. A valid token becomes a `jwt` principal labelled with the issuer's configured name; its scopes
 * come from the `scope`/`scp` claims and group mappings; the Immich key injected is chosen per
 * subject, group or issuer. Any bad JWT gets 401 with `error="invalid_token"`.
 */
export const jwtAuth = definePolicy({
  name: 'jwt-auth',
  phase: 'authenticate',
  options: jwtAuthOptions,
  create(options, { config, deps }) {
    if (options.issuers.length === 0) return (_c, next) => next()
    requireScopesPolicy(config, 'jwt-auth')
    const { metrics } = deps
    let resolver: ScopeResolver
    try {
      resolver = loadScopeResolver(
        options.presetsFile ?? config.environment?.presetsFile,
        deps.catalogue
      )
    } catch (err) {
      if (err instanceof ScopeError)
        throw new ConfigError(`policies.jwt-auth.presetsFile: ${err.message}`)
      throw err
    }
    const issuers = new Map(
      options.issuers.map((o, i) => [
        o.issuer,
        buildIssuer(o, i, resolver, deps, config.environment?.vars ?? {}),
      ])
    )

    const invalid = (c: Context<Env>, code: string) => {
      c.get('notes').jwt = code
      return refuse(metrics, 'invalid_token', 401, 'Invalid token')
    }

    // Requests without a JWT pass by synchronously; only a verification is async.
    return (c: Context<Env>, next) => {
      if (c.get('principal').kind !== 'anonymous') return next()
      const token = bearerToken(upstreamView(c).headers)
      if (token === undefined || token.indexOf('.') === -1) return next()
      if (!isCleanToken(token, options.maxTokenBytes)) throw invalid(c, 'ERR_TOKEN_MALFORMED')
      if (!JWT_SHAPE.test(token)) return next()
      return verify(c, next, token)
    }

    async function verify(c: Context<Env>, next: Next, token: string): Promise<void> {
      let claimed: JWTPayload
      try {
        claimed = decodeJwt(token)
      } catch (err) {
        throw invalid(c, failureCode(err))
      }
      const issuer = typeof claimed.iss === 'string' ? issuers.get(claimed.iss) : undefined
      if (issuer === undefined) throw invalid(c, 'ERR_UNKNOWN_ISSUER')
      let payload: JWTPayload
      try {
        ;({ payload } = await jwtVerify(token, issuer.key, {
          issuer: issuer.issuer,
          audience: issuer.audience,
          algorithms: issuer.algorithms,
          clockTolerance: issuer.clockTolerance,
          requiredClaims: ['exp'],
        }))
      } catch (err) {
        throw invalid(c, failureCode(err))
      }
      const groups = stringList(payload[issuer.groupsClaim])
      const upstream = chooseUpstream(issuer, payload, groups)
      c.set('principal', {
        kind: 'jwt',
        client: issuer.name,
        scopes: grantedScopes(issuer, payload, groups, resolver),
        upstreamIdentity: upstream.identity,
      })
      injectUpstreamKey(c, upstream.key)
      return next()
    }
  },
})
