/**
 * Minting Immich API keys for gateway clients (`keys add --immich-login`): log in as the user,
 * create a key named after the client with exactly the permissions its scopes stand for, and log
 * out again. Immich then refuses what the gateway would refuse (defence in depth).
 *
 * Nothing secret (password, session token, key secret) ever goes into an error message.
 */
import { request } from 'undici'

export class ImmichMintError extends Error {
  override name = 'ImmichMintError'
  constructor(
    message: string,
    /** Immich's HTTP status, when it answered. */
    readonly status?: number
  ) {
    super(message)
  }
}

export interface MintedImmichKey {
  id: string
  secret: string
  permissions: string[]
}

/** A logged-in Immich session (its token never leaves this module's calls). */
export interface ImmichSession {
  createKey(name: string, permissions: readonly string[]): Promise<MintedImmichKey>
  /** Deletes a key; one that is already gone is not an error. */
  deleteKey(id: string): Promise<void>
}

async function call(
  base: string,
  method: 'POST' | 'DELETE',
  path: string,
  what: string,
  init: { token?: string; body?: unknown }
): Promise<{ status: number; json: unknown }> {
  let res
  try {
    res = await request(new URL(path, base), {
      method,
      headers: {
        accept: 'application/json',
        ...(init.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...(init.token ? { authorization: `Bearer ${init.token}` } : {}),
      },
      body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    })
  } catch (err) {
    throw new ImmichMintError(`${what}: cannot reach Immich at ${base} (${(err as Error).message})`)
  }
  const text = await res.body.text()
  let json: unknown
  try {
    json = text ? JSON.parse(text) : undefined
  } catch {
    json = undefined
  }
  if (res.statusCode >= 400) {
    const message = (json as { message?: unknown } | undefined)?.message
    throw new ImmichMintError(
      `${what}: Immich answered ${res.statusCode}${typeof message === 'string' ? ` (${message})` : ''}`,
      res.statusCode
    )
  }
  return { status: res.statusCode, json }
}

/**
 * Logs in (POST /api/auth/login), runs `fn` with the session, and logs out (POST /api/auth/logout)
 * whatever `fn` did.
 */
export async function withImmichSession<T>(
  baseUrl: string,
  email: string,
  password: string,
  fn: (session: ImmichSession) => Promise<T>
): Promise<T> {
  const login = await call(baseUrl, 'POST', '/api/auth/login', 'login', {
    body: { email, password },
  })
  const token = (login.json as { accessToken?: unknown } | undefined)?.accessToken
  if (typeof token !== 'string' || !token)
    throw new ImmichMintError('login: Immich answered without an access token')
  const session: ImmichSession = {
    async createKey(name, permissions) {
      const { json } = await call(baseUrl, 'POST', '/api/api-keys', 'create API key', {
        token,
        body: { name, permissions },
      })
      const out = json as { secret?: unknown; apiKey?: { id?: unknown; permissions?: unknown } }
      if (typeof out?.secret !== 'string' || typeof out.apiKey?.id !== 'string')
        throw new ImmichMintError('create API key: unexpected answer from Immich')
      return {
        id: out.apiKey.id,
        secret: out.secret,
        permissions: Array.isArray(out.apiKey.permissions)
          ? (out.apiKey.permissions as string[])
          : [...permissions],
      }
    },
    async deleteKey(id) {
      try {
        await call(baseUrl, 'DELETE', `/api/api-keys/${encodeURIComponent(id)}`, 'delete API key', {
          token,
        })
      } catch (err) {
        // Immich says 400 "API Key not found" for a key deleted by hand: the goal is reached.
        if (!(err instanceof ImmichMintError && err.status === 400)) throw err
      }
    },
  }
  try {
    return await fn(session)
  } finally {
    await call(baseUrl, 'POST', '/api/auth/logout', 'logout', { token }).catch(() => {})
  }
}
