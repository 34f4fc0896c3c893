import type { Context, MiddlewareHandler, Next } from 'hono'
import type { Env } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { answerStatus } from '../../src/server/answer.js'
import { createLimiter, type LimitOutcome } from '../../src/limits/limiter.js'
import { addressKey, digest } from '../../src/limits/keys.js'
import { readRequestBody } from '../../src/upstream/body.js'
import { definePolicy } from '../types.js'
import { loginGuardOptions } from './schema.js'

type LoginKind = 'password' | 'shared-link'

const PASSWORD_LOGIN = '/api/auth/login'
const SHARED_LINK_LOGIN = '/api/shared-links/login'

/** Immich's own normalisation of the login email (trimmed, lower-cased); '' when there is none. */
function emailOf(body: Buffer): string {
  try {
    const parsed: unknown = JSON.parse(body.toString('utf8'))
    const email = (parsed as { email?: unknown } | null)?.email
    return typeof email === 'string' ? email.trim().toLowerCase() : ''
  } catch {
    return ''
  }
}

/** The shared link a password is tried against: query `key`/`slug`, else the share headers. */
function sharedLinkOf(c: Context<Env>): string {
  const params = new URLSearchParams(c.get('query'))
  const key = params.get('key')
  if (key) return `key:${key}`
  const slug = params.get('slug')
  if (slug) return `slug:${slug}`
  const headers = c.env.incoming.headers
  const headerKey = headers['x-immich-share-key']
  if (typeof headerKey === 'string' && headerKey) return `key:${headerKey}`
  const headerSlug = headers['x-immich-share-slug']
  return typeof headerSlug === 'string' && headerSlug ? `slug:${headerSlug}` : ''
}

/**
 * Brute-force guard for `POST /api/auth/login` and `POST /api/shared-links/login`. Failed attempts
 * (Immich answers 401) are counted per client address and per address+account; past the limit the
 * pair (or the address) is refused with 429 for `blockSeconds`, before Immich is asked. An attempt
 * takes its point before it is forwarded — parallel guesses cannot slip past the count — and gets it
 * back unless Immich says 401; a success also clears the address+account counter.
 */
export const loginGuard = definePolicy({
  name: 'login-guard',
  phase: 'rate-limit',
  options: loginGuardOptions,
  create(options, { deps }) {
    const { onStoreError, insuranceDivisor, storeTimeoutMs, keyPrefix } = options
    const store = { onStoreError, insuranceDivisor, storeTimeoutMs }
    const window = { durationSeconds: options.windowSeconds, blockSeconds: options.blockSeconds }
    const byAccount = createLimiter(
      { points: options.maxFailuresPerAccount, ...window },
      { ...store, keyPrefix: `${keyPrefix}:account` },
      deps
    )
    const byIp = createLimiter(
      { points: options.maxFailuresPerIp, ...window },
      { ...store, keyPrefix: `${keyPrefix}:ip` },
      deps
    )
    const bodyTimeoutMs = options.bodyTimeoutSeconds * 1000
    const { metrics } = deps

    function kindOf(c: Context<Env>): LoginKind | undefined {
      if (c.get('upstream').method !== 'POST') return undefined
      const template = c.get('route')?.route.path
      if (template === PASSWORD_LOGIN && options.passwordLogin) return 'password'
      if (template === SHARED_LINK_LOGIN && options.sharedLinkLogin) return 'shared-link'
      return undefined
    }

    // Every request but the two logins passes by synchronously.
    const middleware: MiddlewareHandler<Env> = (c, next) => {
      const kind = kindOf(c)
      return kind ? guard(c, next, kind) : next()
    }

    async function guard(c: Context<Env>, next: Next, kind: LoginKind): Promise<void> {
      c.set('routeClass', 'login')
      let account: string
      if (kind === 'password') {
        const body = await readRequestBody(c, {
          maxBytes: options.maxBodyBytes,
          timeoutMs: bodyTimeoutMs,
        })
        account = emailOf(body)
      } else {
        account = sharedLinkOf(c)
      }
      const address = addressKey(c.get('clientIp'))
      // Without an account (a malformed body) only the address counter applies.
      const accountKey = account
        ? `${kind === 'password' ? 'a' : 's'}:${digest(account)}|${address}`
        : undefined

      const [accountOutcome, ipOutcome] = await Promise.all([
        accountKey ? byAccount.consume(accountKey) : undefined,
        byIp.consume(address),
      ])
      const refused = [accountOutcome, ipOutcome].filter(
        (o): o is LimitOutcome => o !== undefined && !o.allowed
      )
      if (refused.length > 0) {
        // A refused attempt is not a failure: give back the point a counter that let it through took.
        if (accountKey && accountOutcome?.allowed) await byAccount.reward(accountKey)
        if (ipOutcome.allowed) await byIp.reward(address)
        metrics.loginBlocked.inc({ kind })
        c.get('notes').loginGuard = 'blocked'
        const retryAfter = Math.max(1, ...refused.map((o) => Math.ceil(o.resetMs / 1000)))
        throw new GatewayError(
          429,
          'LOGIN_BLOCKED',
          'Too many failed login attempts, try again later',
          { 'Retry-After': String(retryAfter) }
        )
      }

      await next()

      const status = answerStatus(c)
      if (status === 401) {
        metrics.loginFailures.inc({ kind })
        c.get('notes').loginGuard = 'failure'
        return
      }
      if (status >= 200 && status < 300) {
        if (accountKey) await byAccount.reset(accountKey)
      } else if (accountKey) {
        await byAccount.reward(accountKey)
      }
      await byIp.reward(address)
    }
    return middleware
  },
})
