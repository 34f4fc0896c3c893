/**
 * Named transforms for the legacy table (config/legacy-routes.yaml). Every transform is a pure
 * function of its inputs (the clock comes in as `now`), so each one is tested without a server.
 *
 * Three kinds, each referenced by name from a rule:
 * - `request`  — runs in the legacy phase, before routing: edits method, path and query of the
 *                translated request, may supply a JSON body built from the old query (GET → POST
 *                search), multipart text fields to send in front of a streamed upload, or a ready
 *                answer (`respond`) for a variant of the old call that needs no upstream.
 * - `body`     — edits a small JSON request body (the caller reads it; never an upload).
 * - `response` — turns the current response back into the old shape.
 *
 * `body` and `response` transforms may need more upstream calls (album assets, paging): they then
 * return a {@link FollowUp} — the call to make and what to do with its reply — instead of a value.
 * The caller drives the chain (`runSteps` in legacy.ts), authorizing each call like any request.
 * A transform throws GatewayError for a variant that has no translation.
 */
import { GatewayError } from '../../src/errors.js'

// ---------------------------------------------------------------------------------------------
// Types

/** One extra upstream call a transform asks for. `query` is raw, with its leading `?`, or ''. */
export interface UpstreamCall {
  method: string
  path: string
  query?: string
  jsonBody?: unknown
}

/** What the caller hands back for an {@link UpstreamCall}: status and the parsed JSON body. */
export interface UpstreamReply {
  status: number
  body: unknown
}

/** "Make this call, then continue with its reply." A class, so no JSON value is mistaken for one. */
export class FollowUp<T> {
  constructor(
    readonly call: UpstreamCall,
    readonly then: (reply: UpstreamReply) => Step<T>
  ) {}
}

/** A transform's result, possibly after more upstream calls. */
export type Step<T> = T | FollowUp<T>

export interface RequestTransformInput {
  /** Method of the current route (the rule's `to`). */
  method: string
  /** Current path from the rule's `to`, params substituted. */
  path: string
  /** Params of the old path, percent-decoded. */
  params: Readonly<Record<string, string>>
  /** The old query; a fresh copy the transform may edit and return. */
  query: URLSearchParams
  contentType?: string
  /** Clock for defaults (upload dates, memory-lane year); the request time. */
  now?: Date
}

export interface RequestTransformOutput {
  method?: string
  path?: string
  /** Replaces the query (serialised by URLSearchParams); absent keeps the old one byte-for-byte. */
  query?: URLSearchParams
  /** Replaces the (empty) request body with this JSON. */
  jsonBody?: unknown
  /**
   * Multipart text fields to add at the end of the client's streamed form when it lacks them, and
   * fields whose values to capture on the way (they reach the response transform as `ctx.fields`).
   */
  multipartFill?: { defaults: Record<string, string>; capture?: string[] }
  /** Answer without calling upstream (a variant whose answer is known, e.g. no UPLOAD libraries). */
  respond?: ResponseResult
}

export type RequestTransform = (input: RequestTransformInput) => RequestTransformOutput

/** What body and response transforms know about the old request. */
export interface TransformContext {
  /** Params of the old path, percent-decoded. */
  params: Readonly<Record<string, string>>
  /** The old query. */
  query: URLSearchParams
  now?: Date
  /** Text fields captured from a streamed multipart body (complete once the body has been sent). */
  fields?: Readonly<Record<string, string>>
}

/** Receives the parsed JSON body (undefined when there was none) and returns the body to send. */
export type BodyTransform = (body: unknown, ctx: TransformContext) => Step<unknown>

export interface ResponseResult {
  status: number
  body: unknown
}

/**
 * Receives the upstream status and body: parsed JSON for a JSON response, the text for a small
 * `text/*` one. Non-2xx answers are passed back unchanged by every transform here.
 */
export type ResponseTransform = (
  status: number,
  body: unknown,
  ctx: TransformContext
) => Step<ResponseResult>

