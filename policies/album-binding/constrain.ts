/**
 * Narrowing listing requests to the bound albums: the `albumIds` of a search body, the `albumId` of
 * a timeline query. Immich ANDs the ids of `albumIds` (an asset must be in every one), so several
 * bound albums cannot be put into one search: a request names one (or more) of them, or a key bound
 * to exactly one album gets it put in.
 */
import { queryParams } from '../../src/auth/credentials.js'
import type { AlbumBinding } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'

/** What to do with a search request. */
export type SearchPlan =
  /** Forward this body. */
  | { kind: 'forward'; body: Record<string, unknown> }
  /** Pick one bound album (weighted by size) and forward with it: a random search without albums. */
  | { kind: 'pick'; body: Record<string, unknown> }
  /** The request asked for albums outside the binding: nothing of them is visible. */
  | { kind: 'empty' }

const ALBUM_IDS = 'albumIds'

/** Immich's answer when a search finds nothing, per route (the shape the client expects). */
export function emptySearchAnswer(route: string): unknown {
  switch (route) {
    case '/api/search/random':
      return []
    case '/api/search/statistics':
      return { total: 0 }
    default:
      return {
        albums: { total: 0, count: 0, items: [], facets: [] },
        assets: { total: 0, count: 0, items: [], facets: [], nextPage: null },
      }
  }
}

/** Parses a JSON search body (empty → `{}`); anything but an object is a 400. */
export function parseSearchBody(raw: Buffer): Record<string, unknown> {
  if (raw.length === 0) return {}
  let parsed: unknown
  try {
    parsed = JSON.parse(raw.toString('utf8'))
  } catch {
    throw new GatewayError(400, 'BAD_JSON', 'Invalid JSON body')
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed))
    throw new GatewayError(400, 'BAD_JSON', 'Expected a JSON object')
  return parsed as Record<string, unknown>
}

/**
 * The album filter for a search body: what the client asked, intersected with the binding. A
 * request naming an album outside it gets an empty answer (Immich's search does the same for an
 * album the user cannot see); naming none, the single bound album is put in.
 */
export function planSearch(
  body: Record<string, unknown>,
  binding: AlbumBinding,
  route: string
): SearchPlan {
  const asked = body[ALBUM_IDS]
  if (asked !== undefined && asked !== null) {
    if (!Array.isArray(asked) || asked.some((id) => typeof id !== 'string'))
      throw new GatewayError(400, 'BAD_ALBUM_IDS', 'albumIds must be an array of album ids')
    if (asked.length > 0) {
      const ids = (asked as string[]).map((id) => id.toLowerCase())
      if (ids.some((id) => !binding.ids.has(id))) return { kind: 'empty' }
      return { kind: 'forward', body: { ...body, [ALBUM_IDS]: ids } }
    }
  }
  if (binding.ids.size === 1)
    return { kind: 'forward', body: { ...body, [ALBUM_IDS]: [...binding.ids] } }
  if (route === '/api/search/random') return { kind: 'pick', body }
  throw new GatewayError(
    400,
    'ALBUM_BOUND_AMBIGUOUS',
    'This key is bound to several albums: name one of them in albumIds'
  )
}

/** One of `ids`, each weighted by its size (`sizes`), so every asset is as likely to be shown. */
export function pickWeighted(ids: readonly string[], sizes: readonly number[]): string {
  const total = sizes.reduce((a, b) => a + b, 0)
  if (total === 0) return ids[Math.floor(Math.random() * ids.length)]!
  let pick = Math.random() * total
  for (let i = 0; i < ids.length; i++) {
    pick -= sizes[i]!
    if (pick < 0) return ids[i]!
  }
  return ids[ids.length - 1]!
}

/** `url` without any parameter whose decoded name is `albumId` in any case (`albumid`, `albumId[]`). */
function withoutAlbumId(url: string): string {
  const q = url.indexOf('?')
  if (q === -1) return url
  const kept = url
    .slice(q + 1)
    .split('&')
    .filter((pair) => pair !== '' && queryParams(`?${pair}`)[0]?.name.toLowerCase() !== 'albumid')
  return kept.length ? `${url.slice(0, q)}?${kept.join('&')}` : url.slice(0, q)
}

/**
 * The upstream URL of a timeline request with its `albumId` forced: the one asked (if bound) or the
 * single bound album. Every other spelling (`albumid`, `ALBUMID`) is taken out and one plain
 * `albumId` put in. An album outside the binding answers like Immich does for an album the
 * user cannot read.
 */
export function constrainTimeline(url: string, query: string, binding: AlbumBinding): string {
  // Immich reads `albumId` only (case-sensitive); other spellings are dropped below, never judged.
  const asked = queryParams(query).filter((p) => p.name === 'albumId')
  let albumId: string
  if (asked.length > 1) throw new GatewayError(400, 'BAD_ALBUM_ID', 'albumId must be given once')
  if (asked.length === 1) {
    albumId = asked[0]!.value.toLowerCase()
    if (!binding.ids.has(albumId))
      throw new GatewayError(400, 'ALBUM_NOT_BOUND', 'Not found or no album.read access')
  } else if (binding.ids.size === 1) {
    albumId = binding.ids.values().next().value!
  } else {
    throw new GatewayError(
      400,
      'ALBUM_BOUND_AMBIGUOUS',
      'This key is bound to several albums: name one of them with albumId'
    )
  }
  const rest = withoutAlbumId(url)
  return `${rest}${rest.includes('?') ? '&' : '?'}albumId=${albumId}`
}
