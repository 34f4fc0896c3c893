/**
 * Who is using the console: the browser's Immich session (cookie `immich_access_token`, sent to the
 * gateway since it fronts Immich on the same origin), confirmed by asking Immich itself
 * (`GET /api/users/me`), or the optional console token for headless use. No second password.
 */
import { timingSafeEqual } from 'node:crypto'
import { LRUCache } from 'lru-cache'
import type { Deps } from '../deps.js'
import { sha256Hex } from '../auth/hash.js'

/** Who a console request acts as. `id` is a hash, never the credential. */
export interface ConsoleUser {
  /** `immich` for an Immich session, `token` for the console token. */
  via: 'immich' | 'token'
  /** For the audit log and the page header: Immich's email, or `console-token`. */
  name: string
  isAdmin: boolean
  /** sha-256 of the credential (the CSRF token is bound to it). */
  id: string
}

export type SessionCheck =
  | { status: 'ok'; user: ConsoleUser }
  /** No credential, or Immich no longer knows the session (expired, logged out). */
  | { status: 'signed-out' }
  /** Immich did not answer: neither signed in nor out. */
  | { status: 'unavailable' }

const SESSION_COOKIE = 'immich_access_token'

/** A cookie's value from a Cookie header, or undefined. */
export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq !== -1 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** Confirms sessions with Immich, remembering each answer for `cacheMs`. */
export class SessionChecker {
  private readonly cache: LRUCache<string, ConsoleUser>
  private readonly tokenHash: Buffer | undefined

  constructor(
    private readonly deps: Pick<Deps, 'forwarder'>,
    cacheMs: number,
    consoleToken: string | undefined
  ) {
    this.cache = new LRUCache({ max: 500, ttl: Math.max(cacheMs, 1) })
    this.tokenHash = consoleToken ? Buffer.from(sha256Hex(consoleToken), 'hex') : undefined
  }

  async check(headers: { cookie?: string; authorization?: string }): Promise<SessionCheck> {
    const auth = headers.authorization
    if (this.tokenHash && auth?.startsWith('Bearer ')) {
      const given = Buffer.from(sha256Hex(auth.slice(7).trim()), 'hex')
      if (timingSafeEqual(given, this.tokenHash))
        return {
          status: 'ok',
          user: { via: 'token', name: 'console-token', isAdmin: true, id: 'token' },
        }
    }
    const session = cookieValue(headers.cookie, SESSION_COOKIE)
    if (!session || session.length > 4096 || !/^[\x21-\x7e]+$/.test(session))
      return { status: 'signed-out' }
    const id = sha256Hex(session)
    const cached = this.cache.get(id)
    if (cached) return { status: 'ok', user: cached }
    const { agent, origin } = this.deps.forwarder
    let status: number
    let body: { email?: unknown; name?: unknown; isAdmin?: unknown }
    try {
      const res = await agent.request({
        origin,
        path: '/api/users/me',
        method: 'GET',
        headers: { cookie: `${SESSION_COOKIE}=${session}`, accept: 'application/json' },
        headersTimeout: 5000,
        bodyTimeout: 5000,
      })
      status = res.statusCode
      body = status === 200 ? ((await res.body.json()) as typeof body) : (await res.body.dump(), {})
    } catch {
      return { status: 'unavailable' }
    }
    if (status === 401) return { status: 'signed-out' }
    if (status !== 200) return { status: 'unavailable' }
    const user: ConsoleUser = {
      via: 'immich',
      name: typeof body.email === 'string' ? body.email : String(body.name ?? 'unknown'),
      isAdmin: body.isAdmin === true,
      id,
    }
    this.cache.set(id, user)
    return { status: 'ok', user }
  }
}
