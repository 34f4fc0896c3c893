/**
 * Immich credentials on a request: where they are (FACTS.md, in Immich's order of precedence), how to
 * take them all off the upstream request, and how to put the principal's own credential on.
 */
import type { IncomingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import type { Env } from '../env.js'
import { GATEWAY_KEY_PREFIX } from './keygen.js'

/** Request headers Immich reads as a credential (Node lower-cases names). */
const CREDENTIAL_HEADERS = [
  'authorization',
  'x-api-key',
  'x-immich-user-token',
  'x-immich-session-token',
  'x-immich-share-key',
  'x-immich-share-slug',
] as const

/** Query parameters Immich reads as a credential, lower-cased (matching is case-insensitive when stripping). */
export const CREDENTIAL_QUERY: ReadonlySet<string> = new Set([
  'apikey',
  'x-api-key',
  'sessionkey',
  'key',
  'slug',
])

/** The session cookie; Immich's other cookies (`immich_auth_type`...) are not credentials. */
const SESSION_COOKIE = 'immich_access_token'

/** Longest credential the gateway reads; a bigger one is refused before any hashing or parsing. */
const MAX_CREDENTIAL_BYTES = 8192

/** A credential must be visible ASCII: anything else (control bytes, non-UTF-8 read as latin1) is refused. */
export function isCleanToken(value: string, maxBytes = MAX_CREDENTIAL_BYTES): boolean {
  if (value.length === 0 || value.length > maxBytes) return false
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if (code <= 0x20 || code >= 0x7f) return false
  }
  return true
}

function decodeComponent(raw: string): string {
  if (raw.indexOf('%') === -1 && raw.indexOf('+') === -1) return raw
  try {
    return decodeURIComponent(raw.replace(/\+/g, ' '))
  } catch {
    return raw
  }
}

/** A query parameter's name as a query parser would see it: decoded, `name[...]` → `name`. */
function paramName(rawPair: string): string {
  const eq = rawPair.indexOf('=')
  const name = decodeComponent(eq === -1 ? rawPair : rawPair.slice(0, eq))
  const bracket = name.indexOf('[')
  return bracket > 0 ? name.slice(0, bracket) : name
}

/**
 * Parameter separators the gateway honours when it looks for credentials: `&`, and `;`, which some
 * parsers (and HTML 4 forms) take as one too. Immich itself splits on `&` only (findNativeCredential).
 */
const PIECE_SEPARATOR = /([&;])/

/**
 * The credential recognition of the gateway, one function for authentication, stripping and log
 * redaction: the lower-cased name one raw query piece (between `&`/`;` separators) may be read as by
 * any parser. Decoded first (`+` as a space), so `api%4Bey=`, `%61piKey=`, `x%2Dapi%2Dkey=` and
 * `apiKey%3Dv` (an encoded `=`) all name their parameter; `name[...]` (`apiKey[]`, `apiKey%5B%5D`)
 * reads as `name`.
 */
export function credentialParamName(rawPiece: string): string {
  const text = decodeComponent(rawPiece)
  const eq = text.indexOf('=')
  const name = eq === -1 ? text : text.slice(0, eq)
  const bracket = name.indexOf('[')
  return (bracket > 0 ? name.slice(0, bracket) : name).toLowerCase()
}

/** The value of a raw query piece as credentialParamName reads it: after the first decoded `=`. */
function credentialParamValue(rawPiece: string): string {
  const text = decodeComponent(rawPiece)
  const eq = text.indexOf('=')
  return eq === -1 ? '' : text.slice(eq + 1)
}

export interface QueryParam {
  name: string
  value: string
}

/** The decoded parameters of a query string (with or without its leading `?`), as Immich splits it. */
export function queryParams(query: string): QueryParam[] {
  const body = query.startsWith('?') ? query.slice(1) : query
  if (body === '') return []
  const out: QueryParam[] = []
  for (const pair of body.split('&')) {
    if (pair === '') continue
    const eq = pair.indexOf('=')
    out.push({ name: paramName(pair), value: eq === -1 ? '' : decodeComponent(pair.slice(eq + 1)) })
  }
  return out
}

/**
 * The query pieces whose name (credentialParamName: decoded, `[]` dropped, lower-cased, `&` or `;`
 * separated) is in `names`, with their decoded values: what the gateway takes as a credential.
 */
export function credentialQueryParams(
  query: string,
  names: ReadonlySet<string> = CREDENTIAL_QUERY
): QueryParam[] {
  const body = query.startsWith('?') ? query.slice(1) : query
  const out: QueryParam[] = []
  if (body === '') return out
  for (const piece of body.split(/[&;]/)) {
    if (piece === '') continue
    const name = credentialParamName(piece)
    if (names.has(name)) out.push({ name, value: credentialParamValue(piece) })
  }
  return out
}

