/** Request transforms: edit method, path and query of a translated request before routing (see transforms.ts). */
import { GatewayError } from '../../src/errors.js'
import {
  type Obj,
  type RequestTransform,
  SEARCH_PAGE_SIZE,
  archivedToVisibility,
  bool,
  boundaryOf,
  gone,
  int,
  splitCredentials,
  visibilityOf,
} from './transforms.js'

/**
 * #5: `shared=true|false` → `isShared=true|false`; no `shared` → `isOwned=true` (pre-v3 default:
 * owned only). With `assetId` the old service ignored `shared` and listed owned and shared albums
 * holding the asset, which is what v3 does without either flag.
 */
const albumListQuery: RequestTransform = ({ query }) => {
  const shared = query.get('shared')
  query.delete('shared')
  if (query.has('assetId')) return { query }
  if (shared === null) query.set('isOwned', 'true')
  else query.set('isShared', shared)
  return { query }
}

/** #9: `withoutAssets` was removed in v3 (the response transform reads it from the old query). */
const albumGetQuery: RequestTransform = ({ query }) => {
  if (!query.has('withoutAssets')) return {}
  query.delete('withoutAssets')
  return { query }
}

/**
 * #21 GET /api/asset → POST /api/search/metadata: `take` → `size` (≤1000, default 1000 as the old
 * cap), `skip` → `page = skip/take + 1`, `isArchived` → `visibility`, dates and `isFavorite` copied.
 */
const assetListQuery: RequestTransform = ({ query }) => {
  const { kept } = splitCredentials(query)
  const body: Obj = { withExif: true }
  for (const key of ['updatedAfter', 'updatedBefore'] as const) {
    const v = query.get(key)
    if (v !== null) body[key] = v
  }
  const favorite = bool(query.get('isFavorite'))
  if (favorite !== undefined) body['isFavorite'] = favorite
  const archived = bool(query.get('isArchived'))
  if (archived !== undefined) body['visibility'] = archived ? 'archive' : 'timeline'
  const take = int(query.get('take'))
  const size = take !== undefined && take > 0 ? Math.min(take, SEARCH_PAGE_SIZE) : SEARCH_PAGE_SIZE
  const skip = int(query.get('skip'))
  body['size'] = size
  body['page'] = skip !== undefined && skip > 0 ? Math.floor(skip / size) + 1 : 1
  return { method: 'POST', query: kept, jsonBody: body }
}

/** #31: `format=JPEG` → `size=preview`; `WEBP` or none → `size=thumbnail` (the old default was WEBP). */
const assetThumbnailQuery: RequestTransform = ({ query }) => {
  const format = query.get('format')
  query.delete('format')
  if (!query.has('size'))
    query.set('size', format?.toUpperCase() === 'JPEG' ? 'preview' : 'thumbnail')
  return { query }
}

/**
 * #30 GET /api/asset/file/{id}: old `getServePath` without the asset lookup it needs. `isThumb=true`
 * → thumbnail, `isWeb=true` → preview, otherwise the original. Videos asked with `isWeb`/`isThumb`
 * get the still instead of the video, GIFs asked with `isWeb` lose their animation (see the rule note).
 */
const assetFileQuery: RequestTransform = ({ params, query }) => {
  const thumb = bool(query.get('isThumb'))
  const web = bool(query.get('isWeb'))
  query.delete('isThumb')
  query.delete('isWeb')
  const id = encodeURIComponent(params['id'] ?? '')
  if (thumb === true) {
    query.set('size', 'thumbnail')
    return { path: `/api/assets/${id}/thumbnail`, query }
  }
  if (web === true) {
    query.set('size', 'preview')
    return { path: `/api/assets/${id}/thumbnail`, query }
  }
  return { query }
}

/**
 * #35 memory lane: `day`/`month` (or the older `timestamp`) → `for=<this year>-MM-DD&type=on_this_day`.
 * 29 February in a common year asks for the 28th.
 */
