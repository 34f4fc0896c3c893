import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { startStack, type Stack } from '../support/stack.js'
import { client, rawGet, rawRequest, tempDir, writeKeys } from '../policies/api-key-auth/support.js'

/**
 * Issue 13 item 9: method-override headers never reach Immich, so a release that honoured one could
 * not turn a GET the scopes allowed into a DELETE they would refuse.
 */

const dir = tempDir()
const keysFile = join(dir, 'keys.yaml')
const viewer = client({ name: 'viewer', scopes: ['asset.view', 'album.read'] })
let stack: Stack

beforeAll(async () => {
  writeKeys(keysFile, [viewer.entry])
  stack = await startStack({ policies: { 'api-key-auth': { keysFile } } })
})
afterAll(() => stack?.close())

const OVERRIDES = ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override']

it.each([
  ['gateway key', { 'x-api-key': viewer.key }],
  ['native key', { 'x-api-key': 'fake-user-key' }],
])(
  'with a %s: every method-override header, in any case, is dropped before Immich',
  async (_l, auth) => {
    for (const name of [...OVERRIDES, ...OVERRIDES.map((n) => n.toLowerCase())]) {
      const before = stack.immich.requests.length
      const res = await rawGet(stack.url, 'GET', `/api/assets/${randomUUID()}/thumbnail`, {
        ...auth,
        [name]: 'DELETE',
        'X-Kept': 'yes',
      })
      expect(res.status, name).toBe(200)
      const seen = stack.immich.requests.slice(before)
      expect(seen).toHaveLength(1)
      expect(seen[0]!.method).toBe('GET')
      expect(seen[0]!.headers['x-kept']).toBe('yes')
      const names = seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
      for (const o of OVERRIDES) expect(names, name).not.toContain(o.toLowerCase())
    }
  }
)

it('all three at once, repeated, on a POST with a body', async () => {
  const before = stack.immich.requests.length
  const res = await rawRequest(
    stack.url,
    'POST /api/search/metadata HTTP/1.1\r\nHost: gateway\r\nx-api-key: fake-user-key\r\n' +
      'content-type: application/json\r\ncontent-length: 2\r\n' +
      'X-HTTP-Method-Override: DELETE\r\nx-http-method-override: PUT\r\n' +
      'X-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\nConnection: close\r\n\r\n{}'
  )
  expect(res.status).toBe(200)
  const seen = stack.immich.requests.slice(before)
  expect(seen.map((r) => r.method)).toEqual(['POST'])
  const names = seen[0]!.rawHeaders.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase())
  for (const o of OVERRIDES) expect(names).not.toContain(o.toLowerCase())
})
