import type { MiddlewareHandler } from 'hono'
import type { Env, PrincipalKind } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { RouteClassifier } from '../../src/limits/classes.js'
import { addressKey, principalKey } from '../../src/limits/keys.js'
import type { LimitOutcome } from '../../src/limits/limiter.js'
import { definePolicy } from '../types.js'
import { rateLimitOptions } from './schema.js'

/** Principals the gateway has not verified: anyone can mint new ones, so the address ceiling applies. */
const UNVERIFIED: ReadonlySet<PrincipalKind> = new Set(['native', 'shared-link'])

/** Seconds until a window ends, as RateLimit `t` and Retry-After carry it. */
function seconds(outcome: LimitOutcome): number {
  return Math.max(0, Math.ceil(outcome.resetMs / 1000))
}

/** The outcome that decides: a refusal over an allowance, the longer wait of two refusals. */
function stricter(a: LimitOutcome, b: LimitOutcome): LimitOutcome {
  if (a.allowed !== b.allowed) return a.allowed ? b : a
  return a.resetMs >= b.resetMs ? a : b
}

function setHeaders(extra: Record<string, string>, policy: string, state: string): void {
  extra['ratelimit-policy'] = policy
  extra['ratelimit'] = state
}

/**
 * Budgets per principal and route class (thumbnails, uploads, api, and any the config adds), in memory
 * or shared through Redis. Every response on a limited route carries the draft-ietf-httpapi-ratelimit-headers-10
 * fields; a request past its budget gets 429 in Immich's error shape with `Retry-After`.
 */
export const rateLimit = definePolicy({
  name: 'rate-limit',
  phase: 'rate-limit',
  options: rateLimitOptions,
  create(options, { deps }) {
    const { keyPrefix, onStoreError, insuranceDivisor, storeTimeoutMs } = options
    const classifier = new RouteClassifier(
      {
        classes: options.classes,
        fallback: 'api',
        clients: options.clients,
        webUi: options.webUi,
        addressFactor: options.addressFactor,
        store: { keyPrefix, onStoreError, insuranceDivisor, storeTimeoutMs },
        configPath: 'policies.rate-limit',
      },
      deps
    )
    const { metrics } = deps
    const headers = options.headers

    const middleware: MiddlewareHandler<Env> = async (c, next) => {
      const cls = classifier.classify(
        c.get('upstream').method,
        c.get('route')?.route,
        c.get('routeLabel')
      )
      if (!cls) return next()
      c.set('routeClass', cls.name)
      const principal = c.get('principal')
      const override = cls.perClient.get(principal.client)
      const limit = override === undefined ? cls.limit : override
      if (!limit) return next()
      const key = principalKey(principal, c.get('clientIp'))
      const ceiling = limit.address && UNVERIFIED.has(principal.kind) ? limit.address : undefined
      let outcome: LimitOutcome
      if (!ceiling) {
        outcome = await limit.limiter.consume(key)
        if (headers)
          setHeaders(
            c.get('responseHeaders'),
            limit.policyField,
            `"${cls.name}";r=${outcome.remaining};t=${seconds(outcome)}`
          )
      } else {
        const [mine, address] = await Promise.all([
          limit.limiter.consume(key),
          ceiling.limiter.consume(`ip:${addressKey(c.get('clientIp'))}`),
        ])
        outcome = stricter(mine, address)
        if (headers) {
          const field = `"${cls.name}";r=${mine.remaining};t=${seconds(mine)}, "${ceiling.name}";r=${address.remaining};t=${seconds(address)}`
          setHeaders(c.get('responseHeaders'), ceiling.policyField, field)
        }
      }
      if (outcome.via === 'insurance' || outcome.via === 'open')
        c.get('notes').rateLimitStore = outcome.via
      if (!outcome.allowed) {
        metrics.rateLimited.inc({ class: cls.name, client: principal.client })
        c.get('notes').rateLimited = cls.name
        throw new GatewayError(429, 'RATE_LIMITED', 'Too many requests', {
          'Retry-After': String(Math.max(1, seconds(outcome))),
        })
      }
      return next()
    }
    return middleware
  },
})