const memoryLaneQuery: RequestTransform = ({ query, now = new Date() }) => {
  const { kept } = splitCredentials(query)
  let month = int(query.get('month'))
  let day = int(query.get('day'))
  const timestamp = query.get('timestamp')
  if ((month === undefined || day === undefined) && timestamp !== null) {
    const t = new Date(timestamp)
    if (!Number.isNaN(t.getTime())) {
      month = t.getUTCMonth() + 1
      day = t.getUTCDate()
    }
  }
  if (month === undefined || day === undefined || month < 1 || month > 12 || day < 1 || day > 31) {
    throw new GatewayError(400, 'LEGACY_BAD_QUERY', 'day and month must be numbers')
  }
  const year = now.getUTCFullYear()
  const lastDay = new Date(Date.UTC(year, month, 0)).getUTCDate()
  const date = `${year}-${String(month).padStart(2, '0')}-${String(Math.min(day, lastDay)).padStart(2, '0')}`
  kept.set('for', date)
  kept.set('type', 'on_this_day')
  return { query: kept }
}

/** #36 GET random → POST /api/search/random `{size: count, visibility: timeline, withExif}` (old default count 1). */
const assetRandomQuery: RequestTransform = ({ query }) => {
  const { kept } = splitCredentials(query)
  const count = int(query.get('count'))
  const size = count !== undefined && count > 0 ? Math.min(count, SEARCH_PAGE_SIZE) : 1
  return { method: 'POST', query: kept, jsonBody: { size, visibility: 'timeline', withExif: true } }
}

/** #38: `isArchived` → `visibility`. */
const visibilityQuery: RequestTransform = ({ query }) => ({ query: archivedToVisibility(query) })

/**
 * #39/#40 timeline: `isArchived` → `visibility`, `size` dropped (month buckets only; `size=DAY` has
 * no equivalent → 410), a bare-date `timeBucket` sent as midnight UTC (immich#22672).
 */
const timelineQuery: RequestTransform = ({ query }) => {
  if (query.get('size')?.toUpperCase() === 'DAY') {
    throw gone('Day time buckets no longer exist; use GET /api/timeline/buckets (month buckets)')
  }
  query.delete('size')
  archivedToVisibility(query)
  const bucket = query.get('timeBucket')
  if (bucket !== null && /^\d{4}-\d{2}-\d{2}$/.test(bucket))
    query.set('timeBucket', `${bucket}T00:00:00.000Z`)
  return { query }
}

// Old GET /assets filters that v3 no longer has (#44/#111).
const DROPPED_SEARCH_FIELDS = new Set([
  'resizePath',
  'webpPath',
  'isReadOnly',
  'isExternal',
  'isArchived',
  'isVisible',
  'withArchived',
  'deviceId',
  'deviceAssetId',
])
const NUMERIC_SEARCH_FIELDS = new Set(['page', 'size', 'rating'])
const ARRAY_SEARCH_FIELDS = new Set(['personIds', 'tagIds', 'albumIds'])

function searchFlags(query: URLSearchParams): string | undefined {
  const flags: { isArchived?: boolean; isVisible?: boolean; withArchived?: boolean } = {}
  const archived = bool(query.get('isArchived'))
  const visible = bool(query.get('isVisible'))
  const withArchived = bool(query.get('withArchived'))
  if (archived !== undefined) flags.isArchived = archived
  if (visible !== undefined) flags.isVisible = visible
  if (withArchived !== undefined) flags.withArchived = withArchived
  return visibilityOf(flags)
}

/** #44 GET /api/assets?filters → POST /api/search/metadata: each filter → the same-named JSON field. */
const assetsSearchQuery: RequestTransform = ({ query }) => {
  const { filters, kept } = splitCredentials(query)
  const body: Obj = {}
  for (const [k, v] of filters) {
    if (DROPPED_SEARCH_FIELDS.has(k)) continue
    if (ARRAY_SEARCH_FIELDS.has(k)) {
      body[k] = [...((body[k] as string[] | undefined) ?? []), v]
      continue
    }
    const b = bool(v)
    const n = NUMERIC_SEARCH_FIELDS.has(k) ? int(v) : undefined
    body[k] = n ?? b ?? v
  }
  const visibility = searchFlags(query)
  if (visibility !== undefined) body['visibility'] = visibility
  return { method: 'POST', query: kept, jsonBody: body }
}

/** #71/#98 old "assets of X" lists → POST /api/search/metadata `{<field>: [id]}`; paging is the response's job. */
function assetsOfQuery(field: 'personIds' | 'tagIds'): RequestTransform {
  return ({ params, query }) => {
    const { kept } = splitCredentials(query)
    return {
      method: 'POST',
      query: kept,
      jsonBody: { [field]: [params['id']], withExif: true, page: 1, size: SEARCH_PAGE_SIZE },
    }
  }
}

