/**
 * Answers a bound key gets read whole and edited before they go out, so that no id of an asset or
 * album outside its albums reaches it through any route: the album list keeps only the bound albums;
 * an asset's answer loses a stack whose primary asset is outside (Immich names it in the asset's own
 * answer) and a motion part that is not visible; a search keeps only the bound albums in its album
 * section. The edit runs inside the forwarder's capture, so a legacy rule that rebuilds the answer
 * from the capture (old `GET /api/asset/{id}`) gets the edited answer too.
 */
import type { OutgoingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import type { Deps } from '../../src/deps.js'
import type { AlbumBinding, AnswerEdit, Env } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { writeAnswer } from '../../src/server/answer.js'
import { firstValue } from '../../src/upstream/headers.js'

/** Whether an asset id (any case) is in one of the key's bound albums. */
export type Visible = (assetId: string) => boolean

/**
 * Asset answers whose JSON is edited for bound keys, by path template: `GET /api/assets/{id}` (the
 * only method of that path a bound key may use) and the searches that list assets.
 */
export const EDITED_ASSET_ANSWERS: ReadonlySet<string> = new Set([
  '/api/assets/{id}',
  '/api/search/metadata',
  '/api/search/random',
  '/api/search/smart',
])

type Json = Record<string, unknown>
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v)

/**
 * Makes Immich's answer to this request one that can be edited: plain JSON (no compression), and
 * never a 304 for an entity the key would not see unedited (Immich's ETag is dropped too).
 */
export function readWhole(c: Context<Env>, edit: AnswerEdit): void {
  const edits = c.get('upstream').headerEdits
  edits['accept-encoding'] = 'identity'
  edits['if-none-match'] = null
  edits['if-modified-since'] = null
  c.set('answerEdit', edit)
}

/** Applies `change` to a 200 JSON answer; anything that is not the JSON Immich documents is refused. */
async function editJson(
  answer: Parameters<AnswerEdit>[0],
  change: (json: unknown) => unknown | Promise<unknown>
) {
  if (answer.status !== 200) return answer
  let json: unknown
  try {
    json = JSON.parse(answer.body.toString('utf8'))
  } catch {
    // Nothing of an unexpected answer can be shown safely.
    throw new GatewayError(502, 'UPSTREAM_UNEXPECTED', 'Unexpected answer from Immich')
  }
  const headers: OutgoingHttpHeaders = { ...answer.headers }
  delete headers.etag
  delete headers['content-length']
  return { ...answer, headers, body: Buffer.from(JSON.stringify(await change(json))) }
}

const bound = (binding: AlbumBinding) => (album: unknown) =>
  typeof (album as { id?: unknown })?.id === 'string' &&
  binding.ids.has((album as { id: string }).id.toLowerCase())

/** `GET /api/albums`: only the bound albums (an answer that is not a list shows none). */
export function albumListEdit(binding: AlbumBinding): AnswerEdit {
  return (answer) =>
    editJson(answer, (list) => (Array.isArray(list) ? list.filter(bound(binding)) : []))
}

/** One asset of an answer, without the ids of assets the key may not see. */
export function scrubAsset(asset: unknown, visible: Visible): void {
  if (!isObject(asset)) return
  const stack = asset.stack
  if (
    isObject(stack) &&
    !(typeof stack.primaryAssetId === 'string' && visible(stack.primaryAssetId))
  )
    asset.stack = null
  const motion = asset.livePhotoVideoId
  if (typeof motion === 'string' && !visible(motion)) asset.livePhotoVideoId = null
}

/**
 * Asset info, search metadata/smart (`{albums: {items}, assets: {items}}`) and search random (a
 * list): each asset scrubbed, album sections filtered to the binding.
 */
export function assetAnswerEdit(
  binding: AlbumBinding,
  visible: () => Promise<Visible>
): AnswerEdit {
  return (answer) =>
    editJson(answer, async (json) => {
      const isVisible = await visible()
      if (Array.isArray(json)) for (const asset of json) scrubAsset(asset, isVisible)
      else if (isObject(json) && isObject(json.assets)) {
        const items = json.assets.items
        if (Array.isArray(items)) for (const asset of items) scrubAsset(asset, isVisible)
        if (isObject(json.albums) && Array.isArray(json.albums.items))
          json.albums.items = json.albums.items.filter(bound(binding))
      } else scrubAsset(json, isVisible)
      return json
    })
}

/** The forward step for an edited answer: Immich's answer captured (and edited there), then written. */
export async function sendEdited(c: Context<Env>, deps: Deps, maxBytes: number): Promise<Response> {
  const answer = await deps.forwarder.capture(c, maxBytes)
  const headers: OutgoingHttpHeaders = {
    'content-type': firstValue(answer.headers['content-type']) ?? 'application/json; charset=utf-8',
  }
  const correlation = firstValue(answer.headers['x-correlation-id'])
  if (correlation) headers['x-correlation-id'] = correlation
  return writeAnswer(c, answer.status, headers, answer.body)
}
