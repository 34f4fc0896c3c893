import type { OutgoingHttpHeaders } from 'node:http'
import type { Context } from 'hono'
import type { Deps } from '../../src/deps.js'
import type { AlbumBinding, Env } from '../../src/env.js'
import { writeAnswer } from '../../src/server/answer.js'

function first(value: string | string[] | number | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value === undefined ? undefined : String(value)
}

/**
 * `GET /api/albums` for a bound key: Immich's list, read whole (bounded), with only the bound albums
 * left in. Immich is asked for plain JSON (no compression, no conditional: the filtered list is a
 * different entity, so Immich's ETag is dropped too). A non-200 answer goes back as it came.
 */
export async function sendFilteredAlbumList(
  c: Context<Env>,
  deps: Deps,
  binding: AlbumBinding,
  maxBytes: number
): Promise<Response> {
  const edits = c.get('upstream').headerEdits
  edits['accept-encoding'] = 'identity'
  edits['if-none-match'] = null
  edits['if-modified-since'] = null
  const answer = await deps.forwarder.capture(c, maxBytes)
  let body = answer.body
  const contentType = first(answer.headers['content-type']) ?? 'application/json; charset=utf-8'
  if (answer.status === 200) {
    let list: unknown
    try {
      list = JSON.parse(body.toString('utf8'))
    } catch {
      list = undefined
    }
    // Not the list Immich documents: nothing of it can be shown safely.
    const kept = Array.isArray(list)
      ? list.filter(
          (album: unknown) =>
            typeof (album as { id?: unknown })?.id === 'string' &&
            binding.ids.has((album as { id: string }).id.toLowerCase())
        )
      : []
    body = Buffer.from(JSON.stringify(kept))
  }
  const headers: OutgoingHttpHeaders = { 'content-type': contentType }
  const correlation = first(answer.headers['x-correlation-id'])
  if (correlation) headers['x-correlation-id'] = correlation
  return writeAnswer(c, answer.status, headers, body)
}