/**
 * `url` (path + query) without the credential parameters; the other parameters stay byte for byte
 * and in order. Names are recognised by credentialParamName, so `api%4Bey`, `APIKEY`, `apiKey[]`,
 * `apiKey%3Dv` and a `;`-separated `apiKey` go too.
 */
export function stripCredentialQuery(url: string): string {
  return removeQueryParams(url, CREDENTIAL_QUERY)
}

/**
 * Can the query of `url` (from `q`, its `?`) hold one of `names`? Without `%` or `+` a name reads as
 * written, so it must appear in the lower-cased query; most queries (`size=thumbnail`) are settled
 * here without splitting and decoding every parameter.
 */
function mayHoldParam(url: string, q: number, names: ReadonlySet<string>): boolean {
  if (url.indexOf('%', q) !== -1 || url.indexOf('+', q) !== -1) return true
  const query = url.slice(q).toLowerCase()
  for (const name of names) if (query.indexOf(name) !== -1) return true
  return false
}

/**
 * `url` without the query pieces credentialParamName reads as one of `names`; the rest byte for byte,
 * each with the separator (`&` or `;`) that preceded it.
 */
function removeQueryParams(url: string, names: ReadonlySet<string>): string {
  const q = url.indexOf('?')
  if (q === -1 || !mayHoldParam(url, q, names)) return url
  // [piece, separator, piece, separator, ..., piece]
  const parts = url.slice(q + 1).split(PIECE_SEPARATOR)
  let rest = ''
  let kept = 0
  for (let i = 0; i < parts.length; i += 2) {
    const piece = parts[i]!
    if (piece !== '' && names.has(credentialParamName(piece))) continue
    rest += kept++ === 0 ? piece : `${parts[i - 1]}${piece}`
  }
  const removed = kept !== (parts.length + 1) / 2
  if (!removed) return url
  return rest === '' ? url.slice(0, q) : `${url.slice(0, q)}?${rest}`
}

/** `%XX` escapes decoded one by one (latin1), malformed ones left as they are. */
function decodeEscapes(text: string): string {
  return text.replace(/%([0-9a-f]{2})/gi, (_, hex: string) =>
    String.fromCharCode(parseInt(hex, 16))
  )
}

/** Every `%XX` decoded, up to 4 times over (`%2561` → `%61` → `a`), malformed escapes left as they are. */
export function deepDecode(text: string): string {
  let out = text.indexOf('+') === -1 ? text : text.replace(/\+/g, ' ')
  for (let round = 0; round < 4 && out.indexOf('%') !== -1; round++) {
    let next: string
    try {
      next = decodeURIComponent(out)
    } catch {
      next = decodeEscapes(out)
    }
    if (next === out) break
    out = next
  }
  return out
}

/** A gateway key anywhere in a text: `igw_` and 43 base64url characters. */
const GATEWAY_KEY_INSIDE = new RegExp(`${GATEWAY_KEY_PREFIX}[A-Za-z0-9_-]{43}`)

/** A percent-escape that can hide the `igw_` prefix: of `i`, `g`, `w`, `_`, or of `%` itself. */
const PREFIX_ESCAPE = /%(?:69|67|77|5f|25)/i

/**
 * Does `url` hold a gateway key anywhere (a path segment, a parameter's value, a name), in any
 * percent-encoding? Such a URL must never reach Immich, whose logs would keep it. Settled without
 * decoding unless the prefix is there or one of its characters is escaped.
 */
export function holdsGatewayKey(url: string): boolean {
  if (url.indexOf(GATEWAY_KEY_PREFIX) === -1 && !PREFIX_ESCAPE.test(url)) return false
  return GATEWAY_KEY_INSIDE.test(deepDecode(url))
}

/** The cookie header without the session cookie (other cookies byte for byte); null when nothing is left. */
export function withoutSessionCookie(cookie: string): string | null {
  const kept = cookie
    .split(';')
    .filter((piece) => {
      const eq = piece.indexOf('=')
      return (eq === -1 ? piece : piece.slice(0, eq)).trim() !== SESSION_COOKIE
    })
    .map((piece) => piece.trim())
    .filter((piece) => piece !== '')
  return kept.length ? kept.join('; ') : null
}

/** The first value of a cookie, as Immich's cookie parser reads it. */
export function cookieValue(cookie: string | undefined, name: string): string | undefined {
  if (!cookie) return undefined
  for (const piece of cookie.split(';')) {
    const eq = piece.indexOf('=')
    if (eq === -1 || piece.slice(0, eq).trim() !== name) continue
    let value = piece.slice(eq + 1).trim()
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
      value = value.slice(1, -1)
    return decodeComponent(value)
  }
  return undefined
}

