import { createHash } from 'node:crypto'

/**
 * What a cached image belongs to, for invalidation: an asset thumbnail (`a`, invalidated per asset id
 * or all at once), a person thumbnail (`p`) or a profile image (`u`), both invalidated as a class.
 */
export type CacheClass = 'a' | 'p' | 'u'

/** The cacheable route templates and the class of each. Legacy aliases are translated to these before routing. */
export const CACHEABLE_ROUTES: ReadonlyMap<string, CacheClass> = new Map([
  ['/api/assets/{id}/thumbnail', 'a'],
  ['/api/people/{id}/thumbnail', 'p'],
  ['/api/users/{id}/profile-image', 'u'],
])

/**
 * Query string (without `?`) in a canonical order, so `size=preview&c=x` and `c=x&size=preview` share
 * an entry. Every parameter stays in: `size`, the cache-buster `c`, `edited`, shared-link `key`/`slug`,
 * and anything unknown (more keys can only mean fewer hits, never a wrong one). A parameter given twice
 * returns undefined (the request bypasses the cache): which copy Immich would read is not ours to guess.
 */
export function normalizeQuery(query: string): string | undefined {
  if (query === '') return ''
  // What Immich's apps send: `size=x&c=y` (or one parameter). Two parts in order, no allocation.
  const amp = query.indexOf('&')
  if (amp === -1) return query
  if (amp > 0 && query.indexOf('&', amp + 1) === -1 && amp < query.length - 1) {
    const first = paramName(query, 0, amp)
    const second = paramName(query, amp + 1, query.length)
    if (first < second) return query
    if (first > second) return query.slice(amp + 1) + '&' + query.slice(0, amp)
    return undefined
  }
  const parts = query.split('&').filter((p) => p !== '')
  if (parts.length <= 1) return parts[0] ?? ''
  const named = parts.map((p) => {
    const eq = p.indexOf('=')
    return { name: eq === -1 ? p : p.slice(0, eq), part: p }
  })
  named.sort((x, y) => (x.name < y.name ? -1 : x.name > y.name ? 1 : 0))
  for (let i = 1; i < named.length; i++) if (named[i]!.name === named[i - 1]!.name) return undefined
  return named.map((n) => n.part).join('&')
}

function paramName(query: string, from: number, to: number): string {
  const eq = query.indexOf('=', from)
  return query.slice(from, eq === -1 || eq > to ? to : eq)
}

/**
 * The cache key: the principal's upstream identity, class, lower-cased id (Immich ids are UUIDs,
 * case-insensitive) and the normalized query. The identity comes first and length-prefixed, so no
 * id or query can make one identity's key equal another's: an entry can only ever be served to the
 * identity Immich served it to. An album-bound key's binding (`AlbumBinding.tag`) is part of the
 * identity: its entries are its own, whatever the order of the phases that judge it.
 * Undefined means "do not cache this request".
 */
export function cacheKey(
  cls: CacheClass,
  id: string,
  upstreamIdentity: string,
  query: string,
  albumBinding = ''
): string | undefined {
  if (upstreamIdentity === '' || id === '' || id.includes('|')) return undefined
  const normalized = normalizeQuery(query)
  if (normalized === undefined) return undefined
  const who = albumBinding === '' ? upstreamIdentity : `${upstreamIdentity}\0albums:${albumBinding}`
  return `${who.length}:${who}|${cls}|${id.toLowerCase()}|${normalized}`
}

/**
 * The value of the `immich_shared_link_token` cookie, '' without one. Immich lets a password-protected
 * shared link through only with this cookie (set by the share-password login), so it is part of what
 * the link's requests are authenticated by: without it in the key, one visitor who typed the password
 * would open the cache to everyone holding the bare link.
 */
export function sharedLinkToken(cookie: string | string[] | undefined): string {
  if (cookie === undefined) return ''
  const all = Array.isArray(cookie) ? cookie.join('; ') : cookie
  const at = all.indexOf('immich_shared_link_token=')
  if (at === -1) return ''
  // The name must start the cookie-pair (not `xyzimmich_shared_link_token=`).
  if (at > 0 && !/[;\s]/.test(all[at - 1]!)) return sharedLinkToken(all.slice(at + 1))
  const start = at + 'immich_shared_link_token='.length
  const end = all.indexOf(';', start)
  return (end === -1 ? all.slice(start) : all.slice(start, end)).trim()
}

/** The key as stored in Redis: hashed, so no query credential (`key`, `apiKey`...) lands in a key name. */
export function hashedKey(key: string): string {
  return createHash('sha256').update(key).digest('base64url')
}