export interface LegacyTransforms {
  request: Readonly<Record<string, RequestTransform>>
  body: Readonly<Record<string, BodyTransform>>
  response: Readonly<Record<string, ResponseTransform>>
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Obj = Record<string, unknown>

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v)
const ok = (status: number): boolean => status >= 200 && status < 300

/** Query params that are credentials or shared-link selectors: they stay in the query. */
const QUERY_CREDENTIALS = new Set(['key', 'slug', 'apiKey', 'sessionKey'])

/** Page size for search paging (the maximum `size` Immich accepts). */
const SEARCH_PAGE_SIZE = 1000

function bool(value: string | null): boolean | undefined {
  if (value === 'true') return true
  if (value === 'false') return false
  return undefined
}

function int(value: string | null): number | undefined {
  if (value === null || !/^-?\d+$/.test(value)) return undefined
  return Number(value)
}

/** The query without its credential params, plus a query holding only those. */
function splitCredentials(query: URLSearchParams): {
  filters: [string, string][]
  kept: URLSearchParams
} {
  const kept = new URLSearchParams()
  const filters: [string, string][] = []
  for (const [k, v] of query) {
    if (QUERY_CREDENTIALS.has(k)) kept.append(k, v)
    else filters.push([k, v])
  }
  return { filters, kept }
}

function rawQuery(query: URLSearchParams): string {
  const s = query.toString()
  return s === '' ? '' : `?${s}`
}

/** 410 for a variant of an old call that has no current equivalent. */
function gone(message: string): GatewayError {
  return new GatewayError(410, 'LEGACY_VARIANT_GONE', message)
}

/** Old `duration` string from v3 integer milliseconds (`"H:MM:SS.ffffff"`); images had `0:00:00.00000`. */
export function durationString(value: unknown): string {
  if (typeof value === 'string') return value
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return '0:00:00.00000'
  const ms = Math.round(value)
  const h = Math.floor(ms / 3_600_000)
  const m = Math.floor((ms % 3_600_000) / 60_000)
  const s = Math.floor((ms % 60_000) / 1000)
  const micros = (ms % 1000) * 1000
  return `${h}:${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}.${String(micros).padStart(6, '0')}`
}

/**
 * [AR] backfill: an AssetResponseDto as pre-v3 parsers require it. `deviceAssetId`/`deviceId` are
 * gone for good and come back as `""` (the keys are required by aioimmich/immichpy models);
 * `duration` goes back to its string form; `isArchived` is derived from `visibility` if missing.
 */
export function legacyAsset(asset: unknown): unknown {
  if (!isObj(asset)) return asset
  const out: Obj = { ...asset }
  if (typeof out['deviceAssetId'] !== 'string') out['deviceAssetId'] = ''
  if (typeof out['deviceId'] !== 'string') out['deviceId'] = ''
  out['duration'] = durationString(out['duration'])
  if (typeof out['isArchived'] !== 'boolean' && typeof out['visibility'] === 'string') {
    out['isArchived'] = out['visibility'] === 'archive'
  }
  return out
}

const legacyAssets = (items: unknown): unknown[] =>
  Array.isArray(items) ? items.map(legacyAsset) : []

/**
 * Album backfill (#5/#9): `owner`/`ownerId` from the `albumUsers` entry with role `owner`,
 * `sharedUsers` from the others, `assets` from `assets` (or `[]`). Fields present are kept.
 */
export function legacyAlbum(album: unknown, assets?: unknown[]): unknown {
  if (!isObj(album)) return album
  const out: Obj = { ...album }
  const members = Array.isArray(album['albumUsers']) ? album['albumUsers'].filter(isObj) : []
  const owner = members.find((m) => m['role'] === 'owner')
  if (out['owner'] === undefined && owner !== undefined) out['owner'] = owner['user']
  if (out['ownerId'] === undefined) {
    const fromOwner = isObj(out['owner']) ? out['owner']['id'] : undefined
    if (typeof fromOwner === 'string') out['ownerId'] = fromOwner
  }
  if (!Array.isArray(out['sharedUsers'])) {
    out['sharedUsers'] = members.filter((m) => m['role'] !== 'owner').map((m) => m['user'])
  }
  out['assets'] = assets ?? legacyAssets(album['assets'])
  return out
}