/**
 * #110 GET /api/search (typesense era): `clip`/`smart=true` → POST /api/search/smart `{query}`,
 * otherwise POST /api/search/metadata `{originalFileName}`; `motion` → `isMotion`; `recent` dropped.
 */
const searchLegacyQuery: RequestTransform = ({ query }) => {
  const { kept } = splitCredentials(query)
  const smart = bool(query.get('clip')) === true || bool(query.get('smart')) === true
  const text = query.get('q') ?? query.get('query')
  const body: Obj = {}
  if (text !== null) body[smart ? 'query' : 'originalFileName'] = text
  const motion = bool(query.get('motion'))
  if (motion !== undefined) body['isMotion'] = motion
  const withArchived = bool(query.get('withArchived'))
  if (withArchived !== true) body['visibility'] = 'timeline'
  for (const key of ['page', 'size'] as const) {
    const n = int(query.get(key))
    if (n !== undefined) body[key] = n
  }
  const favorite = bool(query.get('isFavorite'))
  if (favorite !== undefined) body['isFavorite'] = favorite
  return {
    method: 'POST',
    path: smart ? '/api/search/smart' : '/api/search/metadata',
    query: kept,
    jsonBody: body,
  }
}

/** #54: `type=UPLOAD` libraries no longer exist → `[]`; `type` is otherwise dropped. */
const libraryListQuery: RequestTransform = ({ query }) => {
  const type = query.get('type')
  if (type?.toUpperCase() === 'UPLOAD') return { respond: { status: 200, body: [] } }
  if (type === null) return {}
  query.delete('type')
  return { query }
}

/** #66: ask for the largest page; the response transform fetches the rest. */
const personListQuery: RequestTransform = ({ query }) => {
  if (!query.has('size')) query.set('size', String(SEARCH_PAGE_SIZE))
  return { query }
}

/** #87: the old call had no body; the new one needs `{isOnboarded: true}`. */
const adminOnboardingBody: RequestTransform = () => ({ jsonBody: { isOnboarded: true } })

/** #90: `password` and `token` query params were removed in v3 (password links must use POST /api/shared-links/login). */
const sharedLinkMeQuery: RequestTransform = ({ query }) => {
  if (!query.has('password') && !query.has('token')) return {}
  query.delete('password')
  query.delete('token')
  return { query }
}

/** §1.5 alias GET /api/asset/{id}/faces → GET /api/faces?id={id}. */
const assetFacesQuery: RequestTransform = ({ params, query }) => {
  query.set('id', params['id'] ?? '')
  return { query }
}

/**
 * #26 default: the dates current Immich requires are added at the end of the streamed form only when
 * the client did not send them (a repeated field would become an array, which Immich refuses), and
 * an old `description` field is captured for a follow-up update (it was never an upload field).
 */
const assetUploadFill: RequestTransform = ({ contentType, now = new Date() }) => {
  if (boundaryOf(contentType) === undefined) return {}
  const iso = now.toISOString()
  return {
    multipartFill: {
      defaults: { fileCreatedAt: iso, fileModifiedAt: iso },
      capture: ['description'],
    },
  }
}

export const requestTransforms: Readonly<Record<string, RequestTransform>> = {
  'album-list-query': albumListQuery,
  'album-get-query': albumGetQuery,
  'asset-list-query': assetListQuery,
  'asset-thumbnail-query': assetThumbnailQuery,
  'asset-file-query': assetFileQuery,
  'memory-lane-query': memoryLaneQuery,
  'asset-random-query': assetRandomQuery,
  'visibility-query': visibilityQuery,
  'timeline-query': timelineQuery,
  'assets-search-query': assetsSearchQuery,
  'person-assets-query': assetsOfQuery('personIds'),
  'tag-assets-query': assetsOfQuery('tagIds'),
  'search-legacy-query': searchLegacyQuery,
  'library-list-query': libraryListQuery,
  'person-list-query': personListQuery,
  'admin-onboarding-body': adminOnboardingBody,
  'shared-link-me-query': sharedLinkMeQuery,
  'asset-faces-query': assetFacesQuery,
  'asset-upload-fill': assetUploadFill,
}
