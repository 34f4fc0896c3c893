import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import {
  compileLegacyTable,
  loadLegacyTable,
  type LegacyForward,
} from '../../policies/legacy-routes/table.js'
import { packageFile } from '../../src/paths.js'
import type { GatewayError } from '../../src/errors.js'
import { join } from 'node:path'
import { multipartBody } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import { client, tempDir, writeKeys } from '../policies/api-key-auth/support.js'

const KEY = 'fake-admin-key'
const ADMIN = { 'x-api-key': KEY }
const UUID = '3b241101-e2bb-4255-8caf-4136c566a962'
const rules = loadLegacyTable(packageFile('config/legacy-routes.yaml'))
const table = compileLegacyTable(rules)

describe('legacy routes: the calls of an old Discord bot, end to end', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
  })
  afterAll(async () => {
    await stack.close()
  })

  it('POST /api/asset/upload (assetData + description): dates filled in, description set, old answer shape', async () => {
    stack.immich.clearRequests()
    const file = Buffer.alloc(300_000, 9)
    const body = multipartBody('botboundary', [
      { name: 'assetData', value: file, filename: 'cat.jpg' },
      { name: 'description', value: 'a cat' },
    ])
    const res = await request(`${stack.url}/api/asset/upload`, {
      method: 'POST',
      headers: { ...ADMIN, 'content-type': 'multipart/form-data; boundary=botboundary' },
      body,
    })
    const answer = (await res.body.json()) as Record<string, unknown>
    expect(res.statusCode).toBe(201)
    expect(answer).toEqual({ id: expect.any(String), duplicate: false })
    expect(res.headers.deprecation).toBe('@1717200000')
    expect(res.headers.link).toBe('</api/assets>; rel="successor-version"')
    const upload = stack.immich.requestsTo('/api/assets', 'POST')[0]!
    expect(upload.upload!.fields).toMatchObject({
      description: 'a cat',
      fileCreatedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      fileModifiedAt: expect.any(String),
    })
    expect(upload.upload!.fileBytes).toBe(file.length)
    const update = stack.immich.requestsTo(`/api/assets/${answer.id as string}`, 'PUT')[0]!
    expect(update.json).toEqual({ description: 'a cat' })
    expect(update.headers['x-api-key']).toBe(KEY)
  })

  it('GET /api/person?withHidden=false → GET /api/people, answered', async () => {
    const res = await request(`${stack.url}/api/person?withHidden=false`, { headers: ADMIN })
    expect(res.statusCode).toBe(200)
    const body = (await res.body.json()) as { people: unknown[] }
    expect(Array.isArray(body.people)).toBe(true)
    const seen = stack.immich.lastRequest()
    expect(seen.method).toBe('GET')
    expect(seen.path).toBe('/api/people')
    expect(seen.url).toContain('withHidden=false')
  })

  it.each([
    ['/api/person/p1/thumbnail', '/api/people/p1/thumbnail'],
    ['/api/asset/a1/thumbnail', '/api/assets/a1/thumbnail'],
  ])('GET %s?x-api-key=KEY → %s with the key moved into the header', async (old, current) => {
    const res = await request(`${stack.url}${old}?x-api-key=${KEY}`)
    expect(res.statusCode).toBe(200)
    expect(res.headers['content-type']).toMatch(/^image\//)
    expect((await res.body.arrayBuffer()).byteLength).toBeGreaterThan(0)
    const seen = stack.immich.lastRequest()
    expect(seen.path).toBe(current)
    expect(seen.url).not.toContain(KEY)
    expect(seen.headers['x-api-key']).toBe(KEY)
    expect(res.headers.link).toBe(`<${current}>; rel="successor-version"`)
  })

  it('GET /api/asset/{id}/faces → GET /api/faces?id={id}', async () => {
    const res = await request(`${stack.url}/api/asset/${UUID}/faces`, { headers: ADMIN })
    expect(res.statusCode).toBe(200)
    expect(Array.isArray(await res.body.json())).toBe(true)
    const seen = stack.immich.lastRequest()
    expect(`${seen.method} ${seen.url}`).toBe(`GET /api/faces?id=${UUID}`)
  })

  it('GET /api/asset?updatedAfter=… → POST /api/search/metadata, answered as the old bare array', async () => {
    const res = await request(`${stack.url}/api/asset?updatedAfter=2024-01-01T00:00:00.000Z`, {
      headers: ADMIN,
    })
    expect(res.statusCode).toBe(200)
    const body = (await res.body.json()) as unknown[]
    expect(Array.isArray(body)).toBe(true)
    expect(body.length).toBeGreaterThan(0)
    const seen = stack.immich.lastRequest()
    expect(`${seen.method} ${seen.path}`).toBe('POST /api/search/metadata')
    expect(seen.json).toMatchObject({ updatedAfter: '2024-01-01T00:00:00.000Z', withExif: true })
  })

  it('logs the original path (credentials redacted) and counts the call by rule', async () => {
    stack.logs.length = 0
    const res = await request(`${stack.url}/api/asset/a2/thumbnail?x-api-key=${KEY}`, {
      headers: { 'x-request-id': 'legacy-log-1' },
    })
    await res.body.dump()
    const line = stack.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.requestId === 'legacy-log-1')!
    expect(line.url).toBe('/api/asset/a2/thumbnail?x-api-key=[REDACTED]')
    expect(line.legacyRule).toBe('asset-thumbnail-alias')
    expect(line.route).toBe('/api/assets/{id}/thumbnail')
    const metrics = await stack.gateway.deps.metrics.registry.getSingleMetricAsString(
      'immich_gateway_legacy_requests_total'
    )
    expect(metrics).toMatch(/rule="asset-thumbnail-alias",client="native"\} [1-9]/)
  })
})

