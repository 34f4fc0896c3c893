import type { Context } from 'hono'
import type { Env } from '../../src/env.js'
import { readRequestBody } from '../../src/upstream/body.js'
import type { CacheClass } from './key.js'

/**
 * A change through the gateway that voids cached images. `param`: the asset id is the path's `{id}`;
 * `bodyFields`: the asset ids are string arrays in the small JSON body; neither: the whole class.
 */
export interface InvalidationRule {
  cls: CacheClass
  param?: 'id'
  bodyFields?: readonly string[]
}

const asset = (param?: 'id', bodyFields?: readonly string[]): InvalidationRule => ({
  cls: 'a',
  param,
  bodyFields,
})
const allAssets: InvalidationRule = { cls: 'a' }
const people: InvalidationRule = { cls: 'p' }
const profiles: InvalidationRule = { cls: 'u' }

/**
 * By `METHOD template` (Immich 3 route table). Asset changes void that asset's thumbnails: edits and the
 * regenerate job change the bytes; delete, trash restore and visibility changes (archive, locked
 * folder) change who may see them; album and shared-link removals revoke access. Any face or person
 * change voids all person thumbnails (which face is a person's cover, and which person a face belongs
 * to, is Immich's to decide; person thumbnails are revalidated on every use anyway). A profile image
 * change voids all profile images (the route does not name the user). Revoking a credential or an
 * access the gateway cannot pin to assets (logout, locking the locked folder, deleting a session, API
 * key, shared link, album or partner) voids every asset thumbnail: these are rare, and a revoked
 * access must not live on in the cache.
 */
export const INVALIDATION_RULES: ReadonlyMap<string, InvalidationRule> = new Map([
  ['PUT /api/assets', asset(undefined, ['ids'])],
  ['DELETE /api/assets', asset(undefined, ['ids'])],
  ['POST /api/assets/jobs', asset(undefined, ['assetIds'])],
  ['PUT /api/assets/{id}', asset('id')],
  ['PUT /api/assets/{id}/edits', asset('id')],
  ['DELETE /api/assets/{id}/edits', asset('id')],
  ['POST /api/trash/restore/assets', asset(undefined, ['ids'])],
  ['DELETE /api/albums/{id}/assets', asset(undefined, ['ids'])],
  ['DELETE /api/shared-links/{id}/assets', asset(undefined, ['assetIds'])],
  ['POST /api/auth/logout', allAssets],
  ['POST /api/auth/session/lock', allAssets],
  ['DELETE /api/sessions', allAssets],
  ['DELETE /api/sessions/{id}', allAssets],
  ['POST /api/sessions/{id}/lock', allAssets],
  ['DELETE /api/api-keys/{id}', allAssets],
  ['PUT /api/api-keys/{id}', allAssets],
  ['POST /api/api-keys/{id}/rotate', allAssets],
  ['DELETE /api/shared-links/{id}', allAssets],
  ['PATCH /api/shared-links/{id}', allAssets],
  ['DELETE /api/albums/{id}', allAssets],
  ['DELETE /api/albums/{id}/user/{userId}', allAssets],
  ['DELETE /api/partners/{id}', allAssets],
  ['POST /api/people', people],
  ['PUT /api/people', people],
  ['DELETE /api/people', people],
  ['PUT /api/people/{id}', people],
  ['DELETE /api/people/{id}', people],
  ['POST /api/people/merge', people],
  ['POST /api/people/{id}/merge', people],
  ['PUT /api/people/{id}/reassign', people],
  ['POST /api/faces', people],
  ['PUT /api/faces/{id}', people],
  ['DELETE /api/faces/{id}', people],
  ['POST /api/users/profile-image', profiles],
  ['DELETE /api/users/profile-image', profiles],
  ['DELETE /api/admin/users/{id}', profiles],
])

/** Largest bulk body read to learn its asset ids (Immich's bulk bodies are small JSON). */
export const MAX_ID_BODY_BYTES = 1_048_576

/** String ids from the named top-level array fields; undefined when the body is not such JSON. */
export function idsFromJson(body: Buffer, fields: readonly string[]): string[] | undefined {
  let parsed: unknown
  try {
    parsed = JSON.parse(body.toString('utf8'))
  } catch {
    return undefined
  }
  if (typeof parsed !== 'object' || parsed === null) return undefined
  const ids: string[] = []
  for (const field of fields) {
    const value = (parsed as Record<string, unknown>)[field]
    if (value === undefined) continue
    if (!Array.isArray(value)) return undefined
    for (const id of value) {
      if (typeof id !== 'string') return undefined
      ids.push(id.toLowerCase())
    }
  }
  return ids
}

/**
 * Reads a request body whose Content-Length is known and at most `max` bytes; undefined, without
 * touching the stream, when it is not (chunked or larger) — the caller then voids the whole class.
 * The bytes are handed on as the upstream body, so nothing is lost.
 */
/** A bulk id list is a few KiB of JSON: a client that takes longer than this is refused (408). */
const BODY_TIMEOUT_MS = 30_000

export async function readSmallBody(c: Context<Env>, max: number): Promise<Buffer | undefined> {
  const held = c.get('upstream').body
  if (held) return held
  const req = c.env.incoming
  const declared = req.headers['content-length']
  if (declared === undefined || req.headers['transfer-encoding'] !== undefined) return undefined
  const length = Number(declared)
  if (!Number.isInteger(length) || length <= 0 || length > max) return undefined
  return readRequestBody(c, { maxBytes: max, timeoutMs: BODY_TIMEOUT_MS })
}
