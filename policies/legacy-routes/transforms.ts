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
 * The caller drives the chain (`runSteps` in table.ts), authorizing each call like any request.
 * A transform throws GatewayError for a variant that has no translation.
 *
 * This file holds their types and the helpers they share; the transforms themselves live in
 * request-transforms.ts, body-transforms.ts and response-transforms.ts.
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

export type Obj = Record<string, unknown>

export const isObj = (v: unknown): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v)
export const ok = (status: number): boolean => status >= 200 && status < 300

/** Query params that are credentials or shared-link selectors: they stay in the query. */
const QUERY_CREDENTIALS = new Set(['key', 'slug', 'apiKey', 'sessionKey'])

/** Page size for search paging (the maximum `size` Immich accepts). */
export const SEARCH_PAGE_SIZE = 1000

export function bool(value: string | null): boolean | undefined {
  if (value === 'true') return true
  if (value === 'false') return false
  return undefined
}

export function int(value: string | null): number | undefined {
  if (value === null || !/^-?\d+$/.test(value)) return undefined
  return Number(value)
}

/** The query without its credential params, plus a query holding only those. */
export function splitCredentials(query: URLSearchParams): {
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

export function rawQuery(query: URLSearchParams): string {
  const s = query.toString()
  return s === '' ? '' : `?${s}`
}

/** 410 for a variant of an old call that has no current equivalent. */
export function gone(message: string): GatewayError {
  return new GatewayError(410, 'LEGACY_VARIANT_GONE', message)
}

/** Old `duration` string from v3 integer milliseconds (`"H:MM:SS.ffffff"`); images had `0:00:00.00000`. */
function durationString(value: unknown): string {
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

export const legacyAssets = (items: unknown): unknown[] =>
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
export function visibilityOf(flags: {
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
export function archivedToVisibility(query: URLSearchParams): URLSearchParams {
  const archived = bool(query.get('isArchived'))
  query.delete('isArchived')
  if (archived !== undefined) query.set('visibility', archived ? 'archive' : 'timeline')
  return query
}

export const notHidden = (asset: unknown): boolean =>
  !isObj(asset) || asset['visibility'] !== 'hidden'

/**
 * Pages through POST /api/search/metadata with `filters` until `nextPage` is null, then hands all
 * items to `done`. A failed page is answered as it came.
 */
export function searchAllPages(
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