/** A sample request for a rule's old template: params filled with a UUID, or a non-UUID where the rule wants one. */
function sample(rule: { id: string; from: string }): { method: string; path: string } {
  const [method, template] = rule.from.split(' ') as [string, string]
  for (const value of [UUID, 'device-1']) {
    const path = template.replace(/\{[^}]+\}/g, value)
    if (table.match(method, path)?.rule.id === rule.id) return { method, path }
  }
  return { method, path: template.replace(/\{[^}]+\}/g, UUID) }
}

describe('legacy routes: every rule in the table, over real sockets', () => {
  let stack: Stack
  beforeAll(async () => {
    stack = await startStack()
    // Answer every current route with an empty success, so only the translation is judged here.
    stack.immich.setHandler('*', /^\/api\/(?!server\/version)/, async (req, res, ctx) => {
      await ctx.readBody()
      ctx.sendJson(req.method === 'POST' ? 201 : 200, req.method === 'GET' ? [] : {})
    })
  })
  afterAll(async () => {
    await stack.close()
  })

  const cases = rules.map((rule) => [rule.id, rule] as const)
  it.each(cases)('%s', async (_id, rule) => {
    const { method, path } = sample(rule)
    const hit = table.match(method, path)
    expect(hit?.rule.id, `${method} ${path} must hit its own rule`).toBe(rule.id)
    let expected: ReturnType<NonNullable<typeof hit>['rewrite']> | undefined
    let refused: GatewayError | undefined
    try {
      expected = hit!.rewrite('', { contentType: 'application/json' })
    } catch (err) {
      refused = err as GatewayError
    }
    stack.immich.clearRequests()
    const hasBody = !['GET', 'HEAD', 'DELETE'].includes(method)
    const res = await request(`${stack.url}${path}`, {
      method: method as 'GET',
      headers: { ...ADMIN, ...(hasBody ? { 'content-type': 'application/json' } : {}) },
      body: hasBody ? '{}' : undefined,
    })
    const text = await res.body.text()
    if (refused) {
      // 410 naming the replacement, or 400 for a variant the old route itself refused.
      expect(res.statusCode).toBe(refused.status)
      expect(JSON.parse(text)).toMatchObject({
        statusCode: refused.status,
        message: refused.message,
      })
      expect(stack.immich.requests).toHaveLength(0)
      return
    }
    if (expected!.kind === 'respond') {
      expect(res.statusCode).toBe(expected!.status)
      expect(JSON.parse(text)).toEqual(expected!.body)
      expect(stack.immich.requests).toHaveLength(0)
      return
    }
    const forward = expected as LegacyForward
    const first = stack.immich.requests[0]
    expect(first, `${rule.from} should reach Immich`).toBeDefined()
    expect(`${first!.method} ${first!.url}`).toBe(
      `${forward.method} ${forward.path}${forward.query}`
    )
    if (forward.jsonBody !== undefined) expect(first!.json).toEqual(forward.jsonBody)
    expect(res.headers.deprecation).toBe('@1717200000')
    expect(res.statusCode).toBeLessThan(500)
  })
})