/**
 * For a gateway principal: take every Immich credential off the upstream request (headers, session
 * cookie, query) and send `upstreamKey` as `x-api-key` instead, so Immich sees exactly one credential
 * (a stale cookie or a bearer would otherwise win over the API key). `c.get('query')` loses the
 * credential parameters too, so no later phase (a cache key) ever holds the client's key.
 */
export function injectUpstreamKey(c: Context<Env>, upstreamKey: string): void {
  const edits = c.get('upstream').headerEdits
  const cookie = upstreamView(c).headers.cookie
  for (const name of CREDENTIAL_HEADERS) edits[name] = null
  edits['x-api-key'] = upstreamKey
  if (cookie !== undefined && cookie.includes(SESSION_COOKIE))
    edits.cookie = withoutSessionCookie(cookie)
  editQuery(c, CREDENTIAL_QUERY)
}

/** Removes query parameters from the upstream URL and from `c.get('query')` alike. */
export function editQuery(c: Context<Env>, names: ReadonlySet<string>): void {
  c.get('upstream').url = removeQueryParams(c.get('upstream').url, names)
  const query = c.get('query')
  if (query !== '') c.set('query', removeQueryParams(`/${query}`, names).slice(1))
}

/**
 * The request as Immich will receive it, for judging credentials: the incoming headers with the
 * edits earlier phases made (the legacy phase may move a credential), and the upstream query.
 */
export function upstreamView(c: Context<Env>): { headers: IncomingHttpHeaders; query: string } {
  const edits = c.get('upstream').headerEdits
  let headers = c.env.incoming.headers
  for (const name in edits) {
    if (headers === c.env.incoming.headers) headers = { ...headers }
    const value = edits[name]
    if (value === null || value === undefined) delete headers[name]
    else headers[name] = value
  }
  const url = c.get('upstream').url
  const q = url.indexOf('?')
  return { headers, query: q === -1 ? '' : url.slice(q) }
}

export type NativeKind = 'sharedLink' | 'session' | 'apiKey'

/** The credential Immich will use for this request, found in Immich's own order. */
export interface NativeCredential {
  kind: NativeKind
  /** Where it was found, for the access log (`x-immich-share-key`, `query:key`, `cookie`...). */
  source: string
  value: string
}

function headerValue(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  const s = Array.isArray(v) ? v[0] : v
  return s ? s : undefined
}

/** Immich reads exactly these query names (after decoding); the first value counts. */
function queryValue(params: QueryParam[], name: string): string | undefined {
  for (const p of params) if (p.name === name && p.value !== '') return p.value
  return undefined
}

/** The bearer token of an `Authorization` header (`Bearer` in any case), or undefined. */
export function bearerToken(headers: IncomingHttpHeaders): string | undefined {
  const auth = headers.authorization
  if (!auth) return undefined
  const space = auth.indexOf(' ')
  if (space === -1 || auth.slice(0, space).toLowerCase() !== 'bearer') return undefined
  const token = auth.slice(space + 1).trim()
  return token || undefined
}

/**
 * The native credential Immich would decide the request by (FACTS.md): share key, share slug,
 * session token (headers, `sessionKey`, opaque bearer, cookie), API key. Undefined when none.
 * `query` is the raw query string; websocket upgrades pass '' (Immich ignores query credentials there).
 */
export function findNativeCredential(
  headers: IncomingHttpHeaders,
  query: string
): NativeCredential | undefined {
  const params = query ? queryParams(query) : []
  const found = (kind: NativeKind, source: string, value: string | undefined) =>
    value ? { kind, source, value } : undefined
  return (
    found('sharedLink', 'x-immich-share-key', headerValue(headers, 'x-immich-share-key')) ??
    found('sharedLink', 'query:key', queryValue(params, 'key')) ??
    found('sharedLink', 'x-immich-share-slug', headerValue(headers, 'x-immich-share-slug')) ??
    found('sharedLink', 'query:slug', queryValue(params, 'slug')) ??
    found('session', 'x-immich-user-token', headerValue(headers, 'x-immich-user-token')) ??
    found('session', 'x-immich-session-token', headerValue(headers, 'x-immich-session-token')) ??
    found('session', 'query:sessionKey', queryValue(params, 'sessionKey')) ??
    found('session', 'bearer', bearerToken(headers)) ??
    found('session', 'cookie', cookieValue(headers.cookie, SESSION_COOKIE)) ??
    found('apiKey', 'x-api-key', headerValue(headers, 'x-api-key')) ??
    found('apiKey', 'query:apiKey', queryValue(params, 'apiKey'))
  )
}