/** Old visibility flags → v3 `visibility` (LEGACY.md #111). `undefined`: no single visibility fits. */
function visibilityOf(flags: {
  isArchived?: boolean
  isVisible?: boolean
  withArchived?: boolean
}): string | undefined {
  if (flags.isVisible === false) return 'hidden'
  if (flags.isArchived === true) return 'archive'
  if (flags.isArchived === false) return 'timeline'
  if (flags.withArchived === true) return undefined
  return 'timeline'
}

/** Replaces `isArchived=true|false` by `visibility=archive|timeline`, in place, for GET routes. */
function archivedToVisibility(query: URLSearchParams): URLSearchParams {
  const archived = bool(query.get('isArchived'))
  query.delete('isArchived')
  if (archived !== undefined) query.set('visibility', archived ? 'archive' : 'timeline')
  return query
}

const notHidden = (asset: unknown): boolean => !isObj(asset) || asset['visibility'] !== 'hidden'

/**
 * Pages through POST /api/search/metadata with `filters` until `nextPage` is null, then hands all
 * items to `done`. A failed page is answered as it came.
 */
function searchAllPages(
  filters: Obj,
  query: string,
  done: (items: unknown[]) => Step<ResponseResult>,
  page = 1,
  acc: unknown[] = []
): Step<ResponseResult> {
  const call: UpstreamCall = {
    method: 'POST',
    path: '/api/search/metadata',
    query,
    jsonBody: { ...filters, page, size: SEARCH_PAGE_SIZE },
  }
  return new FollowUp(call, (reply) => {
    if (!ok(reply.status)) return { status: reply.status, body: reply.body }
    const assets = isObj(reply.body) && isObj(reply.body['assets']) ? reply.body['assets'] : {}
    const items = Array.isArray(assets['items']) ? assets['items'] : []
    acc.push(...items)
    const next = Number(assets['nextPage'])
    if (assets['nextPage'] == null || !Number.isInteger(next) || next <= page || items.length === 0)
      return done(acc)
    return searchAllPages(filters, query, done, next, acc)
  })
}

/** v3 columnar time bucket (`{id:[], isImage:[], ...}`) → one object per asset, AR-backfilled. */
export function zipTimeBucket(bucket: unknown): unknown[] {
  if (!isObj(bucket) || !Array.isArray(bucket['id'])) return []
  const col = (name: string, i: number): unknown => {
    const values = bucket[name]
    return Array.isArray(values) ? values[i] : undefined
  }
  return bucket['id'].map((id, i) => {
    const visibility = col('visibility', i)
    const asset: Obj = {
      id,
      ownerId: col('ownerId', i),
      type: col('isImage', i) === false ? 'VIDEO' : 'IMAGE',
      isFavorite: col('isFavorite', i) === true,
      isArchived: visibility === 'archive',
      isTrashed: col('isTrashed', i) === true,
      thumbhash: col('thumbhash', i) ?? null,
      fileCreatedAt: col('fileCreatedAt', i),
      duration: col('duration', i),
      livePhotoVideoId: col('livePhotoVideoId', i) ?? null,
      exifInfo: {
        city: col('city', i) ?? null,
        country: col('country', i) ?? null,
        projectionType: col('projectionType', i) ?? null,
      },
    }
    if (typeof visibility === 'string') asset['visibility'] = visibility
    return legacyAsset(asset)
  })
}

// ---------------------------------------------------------------------------------------------
// Multipart