describe('legacy routes: the same rules as the current route', () => {
  const viewer = client({ name: 'viewer', scopes: ['asset.view', 'album.read'] })
  const uploader = client({ name: 'uploader', scopes: ['asset.upload'] })
  let stack: Stack
  beforeAll(async () => {
    const keysFile = join(tempDir(), 'keys.yaml')
    writeKeys(keysFile, [viewer.entry, uploader.entry])
    stack = await startStack({ policies: { 'api-key-auth': { keysFile } } })
  })
  afterAll(async () => {
    await stack.close()
  })

  const upload = (path: string, key: string) =>
    request(`${stack.url}${path}`, {
      method: 'POST',
      headers: { 'x-api-key': key, 'content-type': 'multipart/form-data; boundary=b' },
      body: multipartBody('b', [{ name: 'assetData', value: Buffer.from('x'), filename: 'a.jpg' }]),
    })

  it('a key without asset.upload gets 403 on POST /api/asset/upload exactly as on POST /api/assets', async () => {
    stack.immich.clearRequests()
    const current = await upload('/api/assets', viewer.key)
    const old = await upload('/api/asset/upload', viewer.key)
    const [a, b] = [
      (await current.body.json()) as Record<string, unknown>,
      (await old.body.json()) as Record<string, unknown>,
    ]
    expect(current.statusCode).toBe(403)
    expect(old.statusCode).toBe(403)
    expect(b.message).toBe(a.message)
    expect(b.message).toBe('Missing required permission: asset.upload')
    expect(stack.immich.requests).toHaveLength(0)
  })

  it('a key with asset.upload uploads through the old path, with its injected upstream key', async () => {
    const old = await upload('/api/asset/upload', uploader.key)
    expect(old.statusCode).toBe(201)
    await old.body.dump()
    const seen = stack.immich.lastRequest()
    expect(seen.headers['x-api-key']).toBe('fake-user-key')
  })

  it('an old thumbnail alias is judged as the current thumbnail route (asset.view)', async () => {
    const ok = await request(`${stack.url}/api/asset/thumbnail/t1?apiKey=${viewer.key}`)
    expect(ok.statusCode).toBe(200)
    await ok.body.dump()
    expect(stack.immich.lastRequest().url).not.toContain(viewer.key)
    const denied = await request(`${stack.url}/api/asset/thumbnail/t1?apiKey=${uploader.key}`)
    expect(denied.statusCode).toBe(403)
    await denied.body.dump()
  })

  it('an extra upstream call of a translation needs its own permission (old album detail needs asset.read too)', async () => {
    stack.immich.clearRequests()
    const res = await request(`${stack.url}/api/album/${UUID}`, {
      headers: { 'x-api-key': viewer.key },
    })
    const body = (await res.body.json()) as Record<string, unknown>
    expect(res.statusCode).toBe(403)
    expect(body.message).toBe('Missing required permission: asset.read')
    expect(stack.immich.requests.map((r) => `${r.method} ${r.path}`)).not.toContain(
      'POST /api/search/metadata'
    )
  })
})
