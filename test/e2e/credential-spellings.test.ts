import { randomBytes, randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { serializeError } from '../../src/observability/logging.js'
import { DEFAULT_API_KEYS, startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { holdsSecret, percentEncodeAll, secretsIn } from '../support/secret-spellings.js'
import { startStack, type Stack } from '../support/stack.js'
import {
  client,
  leakedSecrets,
  rawGet,
  remember,
  tempDir,
  writeKeys,
} from '../policies/api-key-auth/support.js'

/**
 * Issue 13 item 1: a credential in a query parameter is recognised by authentication, taken off the
 * upstream request and kept out of every log line in every spelling of its name (percent-encoded,
 * any case, `[]`, repeated, `;`-separated, an encoded `=`), and a gateway key anywhere else in a URL
 * (another parameter's value, a path segment) never reaches Immich nor a log line.
 */

const dir = tempDir()
const keysFile = join(dir, 'keys.yaml')
const viewer = client({ name: 'viewer', scopes: ['asset.view', 'album.read'] })
/** A native Immich API key the fake Immich knows. */
const NATIVE = remember(`native${randomBytes(20).toString('hex')}`)

let immich: FakeImmich
let stack: Stack

beforeAll(async () => {
  writeKeys(keysFile, [viewer.entry])
  immich = await startFakeImmich({
    apiKeys: { ...DEFAULT_API_KEYS, [NATIVE]: { userId: 'u-native', name: 'Native' } },
  })
  stack = await startStack({ policies: { 'api-key-auth': { keysFile } } }, { immich })
})
afterAll(async () => {
  await stack?.close()
  await immich?.close()
})

/** Every spelling of a parameter name that a query parser may read as `name`. */
function nameSpellings(name: string): string[] {
  const base = new Set([
    name,
    name.toUpperCase(),
    name.toLowerCase(),
    [...name].map((ch, i) => (i % 2 ? ch.toUpperCase() : ch.toLowerCase())).join(''),
    percentEncodeAll(name),
    percentEncodeAll(name, true),
  ])
  const out = new Set(base)
  for (let i = 0; i < name.length; i++) {
    const hex = name.charCodeAt(i).toString(16)
    out.add(`${name.slice(0, i)}%${hex.toUpperCase()}${name.slice(i + 1)}`)
    out.add(`${name.slice(0, i)}%${hex}${name.slice(i + 1)}`)
  }
  for (const n of base) for (const b of ['[]', '%5B%5D', '%5b%5d', '[0]']) out.add(`${n}${b}`)
  return [...out]
}

/** Query shapes around one `name`/`key`: alone, after another, repeated, `;`-separated, encoded `=`. */
const SHAPES: [string, (name: string, key: string) => string, string][] = [
  ['alone', (n, k) => `?${n}=${k}`, ''],
  ['after another', (n, k) => `?size=preview&${n}=${k}`, '?size=preview'],
  ['repeated', (n, k) => `?${n}=${k}&${n}=${k}`, ''],
  [';-separated after', (n, k) => `?size=preview;${n}=${k}`, '?size=preview'],
  [';-separated before', (n, k) => `?${n}=${k};size=preview`, '?size=preview'],
  ['encoded =', (n, k) => `?size=preview&${n}%3D${k}`, '?size=preview'],
]

const KEY_NAMES = [...nameSpellings('apiKey'), ...nameSpellings('x-api-key')]

function seenSince(before: number) {
  return immich.requests.slice(before)
}

describe('a gateway key in the query, in every spelling of its name', () => {
  it(`${KEY_NAMES.length} names × ${SHAPES.length} shapes: 200, stripped before Immich, in no log line`, async () => {
    const failures: string[] = []
    for (const name of KEY_NAMES) {
      for (const [shape, build, kept] of SHAPES) {
        const asset = randomUUID()
        const path = `/api/assets/${asset}/thumbnail${build(name, viewer.key)}`
        const before = immich.requests.length
        const res = await rawGet(stack.url, 'GET', path)
        const seen = seenSince(before)
        const up = seen[0]
        const problem =
          res.status !== 200
            ? `status ${res.status}`
            : seen.length !== 1
              ? `${seen.length} upstream requests`
              : up!.url !== `/api/assets/${asset}/thumbnail${kept}`
                ? `upstream url ${up!.url}`
                : up!.headers['x-api-key'] !== 'fake-user-key'
                  ? 'no injected key'
                  : secretsIn([up!.url, ...up!.rawHeaders], [viewer.key]).length
                    ? 'key forwarded'
                    : undefined
        if (problem) failures.push(`${name} (${shape}): ${problem}`)
      }
    }
    expect(failures).toEqual([])
    expect(secretsIn(stack.logs, [viewer.key])).toEqual([])
  })

  it('a legacy route with the key under an encoded name: translated, stripped, the original URL logged redacted', async () => {
    const asset = randomUUID()
    const before = immich.requests.length
    const res = await rawGet(
      stack.url,
      'GET',
      `/api/asset/thumbnail/${asset}?api%4Bey=${viewer.key}&format=WEBP`
    )
    expect(res.status).toBe(200)
    const up = seenSince(before)
    expect(up).toHaveLength(1)
    expect(holdsSecret(up[0]!.url, viewer.key)).toBe(false)
    const line = stack.logs.find((l) => l.includes(`/api/asset/thumbnail/${asset}`))
    expect(line).toContain('"legacyRule"')
    expect(line).toContain('api%4Bey=[REDACTED]')
    expect(holdsSecret(line!, viewer.key)).toBe(false)
  })
})

describe('a gateway key anywhere else in the URL never reaches Immich or a log line', () => {
  const asset = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
  const places = (k: string) => [
    `/api/assets/${asset}/thumbnail?q=apiKey%3D${k}`,
    `/api/assets/${asset}/thumbnail?q=${k}`,
    `/api/assets/${asset}/thumbnail?q=${encodeURIComponent(`apiKey=${k}`)}`,
    `/api/assets/${asset}/thumbnail?apiKey=${k.replace('igw_', 'igw%5F')}`,
    `/api/assets/${asset}/thumbnail?api%254Bey=${k}`,
    `/api/assets/${asset}/thumbnail?${percentEncodeAll(`apiKey=${k}`)}`,
    `/api/assets/${k}/thumbnail`,
    `/api/assets/${asset};apiKey=${k}/thumbnail`,
    `/api/assets/${asset}/thumbnail;apiKey=${k}`,
    `/api/server/ping?q=${k}`,
    `/api/server/ping?x=1;q=apiKey=${k}`,
    `/photos/${k}`,
    `/photos/${percentEncodeAll(k)}`,
  ]

  it.each(places('igw_KEY').map((p, i) => [p, i]))('%s', async (_label, i) => {
    const path = places(viewer.key)[i as number]!
    const before = immich.requests.length
    const res = await rawGet(stack.url, 'GET', path)
    expect(res.status).toBeGreaterThanOrEqual(400)
    expect(res.status).toBeLessThan(500)
    for (const up of seenSince(before))
      expect(secretsIn([up.url, ...up.rawHeaders], [viewer.key])).toEqual([])
    expect(secretsIn(stack.logs, [viewer.key])).toEqual([])
  })
})

describe('a native Immich key in the query, in every spelling', () => {
  it('is in no log line, whatever Immich makes of it', async () => {
    const names = nameSpellings('apiKey')
    let read = 0
    for (const name of names) {
      for (const [, build] of SHAPES) {
        const res = await rawGet(
          stack.url,
          'GET',
          `/api/assets/${randomUUID()}/thumbnail${build(name, NATIVE)}`
        )
        if (res.status === 200) read++
      }
    }
    // Immich reads `apiKey` however its characters are percent-encoded: those pass through.
    expect(read).toBeGreaterThan(0)
    expect(secretsIn(stack.logs, [NATIVE])).toEqual([])
  })

  it('in path segments and other parameters too', async () => {
    for (const path of [
      `/api/assets/x;apiKey=${NATIVE}/thumbnail`,
      `/api/apiKey=${NATIVE}/x`,
      `/api/albums?q=apiKey%3D${NATIVE}`,
      `/api/albums?q=x;sessionKey=${NATIVE}`,
      `/photos;key=${NATIVE}`,
      `/api/albums?API%4BEY%5B%5D=${NATIVE}`,
    ])
      await rawGet(stack.url, 'GET', path)
    expect(secretsIn(stack.logs, [NATIVE])).toEqual([])
  })

  it('credential headers are never logged', async () => {
    const res = await rawGet(stack.url, 'GET', '/api/albums', {
      'x-api-key': NATIVE,
      'x-immich-share-key': NATIVE,
      'x-immich-user-token': NATIVE,
      cookie: `immich_access_token=${NATIVE}`,
      authorization: `Bearer ${viewer.key}`,
    })
    expect(res.status).toBeLessThan(500)
    expect(leakedSecrets(stack.logs)).toEqual([])
  })
})

describe('errors', () => {
  it('an error whose message or stack holds a URL with a credential is logged redacted', () => {
    const err = new Error(`request to http://immich/api/x?api%4Bey=${viewer.key} failed`)
    const out = serializeError(err) as { message: string; stack: string }
    expect(out.message).toContain('api%4Bey=[REDACTED]')
    expect(holdsSecret(JSON.stringify(out), viewer.key)).toBe(false)
  })
})

it('no secret of this file appears, in any spelling, in any captured log line', () => {
  expect(stack.logs.filter((l) => l.includes('"msg":"request"')).length).toBeGreaterThan(500)
  expect(leakedSecrets()).toEqual([])
})