// RFC 2046 §5.1.1: 1–70 of these, not ending in a space.
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/

/** The boundary of a `multipart/form-data` content type (quoted or not), or undefined. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined
  const semi = contentType.indexOf(';')
  const type = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase()
  if (type !== 'multipart/form-data' || semi === -1) return undefined
  const params = /;\s*([^=;\s]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]*))/g
  for (let m = params.exec(contentType); m !== null; m = params.exec(contentType)) {
    if (m[1]!.toLowerCase() !== 'boundary') continue
    const value = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!
    return BOUNDARY.test(value) ? value : undefined
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------
// Request transforms

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

// ---------------------------------------------------------------------------------------------
// Body transforms

/** Applies `edit` to a JSON object body; anything else (no body, an array) passes unchanged. */
function objectBody(edit: (body: Obj, ctx: TransformContext) => Step<unknown>): BodyTransform {
  return (body, ctx) => (isObj(body) ? edit({ ...body }, ctx) : body)
}

function userIdsToAlbumUsers(body: Obj, field: string): Obj {
  const ids = body[field]
  delete body[field]
  if (!Array.isArray(ids)) return body
  const existing = Array.isArray(body['albumUsers']) ? body['albumUsers'] : []
  body['albumUsers'] = [...existing, ...ids.map((userId) => ({ userId, role: 'editor' }))]
  return body
}

/** `""` → `null` for the named fields (v3 rejects empty strings there). */
function emptyToNull(...fields: string[]): BodyTransform {
  return objectBody((body) => {
    for (const f of fields) if (body[f] === '') body[f] = null
    return body
  })
}

/** `{isArchived}` → `{visibility}` (removed 1.133). */
function archivedFlagToVisibility(body: Obj): Obj {
  if (typeof body['isArchived'] === 'boolean') {
    if (body['visibility'] === undefined)
      body['visibility'] = body['isArchived'] ? 'archive' : 'timeline'
    delete body['isArchived']
  }
  return body
}

/**
 * #22 PUT /api/asset: `isArchived` → `visibility`; `stackParentId` (gone 1.112) → POST /api/stacks
 * `{assetIds: [parent, ...ids]}` first; `removeParent` → each asset leaves its stack
 * (GET /api/assets/{id}, DELETE /api/stacks/{stackId}/assets/{id}). The rest goes to PUT /api/assets.
 */
const assetBulkUpdate: BodyTransform = objectBody((body) => {
  archivedFlagToVisibility(body)
  const ids = Array.isArray(body['ids'])
    ? body['ids'].filter((x): x is string => typeof x === 'string')
    : []
  const parent = body['stackParentId']
  const removeParent = body['removeParent'] === true
  delete body['stackParentId']
  delete body['removeParent']

  const failed = (reply: UpstreamReply, what: string): GatewayError =>
    new GatewayError(
      reply.status >= 400 && reply.status < 500 ? reply.status : 502,
      'LEGACY_STEP_FAILED',
      `${what} failed (${reply.status})`
    )

  const unstack = (i: number): Step<unknown> => {
    if (i >= ids.length) return body
    const id = ids[i]!
    return new FollowUp(
      { method: 'GET', path: `/api/assets/${encodeURIComponent(id)}` },
      (reply) => {
        if (!ok(reply.status)) throw failed(reply, 'Reading the asset')
        const stack =
          isObj(reply.body) && isObj(reply.body['stack']) ? reply.body['stack']['id'] : undefined
        if (typeof stack !== 'string') return unstack(i + 1)
        const call = {
          method: 'DELETE',
          path: `/api/stacks/${encodeURIComponent(stack)}/assets/${encodeURIComponent(id)}`,
        }
        return new FollowUp(call, (removed) => {
          if (!ok(removed.status)) throw failed(removed, 'Removing the asset from its stack')
          return unstack(i + 1)
        })
      }
    )
  }

  if (typeof parent === 'string') {
    const call = {
      method: 'POST',
      path: '/api/stacks',
      jsonBody: { assetIds: [parent, ...ids.filter((id) => id !== parent)] },
    }
    return new FollowUp(call, (reply) => {
      if (!ok(reply.status)) throw failed(reply, 'Creating the stack')
      return body
    })
  }
  return removeParent ? unstack(0) : body
})

