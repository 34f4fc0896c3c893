import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/** Headers of a stored answer that are replayed on a hit; everything else (cookies, ids, limits) is per request. */
const REPLAYED = [
  'content-type',
  'etag',
  'last-modified',
  'cache-control',
  'content-disposition',
  'accept-ranges',
  'x-content-type-options',
] as const

/** Headers a 304 carries (RFC 9110 §15.4.5: those a 200 would have sent among Cache-Control, ETag, Expires, Vary...). */
const NOT_MODIFIED = ['etag', 'last-modified', 'cache-control'] as const

/** How long an answer may be kept, and whether each use must be revalidated with Immich first. */
export interface StoragePlan {
  ttlMs: number
  revalidate: boolean
  /** How long past `ttlMs` the entry may still be served when Immich fails (its `stale-if-error`). */
  staleMs: number
}

export interface StorageLimits {
  /** Upper bound for any entry. */
  ttlSeconds: number
  /** For a 200 image without Cache-Control (Immich's profile images); 0 → not stored. */
  heuristicTtlSeconds: number
  /** Store `no-cache` answers (person thumbnails) and revalidate them on every use. */
  revalidateNoCache: boolean
  /** Cap of the `stale-if-error` window (0: never serve a stale entry). */
  staleIfErrorSeconds: number
}

function header(headers: OutgoingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  if (v === undefined) return undefined
  return Array.isArray(v) ? v.join(', ') : String(v)
}

/**
 * Decides whether an upstream answer may be stored (RFC 9111 §3, for a private per-identity cache):
 * a 200 image, no `no-store`, no cookie, no content coding, no `Vary` beyond Accept-Encoding.
 * TTL = min(limit, max-age − Age). `private` is fine: every entry is keyed by the identity it was
 * served to. `no-cache` is stored only to be revalidated before each use, and only with a validator.
 */
export function storagePlan(
  status: number,
  headers: OutgoingHttpHeaders,
  limits: StorageLimits
): StoragePlan | undefined {
  if (status !== 200) return undefined
  const type = header(headers, 'content-type')
  if (type === undefined || !type.toLowerCase().startsWith('image/')) return undefined
  if (headers['set-cookie'] !== undefined) return undefined
  const coding = header(headers, 'content-encoding')
  if (coding !== undefined && coding.toLowerCase() !== 'identity') return undefined
  const vary = header(headers, 'vary')
  if (
    vary !== undefined &&
    vary.split(',').some((v) => v.trim().toLowerCase() !== 'accept-encoding' && v.trim() !== '')
  )
    return undefined
  const cc = header(headers, 'cache-control')
  const limitMs = limits.ttlSeconds * 1000
  if (cc === undefined) {
    if (limits.heuristicTtlSeconds === 0) return undefined
    const ttlMs = Math.min(limitMs, limits.heuristicTtlSeconds * 1000)
    return { ttlMs, revalidate: false, staleMs: 0 }
  }
  const directives = parsedCacheControl(cc)
  if (directives.has('no-store')) return undefined
  const staleMs = staleIfErrorMs(directives, limits)
  if (directives.has('no-cache')) {
    const validator = headers.etag !== undefined || headers['last-modified'] !== undefined
    return limits.revalidateNoCache && validator
      ? { ttlMs: limitMs, revalidate: true, staleMs }
      : undefined
  }
  const maxAge = directives.get('max-age')
  if (maxAge === undefined) {
    if (limits.heuristicTtlSeconds === 0) return undefined
    const ttlMs = Math.min(limitMs, limits.heuristicTtlSeconds * 1000)
    return { ttlMs, revalidate: false, staleMs }
  }
  const seconds = Number(maxAge)
  if (!Number.isFinite(seconds) || seconds <= 0) return undefined
  const age = Number(header(headers, 'age') ?? 0) || 0
  const ttlMs = Math.min(limitMs, (seconds - age) * 1000)
  return ttlMs > 0 ? { ttlMs, revalidate: false, staleMs } : undefined
}

/**
 * RFC 5861 §4: `stale-if-error=N` lets a cache serve the answer for N seconds past its freshness
 * when the origin fails (Immich sends 2592000, 30 days, on thumbnails). Capped by the option.
 */
function staleIfErrorMs(directives: ReadonlyMap<string, string>, limits: StorageLimits): number {
  const value = directives.get('stale-if-error')
  if (value === undefined) return 0
  const seconds = Number(value)
  if (!Number.isFinite(seconds) || seconds <= 0) return 0
  return Math.min(seconds, limits.staleIfErrorSeconds) * 1000
}

/**
 * Immich sends one and the same Cache-Control on every image: each distinct value is parsed once
 * (bounded: a hostile upstream cannot grow it). The maps handed out are only read.
 */
const parsedValues = new Map<string, ReadonlyMap<string, string>>()
function parsedCacheControl(value: string): ReadonlyMap<string, string> {
  let parsed = parsedValues.get(value)
  if (parsed === undefined) {
    parsed = parseCacheControl(value)
    if (parsedValues.size < 64) parsedValues.set(value, parsed)
  }
  return parsed
}

/** `private, max-age=86400, no-transform` → {private → '', max-age → '86400', no-transform → ''}. */
export function parseCacheControl(value: string): Map<string, string> {
  const out = new Map<string, string>()
  for (const part of value.split(',')) {
    const p = part.trim()
    if (p === '') continue
    const eq = p.indexOf('=')
    if (eq === -1) out.set(p.toLowerCase(), '')
    else
      out.set(
        p.slice(0, eq).trim().toLowerCase(),
        p
          .slice(eq + 1)
          .trim()
          .replace(/^"(.*)"$/, '$1')
      )
  }
  return out
}

/** The replayed subset of an upstream answer's headers, with the stored body's exact length. */
export function storedHeaders(
  headers: OutgoingHttpHeaders,
  bodyLength: number
): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of REPLAYED) {
    const v = header(headers, name)
    if (v !== undefined) out[name] = v
  }
  out['content-length'] = String(bodyLength)
  return out
}

/** Headers of a 304 built from a stored entry's headers. */
export function notModifiedHeaders(stored: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {}
  for (const name of NOT_MODIFIED) if (stored[name] !== undefined) out[name] = stored[name]!
  return out
}

/** Opaque part of an entity tag, for the weak comparison (RFC 9110 §8.8.3.2): `W/"x"` and `"x"` match. */
function opaque(tag: string): string {
  const t = tag.trim()
  return t.startsWith('W/') ? t.slice(2) : t
}

/**
 * Does the client's copy match the stored entry (RFC 9110 §13.1.2, §13.1.3)? If-None-Match takes
 * precedence; If-Modified-Since counts only without it.
 */
export function clientHasCurrent(
  req: IncomingHttpHeaders,
  etag: string | undefined,
  lastModified: string | undefined
): boolean {
  const inm = req['if-none-match']
  if (inm !== undefined) {
    if (etag === undefined) return false
    if (inm.trim() === '*') return true
    const want = opaque(etag)
    return inm.split(',').some((t) => opaque(t) === want)
  }
  const ims = req['if-modified-since']
  if (ims === undefined || lastModified === undefined) return false
  const since = Date.parse(ims)
  const modified = Date.parse(lastModified)
  return Number.isFinite(since) && Number.isFinite(modified) && modified <= since
}
