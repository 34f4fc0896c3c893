import { request } from 'undici'
import { uploadForm } from '../support/http.js'
import type { Call, ClientFixture } from './fixtures.js'

export interface Replayed {
  call: Call
  status: number
  message?: string
}

const PHOTO = Buffer.alloc(2048, 7)

/** Sends a fixture's calls in order with `key` in `x-api-key`; every answer's status. */
export async function replay(
  base: string,
  key: string,
  fixture: ClientFixture
): Promise<Replayed[]> {
  const out: Replayed[] = []
  for (const call of fixture.calls) {
    let body: Buffer | string | undefined
    const headers: Record<string, string> = { 'x-api-key': key }
    if (call.upload) {
      const form = uploadForm(PHOTO, 'replayboundary', {
        deviceAssetId: `${fixture.name}-1`,
        deviceId: fixture.name,
      })
      body = form.body
      headers['content-type'] = form.contentType
    } else if (call.json !== undefined) {
      body = JSON.stringify(call.json)
      headers['content-type'] = 'application/json'
    }
    const res = await request(`${base}${call.path}`, { method: call.method, headers, body })
    const text = await res.body.text()
    let message: string | undefined
    try {
      message = (JSON.parse(text) as { message?: string }).message
    } catch {
      message = undefined
    }
    out.push({ call, status: res.statusCode, ...(message ? { message } : {}) })
  }
  return out
}

/** The calls refused for lack of permission (401/403), as `METHOD path: message`. */
export function refusals(results: Replayed[]): string[] {
  return results
    .filter((r) => r.status === 401 || r.status === 403)
    .map((r) => `${r.call.method} ${r.call.path}: ${r.status} ${r.message ?? ''}`)
}