export const bodyTransforms: Readonly<Record<string, BodyTransform>> = {
  /** #11/#12/#99: pre-1.9x `{assetIds}` → `{ids}`. */
  'asset-ids': objectBody((body) => {
    if (Array.isArray(body['assetIds']) && body['ids'] === undefined) body['ids'] = body['assetIds']
    delete body['assetIds']
    return body
  }),
  /** #6: `sharedWithUserIds` → `albumUsers[{userId, role: editor}]`. */
  'album-create': objectBody((body) => userIdsToAlbumUsers(body, 'sharedWithUserIds')),
  /** #15: `sharedUserIds` → `albumUsers[{userId, role: editor}]`. */
  'album-users': objectBody((body) => userIdsToAlbumUsers(body, 'sharedUserIds')),
  /** #17: `permissions` is required since #11824; `["all"]` keeps the old behaviour. */
  'api-key-create': objectBody((body) => {
    if (body['permissions'] === undefined) body['permissions'] = ['all']
    return body
  }),
  'asset-bulk-update': assetBulkUpdate,
  /** #25: `isArchived` → `visibility`. */
  'asset-update': objectBody(archivedFlagToVisibility),
  /** #55: `type`, `isVisible`, `isWatched` are gone; UPLOAD libraries no longer exist. */
  'library-create': objectBody((body) => {
    if (typeof body['type'] === 'string' && body['type'].toUpperCase() === 'UPLOAD') {
      throw gone('Upload libraries no longer exist; only external libraries can be created')
    }
    delete body['type']
    delete body['isVisible']
    delete body['isWatched']
    return body
  }),
  /** #57: `isVisible` is gone. */
  'library-update': objectBody((body) => {
    delete body['isVisible']
    return body
  }),
  /** #59: one scan type since 1.116: the `refresh*` body is dropped. */
  'library-scan': () => ({}),
  /** #67/#70 */
  'person-update': emptyToNull('birthDate', 'color'),
  /** #89 */
  'shared-link-create': emptyToNull('description', 'password', 'slug'),
  /** #92: `changeExpiryTime` without `expiresAt` meant "never expires"; `""` → `null`. */
  'shared-link-update': objectBody((body) => {
    if (body['changeExpiryTime'] === true && body['expiresAt'] === undefined)
      body['expiresAt'] = null
    delete body['changeExpiryTime']
    for (const f of ['description', 'password', 'slug']) if (body[f] === '') body[f] = null
    return body
  }),
  /** #95: tag `type` (OBJECT/FACE/CUSTOM) is gone. */
  'tag-create': objectBody((body) => {
    delete body['type']
    return body
  }),
}

// ---------------------------------------------------------------------------------------------
// Response transforms

/** Applies `map` to a 2xx body; any other answer passes unchanged. */
function onSuccess(
  map: (body: unknown, ctx: TransformContext, status: number) => Step<ResponseResult>
): ResponseTransform {
  return (status, body, ctx) => (ok(status) ? map(body, ctx, status) : { status, body })
}

function searchItems(body: unknown): unknown[] {
  const assets = isObj(body) && isObj(body['assets']) ? body['assets'] : undefined
  return assets !== undefined && Array.isArray(assets['items']) ? assets['items'] : []
}

/**
 * #9/#6 album with its assets: v3 dropped `assets`; rebuild them from POST /api/search/metadata
 * `{albumIds:[id]}` (all pages), or for a shared-link caller (`key`/`slug`, which search does not
 * accept) from the album's timeline buckets. `withoutAssets=true` skips the fan-out.
 */
const albumDetail: ResponseTransform = onSuccess((album, ctx, status) => {
  if (!isObj(album) || typeof album['id'] !== 'string') return { status, body: album }
  if (bool(ctx.query.get('withoutAssets')) === true) return { status, body: legacyAlbum(album, []) }
  const id = album['id']
  const shared = new URLSearchParams()
  for (const k of ['key', 'slug']) {
    const v = ctx.query.get(k)
    if (v !== null) shared.set(k, v)
  }
  if (shared.size === 0) {
    const order = album['order'] === 'asc' ? 'asc' : 'desc'
    return searchAllPages({ albumIds: [id], withExif: true, order }, '', (items) => ({
      status,
      body: legacyAlbum(album, items.map(legacyAsset)),
    }))
  }
  const base = new URLSearchParams(shared)
  base.set('albumId', id)
  return new FollowUp(
    { method: 'GET', path: '/api/timeline/buckets', query: rawQuery(base) },
    (reply) => {
      if (!ok(reply.status)) return { status: reply.status, body: reply.body }
      const buckets = Array.isArray(reply.body)
        ? reply.body
            .filter(isObj)
            .map((b) => b['timeBucket'])
            .filter((b) => typeof b === 'string')
        : []
      const assets: unknown[] = []
      const next = (i: number): Step<ResponseResult> => {
        if (i >= buckets.length) return { status, body: legacyAlbum(album, assets) }
        const q = new URLSearchParams(base)
        q.set('timeBucket', buckets[i]!)
        return new FollowUp(
          { method: 'GET', path: '/api/timeline/bucket', query: rawQuery(q) },
          (bucket) => {
            if (!ok(bucket.status)) return { status: bucket.status, body: bucket.body }
            assets.push(...zipTimeBucket(bucket.body))
            return next(i + 1)
          }
        )
      }
      return next(0)
    }
  )
})

/** #21/#44: search envelope → the bare asset array the old route returned, without hidden parts. */
const searchItemsResponse: ResponseTransform = onSuccess((body, ctx, status) => {
  const items = searchItems(body)
  const userId = ctx.query.get('userId')
  if (userId !== null && items.some((a) => isObj(a) && a['ownerId'] !== userId)) {
    // Search only returns the caller's own assets: another user's list has no translation.
    throw gone(
      "Listing another user's assets is no longer possible; search returns your own assets"
    )
  }
  const wantsHidden = bool(ctx.query.get('isVisible')) === false
  return { status, body: (wantsHidden ? items : items.filter(notHidden)).map(legacyAsset) }
})

/** All pages of `{personIds|tagIds: [id]}`; the first page is the primary response. */
function assetsOfResponse(field: 'personIds' | 'tagIds'): ResponseTransform {
  return onSuccess((body, ctx, status) => {
    const first = searchItems(body)
    const assets = isObj(body) && isObj(body['assets']) ? body['assets'] : {}
    const finish = (items: unknown[]): ResponseResult => ({
      status,
      body: items.filter(notHidden).map(legacyAsset),
    })
    const next = Number(assets['nextPage'])
    if (assets['nextPage'] == null || !Number.isInteger(next) || next <= 1) return finish(first)
    const { kept } = splitCredentials(ctx.query)
    return searchAllPages(
      { [field]: [ctx.params['id']], withExif: true },
      rawQuery(kept),
      finish,
      next,
      [...first]
    )
  })
}

export const responseTransforms: Readonly<Record<string, ResponseTransform>> = {
  /** #5: album list items backfilled; the list never carried assets. */
  'album-list': onSuccess((body, _ctx, status) => ({
    status,
    body: Array.isArray(body) ? body.map((a) => legacyAlbum(a, [])) : body,
  })),
  /** #10/#15: one album without assets (the old update calls returned none). */
  album: onSuccess((body, _ctx, status) => ({ status, body: legacyAlbum(body, []) })),
  'album-detail': albumDetail,
  /** #24/#25/#45: one asset. */
  asset: onSuccess((body, _ctx, status) => ({ status, body: legacyAsset(body) })),
  /** #36: a bare asset array. */
  'asset-list': onSuccess((body, _ctx, status) => ({ status, body: legacyAssets(body) })),
  'search-items': searchItemsResponse,
  'person-assets': assetsOfResponse('personIds'),
  'tag-assets': assetsOfResponse('tagIds'),
  /** #110: same `{albums, assets:{items}}` envelope, items backfilled, hidden parts left out as the old search did. */
  'search-envelope': onSuccess((body, _ctx, status) => {
    if (!isObj(body) || !isObj(body['assets'])) return { status, body }
    const items = searchItems(body).filter(notHidden).map(legacyAsset)
    return { status, body: { ...body, assets: { ...body['assets'], items, count: items.length } } }
  }),
  /** #26: `{id, status: created|duplicate}` → `{id, duplicate}` (status code unchanged: 201 new, 200 duplicate). */
  'asset-upload': onSuccess((body, ctx, status) => {
    if (!isObj(body)) return { status, body }
    const result = { status, body: { id: body['id'], duplicate: body['status'] === 'duplicate' } }
    const description = ctx.fields?.['description']
    if (
      typeof body['id'] !== 'string' ||
      description === undefined ||
      body['status'] === 'duplicate'
    )
      return result
    // The asset exists whatever the follow-up's outcome: the old client still gets its id.
    return new FollowUp(
      {
        method: 'PUT',
        path: `/api/assets/${encodeURIComponent(body['id'])}`,
        jsonBody: { description },
      },
      () => result
    )
  }),
  /**
   * #35: `MemoryResponseDto[]` → `[{yearsAgo, title, assets}]` as the old live query built them,
   * youngest first; memories of this year or later are skipped.
   */
  'memory-lane': onSuccess((body, ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    const thisYear = (ctx.now ?? new Date()).getUTCFullYear()
    const byYears = new Map<number, unknown[]>()
    for (const memory of body) {
      if (!isObj(memory) || !isObj(memory['data']) || typeof memory['data']['year'] !== 'number')
        continue
      const yearsAgo = thisYear - memory['data']['year']
      if (yearsAgo < 1) continue
      byYears.set(yearsAgo, [...(byYears.get(yearsAgo) ?? []), ...legacyAssets(memory['assets'])])
    }
    const lanes = [...byYears.entries()]
      .filter(([, assets]) => assets.length > 0)
      .sort(([a], [b]) => a - b)
      .map(([yearsAgo, assets]) => ({
        yearsAgo,
        title: `${yearsAgo} year${yearsAgo > 1 ? 's' : ''} since...`,
        assets,
      }))
    return { status, body: lanes }
  }),
  /** #40: columnar bucket → asset objects (the fields the bucket carries; see the rule note). */
  'timeline-bucket': onSuccess((body, _ctx, status) => ({ status, body: zipTimeBucket(body) })),
  /** #42 partial: one asset per city → `{id, city, resizePath, deviceAssetId, deviceId}`. */
  'curated-locations': onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.filter(isObj).map((a) => ({
        id: a['id'],
        city: isObj(a['exifInfo']) ? (a['exifInfo']['city'] ?? null) : null,
        resizePath: '',
        deviceAssetId: '',
        deviceId: '',
      })),
    }
  }),
  /** #54/#56/#57: libraries lost `type`; every remaining one is EXTERNAL. */
  library: onSuccess((body, _ctx, status) => {
    const add = (l: unknown): unknown => (isObj(l) ? { type: 'EXTERNAL', ...l } : l)
    return { status, body: Array.isArray(body) ? body.map(add) : add(body) }
  }),
  /**
   * #66: the people list is paginated since 1.112 (500 by default): fetch every page so the old
   * client gets the complete `{total, hidden, people}` it always got (never a bare array).
   */
  'people-all-pages': onSuccess((body, ctx, status) => {
    if (!isObj(body) || !Array.isArray(body['people'])) return { status, body }
    const people = [...body['people']]
    const finish = (): ResponseResult => {
      const out: Obj = { ...body, people }
      delete out['hasNextPage']
      return { status, body: out }
    }
    const fetch = (page: number): Step<ResponseResult> => {
      const q = new URLSearchParams(ctx.query)
      q.set('page', String(page))
      if (!q.has('size')) q.set('size', String(SEARCH_PAGE_SIZE))
      return new FollowUp({ method: 'GET', path: '/api/people', query: rawQuery(q) }, (reply) => {
        if (!ok(reply.status)) return { status: reply.status, body: reply.body }
        const more =
          isObj(reply.body) && Array.isArray(reply.body['people']) ? reply.body['people'] : []
        people.push(...more)
        return isObj(reply.body) && reply.body['hasNextPage'] === true && more.length > 0
          ? fetch(page + 1)
          : finish()
      })
    }
    const current = int(ctx.query.get('page')) ?? 1
    return body['hasNextPage'] === true && people.length > 0 ? fetch(current + 1) : finish()
  }),
  /**
   * #94/#95/#96: tags lost `type` and `userId`: add `type: "CUSTOM"` (the only kind left) and the
   * caller's id from GET /api/users/me (`""` when that call is not allowed).
   */
  tag: onSuccess((body, _ctx, status) => {
    if (!isObj(body) && !Array.isArray(body)) return { status, body }
    return new FollowUp({ method: 'GET', path: '/api/users/me' }, (me) => {
      const userId =
        ok(me.status) && isObj(me.body) && typeof me.body['id'] === 'string' ? me.body['id'] : ''
      const add = (t: unknown): unknown => (isObj(t) ? { type: 'CUSTOM', userId, ...t } : t)
      return { status, body: Array.isArray(body) ? body.map(add) : add(body) }
    })
  }),
  /** #99: `[{id, success, error}]` → `[{assetId, success, error}]`. */
  'tag-assets-result': onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.map((r) => {
        if (!isObj(r)) return r
        const { id, ...rest } = r
        return { assetId: id, ...rest }
      }),
    }
  }),
  /** #100: `isAll=false` listed everyone but the caller. */
  'user-list': onSuccess((body, ctx, status) => {
    if (!Array.isArray(body) || bool(ctx.query.get('isAll')) !== false) return { status, body }
    return new FollowUp({ method: 'GET', path: '/api/users/me' }, (me) => {
      if (!ok(me.status)) return { status: me.status, body: me.body }
      const self = isObj(me.body) ? me.body['id'] : undefined
      return { status, body: body.filter((u) => !isObj(u) || u['id'] !== self) }
    })
  }),
  /** #86: `/custom.css` text → the old `{customCss}`. */
  theme: onSuccess((body, _ctx, status) => ({
    status,
    body: { customCss: typeof body === 'string' ? body : '' },
  })),
  /**
   * §1.5 alias GET /api/asset/{id}/faces: the items keep every current field and gain the
   * `personId` and `boundingBox` the calling bot reads. An empty list stays an empty list.
   */
  faces: onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.map((f) => {
        if (!isObj(f)) return f
        const person = isObj(f['person']) ? f['person']['id'] : null
        return {
          ...f,
          personId: person ?? null,
          boundingBox: {
            x1: f['boundingBoxX1'],
            y1: f['boundingBoxY1'],
            x2: f['boundingBoxX2'],
            y2: f['boundingBoxY2'],
          },
        }
      }),
    }
  }),
}

/** The registry the legacy table names its transforms from. */
export const legacyTransforms: LegacyTransforms = {
  request: requestTransforms,
  body: bodyTransforms,
  response: responseTransforms,
}
