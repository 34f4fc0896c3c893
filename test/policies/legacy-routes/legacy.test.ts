import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../../src/errors.js'
import {
  compileLegacyTable,
  loadLegacyTable,
  runSteps,
  validateLegacyTable,
  type LegacyForward,
  type LegacyHit,
  type LegacyOutcome,
  type LegacyRule,
} from '../../../policies/legacy-routes/table.js'
import { bodyTransforms } from '../../../policies/legacy-routes/body-transforms.js'
import { requestTransforms } from '../../../policies/legacy-routes/request-transforms.js'
import { responseTransforms } from '../../../policies/legacy-routes/response-transforms.js'
import {
  FollowUp,
  type ResponseResult,
  type Step,
  type UpstreamCall,
} from '../../../policies/legacy-routes/transforms.js'
import { compileRouteTable, loadRouteTable } from '../../../src/routing/route-table.js'

const TABLE_FILE = fileURLToPath(new URL('../../../config/legacy-routes.yaml', import.meta.url))
const ROUTES_FILE = fileURLToPath(new URL('../../../config/immich-routes.json', import.meta.url))
const routesPresent = existsSync(ROUTES_FILE)

const rules = loadLegacyTable(TABLE_FILE)
const table = compileLegacyTable(rules)
const enabled = rules.filter((r) => r.disabled !== true)

const UUID_A = '5f0c2a4e-8d2b-4c1e-9a7f-0b6e3d2c1a01'
const UUID_B = '7a1d3b5f-9e3c-4d2f-8b80-1c7f4e3d2b02'
/** One sample value per param name; `where: not-uuid` params get a device-style id. */
const SAMPLE: Record<string, string> = {
  id: UUID_A,
  userId: UUID_B,
  deviceId: 'iPhone-15',
  name: 'album-invite',
}

const split = (spec: string): [string, string] => {
  const i = spec.indexOf(' ')
  return [spec.slice(0, i), spec.slice(i + 1)]
}
const fillSample = (path: string): string =>
  path.replace(/\{(\w+)\}/g, (_, n: string) => SAMPLE[n] ?? `x-${n}`)
const oldRequest = (rule: LegacyRule): [string, string] => {
  const [method, path] = split(rule.from)
  return [method, fillSample(path)]
}

function hitFor(rule: LegacyRule): LegacyHit {
  const [method, path] = oldRequest(rule)
  const hit = table.match(method, path)
  if (hit === undefined) throw new Error(`${rule.id}: ${method} ${path} did not match`)
  return hit
}

function forward(outcome: LegacyOutcome): LegacyForward {
  if (outcome.kind !== 'forward')
    throw new Error(`expected a forward, got ${JSON.stringify(outcome)}`)
  return outcome
}

function gatewayError(fn: () => unknown): GatewayError {
  try {
    fn()
  } catch (err) {
    if (err instanceof GatewayError) return err
    throw err
  }
  throw new Error('expected a GatewayError')
}

/** Drives a transform's follow-up calls against `handler`, which plays the upstream. */
function drive<T>(
  step: Step<T>,
  handler: (call: UpstreamCall) => [number, unknown],
  hit?: LegacyHit
) {
  const calls: UpstreamCall[] = []
  const result = runSteps(
    step,
    async (call) => {
      calls.push(call)
      const [status, body] = handler(call)
      return { status, body }
    },
    hit === undefined ? {} : { allow: (c) => hit.allowsCall(c) }
  )
  return { result, calls }
}

const counted = rules.filter((r) => typeof r.row === 'number' && r.row !== 49)

// ---------------------------------------------------------------------------------------------

describe('config/legacy-routes.yaml', () => {
  it('holds LEGACY.md §1.7: 147 routes, 66 R, 55 RW, 26 X (row 49 and the §1.5 aliases apart)', () => {
    expect(counted).toHaveLength(147)
    expect(counted.filter((r) => r.class === 'R')).toHaveLength(66)
    expect(counted.filter((r) => r.class === 'RW')).toHaveLength(55)
    expect(counted.filter((r) => r.class === 'X')).toHaveLength(26)
  })

  it('has every numbered row of LEGACY.md §1.1–1.4 except the uncounted 84, 111 and 115', () => {
    const rows = new Set(rules.map((r) => r.row))
    const missing = Array.from({ length: 117 }, (_, i) => i + 1).filter((n) => !rows.has(n))
    expect(missing).toEqual([84, 111, 115])
  })

  it('has no duplicate old method + path', () => {
    const froms = rules.map((r) => r.from.toLowerCase())
    expect(new Set(froms).size).toBe(froms.length)
  })

  it('keeps pure renames pure: R rules only change method and path (a body tweak at most)', () => {
    for (const r of rules.filter((x) => x.class === 'R')) {
      expect(r.to, r.id).toBeDefined()
      expect([r.request, r.response, r.calls, r.gone, r.fallback], r.id).toEqual([
        undefined,
        undefined,
        undefined,
        undefined,
        undefined,
      ])
    }
  })

  it('answers every X rule with a 410, a fallback, or a partial translation LEGACY.md gives (with a note)', () => {
    for (const r of rules.filter((x) => x.class === 'X')) {
      const answer = r.gone ?? r.fallback ?? r.to
      expect(answer, r.id).toBeDefined()
      if (r.to !== undefined) expect(r.note, r.id).toMatch(/partial/)
    }
  })

  it('explains every RW rule that is left untranslated (gone) or translated as a bare rename', () => {
    for (const r of rules.filter(
      (x) =>
        x.class === 'RW' &&
        x.request === undefined &&
        x.body === undefined &&
        x.response === undefined
    )) {
      expect(r.note, r.id).toBeTruthy()
    }
  })
})

describe.skipIf(!routesPresent)('the legacy table against config/immich-routes.json', () => {
  const current = routesPresent ? loadRouteTable(ROUTES_FILE) : []
  const router = compileRouteTable(current)

  it('never matches a current route (any current path, params as UUIDs; GET also as HEAD)', () => {
    expect(current.length).toBeGreaterThan(200)
    const matched: string[] = []
    for (const route of current) {
      const path = route.path.replace(/\{\w+\}/g, UUID_A)
      const methods = route.method === 'GET' ? ['GET', 'HEAD'] : [route.method]
      for (const method of methods) {
        const hit = table.match(method, path)
        if (hit !== undefined) matched.push(`${method} ${route.path} → ${hit.rule.id}`)
      }
    }
    expect(matched).toEqual([])
  })

  it('has no old route that a current route serves; overlaps only where Immich wants a UUID', () => {
    // An old static segment that falls into a current `{id}` param: Immich 3 answers 400 (not a
    // UUID), so the legacy rule takes nothing away. Any new overlap must be reviewed and listed.
    const overlaps: string[] = []
    for (const rule of rules) {
      const [method, path] = oldRequest(rule)
      const m = router.match(method, path)
      if (m === undefined) continue
      const staticInParam = Object.values(m.params).some((v) => !/^[0-9a-f-]{36}$/.test(v))
      expect(staticInParam, `${rule.from} is served by ${m.route.method} ${m.route.path}`).toBe(
        true
      )
      overlaps.push(`${rule.from} ~ ${m.route.path}`)
    }
    expect(overlaps.sort()).toEqual(
      [
        'GET /api/albums/count ~ /api/albums/{id}',
        'GET /api/assets/memory-lane ~ /api/assets/{id}',
        'GET /api/assets/random ~ /api/assets/{id}',
        'GET /api/plugins/triggers ~ /api/plugins/{id}',
      ].sort()
    )
  })

  it('translates to current routes only: every `to`, declared call and 410 replacement exists', () => {
    const missing: string[] = []
    const check = (rule: LegacyRule, spec: string): void => {
      const [method, path] = split(spec)
      if (!path.startsWith('/api/')) return // /custom.css is the web app's
      if (router.match(method, fillSample(path)) === undefined) missing.push(`${rule.id}: ${spec}`)
    }
    for (const r of rules) {
      if (r.to !== undefined) check(r, r.to)
      for (const c of r.calls ?? []) check(r, c)
      if (r.gone?.replacement !== undefined) check(r, r.gone.replacement)
    }
    expect(missing).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------

describe('every enabled rule', () => {
  const plain = enabled.filter((r) => r.to !== undefined && r.request === undefined)

  it.each(plain.map((r) => [r.id, r] as const))(
    '%s: old request → current method + path, query byte-for-byte',
    (_id, rule) => {
      const hit = hitFor(rule)
      expect(hit.rule.id).toBe(rule.id)
      const [toMethod, toPath] = split(rule.to!)
      const query = '?withHidden=true&x=%2A%20y&x=2'
      const out = forward(hit.rewrite(query))
      expect(out.method).toBe(toMethod)
      expect(out.path).toBe(fillSample(toPath))
      expect(out.query).toBe(query)
      expect(out.successor).toBe(`${fillSample(toPath)}${query}`)
      expect(out.jsonBody).toBeUndefined()
      expect(out.dropBody).toBe(toMethod === 'GET' && split(rule.from)[0] !== 'GET')
      expect(out.transformBody !== undefined).toBe(rule.body !== undefined)
      expect(out.transformResponse !== undefined).toBe(rule.response !== undefined)
    }
  )

  it.each(enabled.map((r) => [r.id, r] as const))(
    '%s: matches with a trailing slash and any case of its static segments',
    (_id, rule) => {
      const [method, path] = oldRequest(rule)
      expect(table.match(method, `${path}/`)?.rule.id).toBe(rule.id)
      const shouted = path
        .split('/')
        .map((s) => (Object.values(SAMPLE).includes(s) ? s : s.toUpperCase()))
        .join('/')
      expect(shouted).not.toBe(path)
      expect(table.match(method.toLowerCase(), shouted)?.rule.id).toBe(rule.id)
      expect(table.match(method, `${path}//`)).toBeUndefined()
    }
  )

  it.each(enabled.filter((r) => r.gone !== undefined).map((r) => [r.id, r] as const))(
    '%s: answers 410 naming the replacement',
    (_id, rule) => {
      const err = gatewayError(() => hitFor(rule).rewrite(''))
      expect(err.status).toBe(410)
      expect(err.code).toBe('LEGACY_ROUTE_GONE')
      expect(err.message).toBe(rule.gone!.message)
      const replacement = rule.gone!.replacement?.split(' ')[1]
      if (replacement !== undefined && !replacement.includes('{')) {
        expect(err.headers).toEqual({ Link: `<${replacement}>; rel="successor-version"` })
        expect(err.message).toContain(replacement)
      } else {
        expect(err.headers).toEqual({})
      }
    }
  )

  it.each(enabled.filter((r) => r.fallback !== undefined).map((r) => [r.id, r] as const))(
    '%s: answers its safe fallback',
    (_id, rule) => {
      expect(hitFor(rule).rewrite('?deviceId=x')).toEqual({
        kind: 'respond',
        status: rule.fallback!.status,
        body: rule.fallback!.body,
      })
    }
  )

  it('has an explicit request-transform case below for every rule with a request transform', () => {
    const withRequest = enabled.filter((r) => r.request !== undefined).map((r) => r.id)
    expect(withRequest.filter((id) => !REQUEST_CASES.some((c) => c[0] === id))).toEqual([])
  })

  it('names only transforms that exist, and every exported transform is used or opt-in', () => {
    const used = (f: 'request' | 'body' | 'response') =>
      new Set(rules.map((r) => r[f]).filter(Boolean))
    expect(Object.keys(requestTransforms).filter((n) => !used('request').has(n))).toEqual([])
    expect(Object.keys(bodyTransforms).filter((n) => !used('body').has(n))).toEqual([])
    expect(Object.keys(responseTransforms).filter((n) => !used('response').has(n))).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------

type Expect =
  | Partial<Pick<LegacyForward, 'method' | 'path' | 'query' | 'jsonBody'>>
  | { respond: [number, unknown] }
  | { status: number }
type RequestCase = [id: string, query: string, expected: Expect]

const NOW = new Date('2026-03-15T10:00:00.000Z')

const REQUEST_CASES: RequestCase[] = [
  ['asset-upload', '?key=k', { method: 'POST', path: '/api/assets', query: '?key=k' }],
  ['album-list', '', { method: 'GET', path: '/api/albums', query: '?isOwned=true' }],
  ['album-list', '?shared=true', { query: '?isShared=true' }],
  ['album-list', '?shared=false', { query: '?isShared=false' }],
  ['album-list', `?shared=false&assetId=${UUID_B}`, { query: `?assetId=${UUID_B}` }],
  [
    'album-get',
    '?withoutAssets=true&key=abc',
    { path: `/api/albums/${UUID_A}`, query: '?key=abc' },
  ],
  ['album-get', '?key=a%20b', { query: '?key=a%20b' }],
  [
    'asset-list',
    '?updatedAfter=2024-01-01T00:00:00.000Z&isArchived=false&take=250&skip=500&isFavorite=true&apiKey=K',
    {
      method: 'POST',
      path: '/api/search/metadata',
      query: '?apiKey=K',
      jsonBody: {
        withExif: true,
        updatedAfter: '2024-01-01T00:00:00.000Z',
        isFavorite: true,
        visibility: 'timeline',
        size: 250,
        page: 3,
      },
    },
  ],
  [
    'asset-list',
    '?isArchived=true&take=5000',
    { query: '', jsonBody: { withExif: true, visibility: 'archive', size: 1000, page: 1 } },
  ],
  [
    'asset-file',
    '?isThumb=true&key=k',
    { method: 'GET', path: `/api/assets/${UUID_A}/thumbnail`, query: '?key=k&size=thumbnail' },
  ],
  [
    'asset-file',
    '?isWeb=true&isThumb=false',
    { path: `/api/assets/${UUID_A}/thumbnail`, query: '?size=preview' },
  ],
  [
    'asset-file',
    '?isThumb=false&isWeb=false',
    { path: `/api/assets/${UUID_A}/original`, query: '' },
  ],
  [
    'asset-thumbnail',
    '?format=JPEG&key=k',
    { path: `/api/assets/${UUID_A}/thumbnail`, query: '?key=k&size=preview' },
  ],
  ['asset-thumbnail', '?format=WEBP', { query: '?size=thumbnail' }],
  ['asset-thumbnail', '', { query: '?size=thumbnail' }],
  [
    'asset-memory-lane',
    '?day=3&month=7',
    { method: 'GET', path: '/api/memories', query: '?for=2026-07-03&type=on_this_day' },
  ],
  [
    'assets-memory-lane',
    '?day=29&month=2&key=s',
    { query: '?key=s&for=2026-02-28&type=on_this_day' },
  ],
  [
    'asset-memory-lane',
    '?timestamp=2023-12-24T12:00:00.000Z',
    { query: '?for=2026-12-24&type=on_this_day' },
  ],
  ['asset-memory-lane', '?day=x', { status: 400 }],
  [
    'asset-random',
    '?count=5',
    {
      method: 'POST',
      path: '/api/search/random',
      query: '',
      jsonBody: { size: 5, visibility: 'timeline', withExif: true },
    },
  ],
  ['assets-random', '', { jsonBody: { size: 1, visibility: 'timeline', withExif: true } }],
  [
    'asset-statistics',
    '?isArchived=true&isFavorite=true',
    { path: '/api/assets/statistics', query: '?isFavorite=true&visibility=archive' },
  ],
  ['asset-statistics', '?isTrashed=true', { query: '?isTrashed=true' }],
  [
    'asset-time-buckets',
    '?size=MONTH&isArchived=false&userId=u',
    { path: '/api/timeline/buckets', query: '?userId=u&visibility=timeline' },
  ],
  ['asset-time-buckets', '?size=DAY', { status: 410 }],
  [
    'asset-time-bucket',
    '?size=MONTH&timeBucket=2024-05-01&albumId=a',
    { path: '/api/timeline/bucket', query: '?timeBucket=2024-05-01T00%3A00%3A00.000Z&albumId=a' },
  ],
  [
    'assets-search',
    '?originalFileName=IMG_1.jpg&isFavorite=true&page=2&size=50&resizePath=x&deviceId=d&personIds=p1&personIds=p2&key=k',
    {
      method: 'POST',
      path: '/api/search/metadata',
      query: '?key=k',
      jsonBody: {
        originalFileName: 'IMG_1.jpg',
        isFavorite: true,
        page: 2,
        size: 50,
        personIds: ['p1', 'p2'],
        visibility: 'timeline',
      },
    },
  ],
  ['assets-search', '?withArchived=true', { jsonBody: {} }],
  ['assets-search', '?isVisible=false&isArchived=true', { jsonBody: { visibility: 'hidden' } }],
  ['library-list', '?type=UPLOAD', { respond: [200, []] }],
  ['library-list', '?type=EXTERNAL', { path: '/api/libraries', query: '' }],
  ['library-list', '', { query: '' }],
  ['person-list', '?withHidden=true', { path: '/api/people', query: '?withHidden=true&size=1000' }],
  [
    'person-assets',
    '?key=k',
    {
      method: 'POST',
      path: '/api/search/metadata',
      query: '?key=k',
      jsonBody: { personIds: [UUID_A], withExif: true, page: 1, size: 1000 },
    },
  ],
  [
    'people-assets',
    '',
    { method: 'POST', jsonBody: { personIds: [UUID_A], withExif: true, page: 1, size: 1000 } },
  ],
  [
    'tag-assets',
    '',
    { method: 'POST', jsonBody: { tagIds: [UUID_A], withExif: true, page: 1, size: 1000 } },
  ],
  [
    'tags-assets',
    '',
    { method: 'POST', jsonBody: { tagIds: [UUID_A], withExif: true, page: 1, size: 1000 } },
  ],
  [
    'server-info-admin-onboarding',
    '',
    {
      method: 'POST',
      path: '/api/system-metadata/admin-onboarding',
      jsonBody: { isOnboarded: true },
    },
  ],
  [
    'shared-link-me',
    '?key=k&password=p&token=t',
    { path: '/api/shared-links/me', query: '?key=k' },
  ],
  ['shared-link-me', '?key=k%2A', { query: '?key=k%2A' }],
  [
    'search-legacy',
    '?q=beach&clip=true&page=2&apiKey=K',
    {
      method: 'POST',
      path: '/api/search/smart',
      query: '?apiKey=K',
      jsonBody: { query: 'beach', visibility: 'timeline', page: 2 },
    },
  ],
  [
    'search-legacy',
    '?q=IMG&motion=true&withArchived=true&recent=true',
    {
      method: 'POST',
      path: '/api/search/metadata',
      query: '',
      jsonBody: { originalFileName: 'IMG', isMotion: true },
    },
  ],
  [
    'asset-faces-alias',
    '?x-api-key=k',
    { method: 'GET', path: '/api/faces', query: `?x-api-key=k&id=${UUID_A}` },
  ],
]

describe('request transforms (explicit expectations)', () => {
  it.each(REQUEST_CASES.map((c) => [`${c[0]} ${c[1] || '(no query)'}`, c] as const))(
    '%s',
    (_name, [id, query, expected]) => {
      const rule = rules.find((r) => r.id === id)!
      const [method, path] = oldRequest(rule)
      const hit = table.match(method, path)
      expect(hit?.rule.id).toBe(id)
      if ('status' in expected) {
        expect(gatewayError(() => hit!.rewrite(query, { now: NOW })).status).toBe(expected.status)
        return
      }
      const outcome = hit!.rewrite(query, { now: NOW })
      if ('respond' in expected) {
        expect(outcome).toEqual({
          kind: 'respond',
          status: expected.respond[0],
          body: expected.respond[1],
        })
        return
      }
      const out = forward(outcome)
      for (const key of ['method', 'path', 'query'] as const)
        if (expected[key] !== undefined) expect(out[key], key).toBe(expected[key])
      if ('jsonBody' in expected) expect(out.jsonBody).toEqual(expected.jsonBody)
      if (out.jsonBody !== undefined) expect(out.dropBody).toBe(false)
    }
  )
})

// ---------------------------------------------------------------------------------------------

describe('matcher', () => {
  const id = (method: string, path: string): string | undefined =>
    table.match(method, path)?.rule.id

  it('lets static segments win over params, with backtracking', () => {
    expect(id('GET', `/api/asset/thumbnail/${UUID_A}`)).toBe('asset-thumbnail')
    expect(id('GET', `/api/asset/${UUID_A}/thumbnail`)).toBe('asset-thumbnail-alias')
    expect(id('GET', '/api/asset/thumbnail/thumbnail')).toBe('asset-thumbnail')
    expect(id('GET', '/api/asset/map-marker')).toBe('asset-map-marker')
    expect(id('GET', '/api/asset/statistics')).toBe('asset-statistics')
    expect(id('GET', `/api/asset/file/${UUID_A}`)).toBe('asset-file')
    expect(id('DELETE', '/api/user/profile-image')).toBe('user-profile-image-delete')
    expect(id('DELETE', `/api/user/${UUID_A}`)).toBe('user-delete')
    expect(id('GET', '/api/album/count')).toBe('album-count')
    expect(id('GET', `/api/album/${UUID_A}`)).toBe('album-get')
  })

  it('routes GET /api/asset/{x} by the `where` constraint: a UUID is #24, anything else #49', () => {
    expect(id('GET', `/api/asset/${UUID_A}`)).toBe('asset-get')
    expect(id('GET', `/api/asset/${UUID_A.toUpperCase()}`)).toBe('asset-get')
    expect(id('GET', '/api/asset/my-device-id')).toBe('asset-device-list')
    expect(id('GET', '/api/asset/thumbnail')).toBe('asset-device-list') // no static rule ends there
  })

  it('turns away non-legacy requests', () => {
    expect(id('GET', `/api/assets/${UUID_A}/thumbnail`)).toBeUndefined()
    expect(id('GET', '/api/albums')).toBeUndefined()
    expect(id('GET', '/api/server/ping')).toBeUndefined()
    expect(id('GET', '/api')).toBeUndefined()
    expect(id('GET', '/api/')).toBeUndefined()
    expect(id('GET', '/apialbum')).toBeUndefined()
    expect(id('GET', '/album')).toBeUndefined()
    expect(id('GET', '/')).toBeUndefined()
    expect(id('PATCH', '/api/asset/upload')).toBeUndefined() // POST only
    expect(id('GET', '/api/asset/upload')).toBe('asset-device-list') // the very old GET /asset/{deviceId}
    expect(id('OPTIONS', '/api/album')).toBeUndefined()
    expect(id('GET', `/api/album/${UUID_A}/extra`)).toBeUndefined()
  })

  it('is case-insensitive on static segments and keeps params as sent', () => {
    const hit = table.match('get', '/API/Album/AbC')
    expect(hit?.rule.id).toBe('album-get')
    expect(hit?.params).toEqual({ id: 'AbC' })
    expect(forward(hit!.rewrite('')).path).toBe('/api/albums/AbC')
  })

  it('substitutes params as received (encoded) and hands transforms the decoded value', () => {
    const hit = table.match('GET', '/api/person/a%20b/thumbnail')!
    expect(hit.params).toEqual({ id: 'a b' })
    expect(forward(hit.rewrite('')).path).toBe('/api/people/a%20b/thumbnail')
  })

  it('refuses params that could move the path: dot segments, encoded slashes, bad escapes', () => {
    expect(id('GET', '/api/person/../thumbnail')).toBeUndefined()
    expect(id('GET', '/api/person/%2e%2e/thumbnail')).toBeUndefined()
    expect(id('GET', '/api/person/a%2Fb/thumbnail')).toBeUndefined()
    expect(id('GET', '/api/person/a%5Cb/thumbnail')).toBeUndefined()
    expect(id('GET', '/api/person/%zz/thumbnail')).toBeUndefined()
  })

  it('serves HEAD from GET rules that forward a GET without rewriting bodies', () => {
    const thumb = table.match('HEAD', `/api/asset/thumbnail/${UUID_A}`)
    expect(thumb?.rule.id).toBe('asset-thumbnail')
    expect(forward(thumb!.rewrite('?format=JPEG'))).toMatchObject({
      method: 'HEAD',
      query: '?size=preview',
    })
    expect(forward(table.match('HEAD', '/api/server-info/ping')!.rewrite('')).method).toBe('HEAD')
    expect(table.match('HEAD', `/api/album/${UUID_A}`)).toBeUndefined() // its answer is rewritten
    expect(table.match('HEAD', '/api/asset/random')).toBeUndefined() // becomes a POST
  })

  it('never puts a credential in the successor link', () => {
    const out = forward(
      table
        .match('GET', '/api/server-info/version')!
        .rewrite('?apiKey=SECRET&a=1&key=S&sessionKey=T&slug=U')
    )
    expect(out.query).toBe('?apiKey=SECRET&a=1&key=S&sessionKey=T&slug=U')
    expect(out.successor).toBe('/api/server/version?a=1')
    expect(
      forward(table.match('GET', '/api/server-info/version')!.rewrite('?monkey=1')).successor
    ).toBe('/api/server/version?monkey=1')
  })

  it('drops the old POST body when the current route is a GET', () => {
    const out = forward(table.match('POST', `/api/download/asset/${UUID_A}`)!.rewrite('?key=k'))
    expect(out).toMatchObject({
      method: 'GET',
      path: `/api/assets/${UUID_A}/original`,
      query: '?key=k',
      dropBody: true,
    })
  })

  it('knows which follow-up calls a rule declared', () => {
    const hit = table.match('GET', `/api/album/${UUID_A}`)!
    expect(hit.allowsCall({ method: 'POST', path: '/api/search/metadata' })).toBe(true)
    expect(hit.allowsCall({ method: 'GET', path: '/api/timeline/bucket' })).toBe(true)
    expect(hit.allowsCall({ method: 'GET', path: '/api/search/metadata' })).toBe(false)
    expect(hit.allowsCall({ method: 'DELETE', path: `/api/assets` })).toBe(false)
    expect(
      table.match('GET', '/api/album')!.allowsCall({ method: 'POST', path: '/api/search/metadata' })
    ).toBe(false)
  })

  it('leaves disabled rules out', () => {
    const off = compileLegacyTable(
      rules.map((r) => (r.id === 'album-list' ? { ...r, disabled: true } : r))
    )
    expect(off.match('GET', '/api/album')).toBeUndefined()
    expect(off.match('GET', `/api/album/${UUID_A}`)?.rule.id).toBe('album-get')
    expect(off.rules).toHaveLength(rules.length - 1)
  })
})

// ---------------------------------------------------------------------------------------------

describe('body transforms', () => {
  const body = (id: string, input: unknown): unknown => {
    const out = forward(hitFor(rules.find((r) => r.id === id)!).rewrite(''))
    return out.transformBody!(input)
  }

  it('asset-ids: {assetIds} → {ids}, a current body unchanged', () => {
    expect(body('album-assets-add', { assetIds: ['a'] })).toEqual({ ids: ['a'] })
    expect(body('album-assets-remove', { ids: ['b'] })).toEqual({ ids: ['b'] })
    expect(body('tag-assets-add', undefined)).toBeUndefined()
  })

  it('album-create / album-users: user id lists → albumUsers with role editor', () => {
    expect(
      body('album-create', { albumName: 'x', sharedWithUserIds: ['u1', 'u2'], assetIds: ['a'] })
    ).toEqual({
      albumName: 'x',
      assetIds: ['a'],
      albumUsers: [
        { userId: 'u1', role: 'editor' },
        { userId: 'u2', role: 'editor' },
      ],
    })
    expect(
      body('album-users-add', {
        sharedUserIds: ['u1'],
        albumUsers: [{ userId: 'u0', role: 'viewer' }],
      })
    ).toEqual({
      albumUsers: [
        { userId: 'u0', role: 'viewer' },
        { userId: 'u1', role: 'editor' },
      ],
    })
  })

  it('api-key-create adds permissions ["all"] only when absent', () => {
    expect(body('api-key-create', { name: 'k' })).toEqual({ name: 'k', permissions: ['all'] })
    expect(body('api-key-create', { name: 'k', permissions: ['asset.read'] })).toEqual({
      name: 'k',
      permissions: ['asset.read'],
    })
  })

  it('asset-update / asset-bulk-update: isArchived → visibility', () => {
    expect(body('asset-update', { isArchived: true, isFavorite: true })).toEqual({
      visibility: 'archive',
      isFavorite: true,
    })
    expect(body('asset-bulk-update', { ids: ['a'], isArchived: false })).toEqual({
      ids: ['a'],
      visibility: 'timeline',
    })
  })

  it('asset-bulk-update: stackParentId → POST /api/stacks first, then the rest', async () => {
    const hit = hitFor(rules.find((r) => r.id === 'asset-bulk-update')!)
    const step = forward(hit.rewrite('')).transformBody!({
      ids: ['c1', 'c2'],
      stackParentId: 'p',
      isFavorite: true,
    })
    const { result, calls } = drive(step, () => [201, { id: 's' }], hit)
    await expect(result).resolves.toEqual({ ids: ['c1', 'c2'], isFavorite: true })
    expect(calls).toEqual([
      { method: 'POST', path: '/api/stacks', jsonBody: { assetIds: ['p', 'c1', 'c2'] } },
    ])
    const failing = drive(
      forward(hit.rewrite('')).transformBody!({ ids: ['c'], stackParentId: 'p' }),
      () => [400, {}],
      hit
    )
    await expect(failing.result).rejects.toMatchObject({ status: 400, code: 'LEGACY_STEP_FAILED' })
  })

  it('asset-bulk-update: removeParent → each stacked asset leaves its stack', async () => {
    const hit = hitFor(rules.find((r) => r.id === 'asset-bulk-update')!)
    const step = forward(hit.rewrite('')).transformBody!({ ids: ['a1', 'a2'], removeParent: true })
    const { result, calls } = drive(
      step,
      (call) =>
        call.method === 'GET'
          ? [
              200,
              call.path.endsWith('a1')
                ? { id: 'a1', stack: { id: 's1' } }
                : { id: 'a2', stack: null },
            ]
          : [204, undefined],
      hit
    )
    await expect(result).resolves.toEqual({ ids: ['a1', 'a2'] })
    expect(calls.map((c) => `${c.method} ${c.path}`)).toEqual([
      'GET /api/assets/a1',
      'DELETE /api/stacks/s1/assets/a1',
      'GET /api/assets/a2',
    ])
  })

  it('library-create / library-update / library-scan drop the removed fields', () => {
    expect(
      body('library-create', {
        type: 'EXTERNAL',
        ownerId: 'o',
        isVisible: true,
        isWatched: false,
        importPaths: ['/p'],
      })
    ).toEqual({
      ownerId: 'o',
      importPaths: ['/p'],
    })
    expect(gatewayError(() => body('library-create', { type: 'UPLOAD' })).status).toBe(410)
    expect(body('library-update', { name: 'n', isVisible: false })).toEqual({ name: 'n' })
    expect(body('library-scan', { refreshAllFiles: true })).toEqual({})
  })

  it('person / shared-link: "" → null where v3 rejects empty strings', () => {
    expect(body('person-create', { name: 'n', birthDate: '', color: '' })).toEqual({
      name: 'n',
      birthDate: null,
      color: null,
    })
    expect(body('person-update', { birthDate: '2000-01-01' })).toEqual({ birthDate: '2000-01-01' })
    expect(
      body('shared-link-create', { type: 'ALBUM', description: '', password: '', slug: 's' })
    ).toEqual({
      type: 'ALBUM',
      description: null,
      password: null,
      slug: 's',
    })
    expect(body('shared-link-update', { changeExpiryTime: true, description: '' })).toEqual({
      expiresAt: null,
      description: null,
    })
    expect(
      body('shared-link-update', { changeExpiryTime: true, expiresAt: '2030-01-01T00:00:00.000Z' })
    ).toEqual({
      expiresAt: '2030-01-01T00:00:00.000Z',
    })
  })

  it('tag-create drops the tag type', () => {
    expect(body('tag-create', { name: 't', type: 'CUSTOM' })).toEqual({ name: 't' })
  })
})

// ---------------------------------------------------------------------------------------------

const v3Asset = (id: string, extra: Record<string, unknown> = {}) => ({
  id,
  ownerId: UUID_B,
  type: 'IMAGE',
  duration: null,
  visibility: 'timeline',
  isArchived: false,
  ...extra,
})
const legacyOf = (id: string, extra: Record<string, unknown> = {}) => ({
  ...v3Asset(id, extra),
  deviceAssetId: '',
  deviceId: '',
  duration: typeof extra['duration'] === 'string' ? extra['duration'] : '0:00:00.00000',
})
const owner = { id: UUID_B, name: 'Owner' }
const friend = { id: 'f1', name: 'Friend' }
const v3Album = {
  id: UUID_A,
  albumName: 'Trip',
  albumUsers: [
    { role: 'owner', user: owner },
    { role: 'editor', user: friend },
  ],
  assetCount: 3,
}
const legacyAlbumOf = (assets: unknown[]) => ({
  ...v3Album,
  owner,
  ownerId: UUID_B,
  sharedUsers: [friend],
  assets,
})

describe('response transforms', () => {
  const response = (ruleId: string, query = '') => {
    const rule = rules.find((r) => r.id === ruleId)!
    const hit = hitFor(rule)
    const out = forward(hit.rewrite(query, { now: NOW }))
    return { hit, transform: out.transformResponse! }
  }
  /** A transform that answers without a follow-up call. */
  const sync = (ruleId: string, status: number, body: unknown, query = ''): ResponseResult => {
    const step = response(ruleId, query).transform(status, body)
    if (step instanceof FollowUp)
      throw new Error(`${ruleId} asked for ${step.call.method} ${step.call.path}`)
    return step
  }

  it('passes every non-2xx answer through unchanged', () => {
    const error = { message: 'Not found' }
    for (const rule of enabled.filter((r) => r.response !== undefined)) {
      expect(sync(rule.id, 404, error, '?day=1&month=1'), rule.id).toEqual({
        status: 404,
        body: error,
      })
    }
  })

  it('asset: [AR] backfill — device ids as "", duration back to a string', () => {
    expect(sync('asset-get', 200, v3Asset('a', { type: 'VIDEO', duration: 3_723_456 }))).toEqual({
      status: 200,
      body: legacyOf('a', { type: 'VIDEO', duration: '1:02:03.456000' }),
    })
    expect(
      sync('asset-by-id', 200, { id: 'a', deviceId: 'kept', duration: '0:00:01.000000' })
    ).toEqual({
      status: 200,
      body: { id: 'a', deviceId: 'kept', deviceAssetId: '', duration: '0:00:01.000000' },
    })
    expect(sync('asset-update', 200, { id: 'b', visibility: 'archive' })).toMatchObject({
      body: { isArchived: true },
    })
  })

  it('album-list / album: owner, ownerId, sharedUsers and assets: [] backfilled', () => {
    expect(sync('album-list', 200, [v3Album])).toEqual({ status: 200, body: [legacyAlbumOf([])] })
    expect(sync('album-update', 200, v3Album)).toEqual({ status: 200, body: legacyAlbumOf([]) })
    expect(
      sync('album-users-add', 200, {
        ...v3Album,
        owner,
        ownerId: UUID_B,
        albumUsers: [{ role: 'editor', user: friend }],
      })
    ).toEqual({
      status: 200,
      body: { ...legacyAlbumOf([]), albumUsers: [{ role: 'editor', user: friend }] },
    })
  })

  it('album-detail: inline assets rebuilt from every page of search/metadata', async () => {
    const { hit, transform } = response('album-get')
    const pages: Record<number, unknown> = {
      1: { albums: {}, assets: { items: [v3Asset('a1'), v3Asset('a2')], nextPage: '2' } },
      2: { albums: {}, assets: { items: [v3Asset('a3')], nextPage: null } },
    }
    const { result, calls } = drive(
      transform(200, v3Album),
      (call) => [200, pages[(call.jsonBody as { page: number }).page]],
      hit
    )
    await expect(result).resolves.toEqual({
      status: 200,
      body: legacyAlbumOf([legacyOf('a1'), legacyOf('a2'), legacyOf('a3')]),
    })
    expect(calls).toEqual(
      [1, 2].map((page) => ({
        method: 'POST',
        path: '/api/search/metadata',
        query: '',
        jsonBody: { albumIds: [UUID_A], withExif: true, order: 'desc', page, size: 1000 },
      }))
    )
  })

  it('album-detail: a failed search page is answered as it came', async () => {
    const { hit, transform } = response('album-get')
    const { result } = drive(
      transform(200, v3Album),
      () => [403, { message: 'Missing required permission: asset.read' }],
      hit
    )
    await expect(result).resolves.toEqual({
      status: 403,
      body: { message: 'Missing required permission: asset.read' },
    })
  })

  it('album-detail: withoutAssets=true makes no call', () => {
    expect(sync('album-get', 200, v3Album, '?withoutAssets=true')).toEqual({
      status: 200,
      body: legacyAlbumOf([]),
    })
  })

  it('album-detail: shared-link callers get the assets from the album timeline', async () => {
    const { hit, transform } = response('album-get', '?key=SHARE')
    const { result, calls } = drive(
      transform(200, v3Album),
      (call) =>
        call.path === '/api/timeline/buckets'
          ? [200, [{ timeBucket: '2024-05-01T00:00:00.000Z', count: 2 }]]
          : [
              200,
              {
                id: ['a1', 'a2'],
                isImage: [true, false],
                visibility: ['timeline', 'archive'],
                duration: [null, 1500],
                fileCreatedAt: ['t1', 't2'],
              },
            ],
      hit
    )
    const body = (await result).body as { assets: Record<string, unknown>[] }
    expect(calls.map((c) => `${c.method} ${c.path}${c.query}`)).toEqual([
      `GET /api/timeline/buckets?key=SHARE&albumId=${UUID_A}`,
      `GET /api/timeline/bucket?key=SHARE&albumId=${UUID_A}&timeBucket=2024-05-01T00%3A00%3A00.000Z`,
    ])
    expect(
      body.assets.map((a) => [a['id'], a['type'], a['isArchived'], a['duration'], a['deviceId']])
    ).toEqual([
      ['a1', 'IMAGE', false, '0:00:00.00000', ''],
      ['a2', 'VIDEO', true, '0:00:01.500000', ''],
    ])
  })

  it('album-create: the new album comes back with the assets just added', async () => {
    const { hit, transform } = response('album-create')
    const { result } = drive(
      transform(201, v3Album),
      () => [200, { assets: { items: [v3Asset('a1')], nextPage: null } }],
      hit
    )
    await expect(result).resolves.toEqual({ status: 201, body: legacyAlbumOf([legacyOf('a1')]) })
  })

  it('search-items: assets.items as a bare array, hidden parts left out, another user → 410', () => {
    const envelope = {
      albums: {},
      assets: { items: [v3Asset('a1'), v3Asset('m1', { visibility: 'hidden' })], nextPage: null },
    }
    expect(sync('asset-list', 200, envelope)).toEqual({ status: 200, body: [legacyOf('a1')] })
    expect(sync('asset-list', 200, envelope, `?userId=${UUID_B}`)).toEqual({
      status: 200,
      body: [legacyOf('a1')],
    })
    expect(
      gatewayError(() => sync('asset-list', 200, envelope, '?userId=someone-else')).status
    ).toBe(410)
    expect(sync('assets-search', 200, envelope, '?isVisible=false').body).toHaveLength(2)
  })

  it('person-assets / tag-assets: every further page fetched, one bare array', async () => {
    for (const [ruleId, field] of [
      ['person-assets', 'personIds'],
      ['tags-assets', 'tagIds'],
    ] as const) {
      const { hit, transform } = response(ruleId, '?key=k')
      const first = { assets: { items: [v3Asset('a1')], nextPage: '2' } }
      const { result, calls } = drive(
        transform(200, first),
        () => [200, { assets: { items: [v3Asset('a2')], nextPage: null } }],
        hit
      )
      await expect(result).resolves.toEqual({ status: 200, body: [legacyOf('a1'), legacyOf('a2')] })
      expect(calls).toEqual([
        {
          method: 'POST',
          path: '/api/search/metadata',
          query: '?key=k',
          jsonBody: { [field]: [UUID_A], withExif: true, page: 2, size: 1000 },
        },
      ])
    }
  })

  it('asset-list: random assets backfilled', () => {
    expect(sync('asset-random', 200, [v3Asset('a')])).toEqual({
      status: 200,
      body: [legacyOf('a')],
    })
  })

  it('search-envelope: the envelope stays, its items backfilled', () => {
    const body = {
      albums: { items: [] },
      assets: {
        total: 2,
        count: 2,
        items: [v3Asset('a'), v3Asset('h', { visibility: 'hidden' })],
        nextPage: null,
      },
    }
    expect(sync('search-legacy', 200, body, '?q=x')).toEqual({
      status: 200,
      body: {
        albums: { items: [] },
        assets: { total: 2, count: 1, items: [legacyOf('a')], nextPage: null },
      },
    })
  })

  it('asset-upload: {id, status} → {id, duplicate}, status code kept', () => {
    expect(sync('asset-upload', 201, { id: 'n', status: 'created' })).toEqual({
      status: 201,
      body: { id: 'n', duplicate: false },
    })
    expect(sync('asset-upload', 200, { id: 'd', status: 'duplicate' })).toEqual({
      status: 200,
      body: { id: 'd', duplicate: true },
    })
  })

  it('memory-lane: memories → [{yearsAgo, title, assets}], youngest first', () => {
    const memories = [
      { id: 'm1', data: { year: 2023 }, assets: [v3Asset('a3')] },
      { id: 'm2', data: { year: 2025 }, assets: [v3Asset('a1')] },
      { id: 'm3', data: { year: 2026 }, assets: [v3Asset('now')] },
      { id: 'm4', data: { year: 2024 }, assets: [] },
    ]
    expect(sync('asset-memory-lane', 200, memories, '?day=15&month=3')).toEqual({
      status: 200,
      body: [
        { yearsAgo: 1, title: '1 year since...', assets: [legacyOf('a1')] },
        { yearsAgo: 3, title: '3 years since...', assets: [legacyOf('a3')] },
      ],
    })
  })

  it('timeline-bucket: columnar → asset objects', () => {
    const columnar = {
      id: ['a'],
      ownerId: ['o'],
      isImage: [true],
      isFavorite: [true],
      visibility: ['timeline'],
      isTrashed: [false],
      thumbhash: ['h'],
      fileCreatedAt: ['t'],
      duration: [null],
      city: ['Oslo'],
      country: ['NO'],
    }
    expect(
      sync('asset-time-bucket', 200, columnar, '?timeBucket=2024-05-01T00:00:00.000Z')
    ).toEqual({
      status: 200,
      body: [
        {
          id: 'a',
          ownerId: 'o',
          type: 'IMAGE',
          isFavorite: true,
          isArchived: false,
          isTrashed: false,
          thumbhash: 'h',
          fileCreatedAt: 't',
          duration: '0:00:00.00000',
          livePhotoVideoId: null,
          exifInfo: { city: 'Oslo', country: 'NO', projectionType: null },
          visibility: 'timeline',
          deviceAssetId: '',
          deviceId: '',
        },
      ],
    })
  })

  it('curated-locations: one asset per city → {id, city, …}', () => {
    expect(sync('asset-curated-locations', 200, [{ id: 'a', exifInfo: { city: 'Oslo' } }])).toEqual(
      {
        status: 200,
        body: [{ id: 'a', city: 'Oslo', resizePath: '', deviceAssetId: '', deviceId: '' }],
      }
    )
  })

  it('library: type EXTERNAL added to one library and to a list', () => {
    expect(sync('library-get', 200, { id: 'l' })).toEqual({
      status: 200,
      body: { type: 'EXTERNAL', id: 'l' },
    })
    expect(sync('library-list', 200, [{ id: 'l' }])).toEqual({
      status: 200,
      body: [{ type: 'EXTERNAL', id: 'l' }],
    })
  })

  it('people-all-pages: every page fetched, the old {total, hidden, people} kept (never a bare array)', async () => {
    const { hit, transform } = response('person-list', '?withHidden=true')
    const first = { total: 3, hidden: 1, hasNextPage: true, people: [{ id: 'p1' }, { id: 'p2' }] }
    const { result, calls } = drive(
      transform(200, first),
      () => [200, { total: 3, hidden: 1, hasNextPage: false, people: [{ id: 'p3' }] }],
      hit
    )
    await expect(result).resolves.toEqual({
      status: 200,
      body: { total: 3, hidden: 1, people: [{ id: 'p1' }, { id: 'p2' }, { id: 'p3' }] },
    })
    expect(calls).toEqual([
      { method: 'GET', path: '/api/people', query: '?withHidden=true&page=2&size=1000' },
    ])
  })

  it('tag: type CUSTOM and the caller id from /api/users/me', async () => {
    const { hit, transform } = response('tag-list')
    const { result, calls } = drive(
      transform(200, [{ id: 't', name: 'n' }]),
      () => [200, { id: 'me' }],
      hit
    )
    await expect(result).resolves.toEqual({
      status: 200,
      body: [{ type: 'CUSTOM', userId: 'me', id: 't', name: 'n' }],
    })
    expect(calls).toEqual([{ method: 'GET', path: '/api/users/me' }])
    const denied = drive(response('tag-get').transform(200, { id: 't' }), () => [403, {}], hit)
    await expect(denied.result).resolves.toEqual({
      status: 200,
      body: { type: 'CUSTOM', userId: '', id: 't' },
    })
  })

  it('tag-assets-result: id → assetId', () => {
    expect(sync('tag-assets-add', 200, [{ id: 'a', success: true }])).toEqual({
      status: 200,
      body: [{ assetId: 'a', success: true }],
    })
  })

  it('user-list: isAll=false leaves the caller out', async () => {
    const users = [{ id: 'me' }, { id: 'other' }]
    expect(sync('user-list', 200, users, '?isAll=true')).toEqual({ status: 200, body: users })
    const { hit, transform } = response('user-list', '?isAll=false')
    const { result } = drive(transform(200, users), () => [200, { id: 'me' }], hit)
    await expect(result).resolves.toEqual({ status: 200, body: [{ id: 'other' }] })
  })

  it('theme: the CSS text as {customCss}', () => {
    expect(sync('server-theme', 200, 'body{color:red}')).toEqual({
      status: 200,
      body: { customCss: 'body{color:red}' },
    })
  })

  it('faces: items gain personId and boundingBox; an empty list stays empty', () => {
    const face = {
      id: 'f',
      person: { id: 'p' },
      boundingBoxX1: 1,
      boundingBoxY1: 2,
      boundingBoxX2: 3,
      boundingBoxY2: 4,
    }
    expect(sync('asset-faces-alias', 200, [face])).toEqual({
      status: 200,
      body: [{ ...face, personId: 'p', boundingBox: { x1: 1, y1: 2, x2: 3, y2: 4 } }],
    })
    expect(sync('asset-faces-alias', 200, [])).toEqual({ status: 200, body: [] })
  })
})

describe('runSteps', () => {
  it('stops after maxCalls and refuses undeclared calls', async () => {
    const { hit, transform } = (() => {
      const rule = rules.find((r) => r.id === 'person-list')!
      const h = hitFor(rule)
      return { hit: h, transform: forward(h.rewrite('')).transformResponse! }
    })()
    const endless = transform(200, {
      total: 9,
      hidden: 0,
      hasNextPage: true,
      people: [{ id: 'p' }],
    })
    const send = async () => ({ status: 200, body: { hasNextPage: true, people: [{ id: 'p' }] } })
    await expect(runSteps(endless, send, { maxCalls: 3 })).rejects.toMatchObject({
      status: 502,
      code: 'LEGACY_TOO_MANY_CALLS',
    })
    const other = table.match('GET', '/api/album')!
    await expect(runSteps(endless, send, { allow: (c) => other.allowsCall(c) })).rejects.toThrow(
      /undeclared route: GET \/api\/people/
    )
    expect(hit.allowsCall({ method: 'GET', path: '/api/people' })).toBe(true)
  })
})

// ---------------------------------------------------------------------------------------------

describe('old upload: missing fields filled into the streamed form', async () => {
  const { boundaryOf } = await import('../../../policies/legacy-routes/transforms.js')
  const { MultipartFieldFiller } = await import('../../../policies/legacy-routes/multipart-fill.js')

  it('reads the boundary of a multipart/form-data content type', () => {
    expect(boundaryOf('multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxk')).toBe(
      '----WebKitFormBoundary7MA4YWxk'
    )
    expect(boundaryOf('Multipart/Form-Data;charset=utf-8; BOUNDARY="a b:c"')).toBe('a b:c')
    expect(boundaryOf('multipart/form-data; boundary=x; charset=utf-8')).toBe('x')
    expect(boundaryOf('multipart/mixed; boundary=x')).toBeUndefined()
    expect(boundaryOf('application/json')).toBeUndefined()
    expect(boundaryOf('multipart/form-data')).toBeUndefined()
    expect(boundaryOf(`multipart/form-data; boundary=${'x'.repeat(71)}`)).toBeUndefined()
    expect(boundaryOf(undefined)).toBeUndefined()
  })

  /** A real client's form body (undici's FormData encoder), run through the filler in `chunk`-byte pieces. */
  async function fill(form: FormData, chunk: number, captured: Record<string, string> = {}) {
    const client = new Request('http://x/', { method: 'POST', body: form })
    const contentType = client.headers.get('content-type')!
    const bytes = Buffer.from(await client.arrayBuffer())
    const filler = new MultipartFieldFiller({
      boundary: boundaryOf(contentType)!,
      defaults: { fileCreatedAt: 'c', fileModifiedAt: 'm' },
      capture: ['description'],
      captured,
    })
    const out: Buffer[] = []
    filler.on('data', (b: Buffer) => out.push(b))
    const done = new Promise((resolve) => filler.on('end', resolve))
    for (let i = 0; i < bytes.length; i += chunk) filler.write(bytes.subarray(i, i + chunk))
    filler.end()
    await done
    const result = Buffer.concat(out)
    const parsed = await new Response(result, {
      headers: { 'content-type': contentType },
    }).formData()
    return { bytes, result, parsed }
  }

  it.each([1, 7, 4096, 1 << 20])(
    'adds the dates a minimal old form lacks, after its parts (%i-byte chunks)',
    async (chunk) => {
      const file = Buffer.alloc(100_000, 7)
      const form = new FormData()
      form.append('assetData', new Blob([file], { type: 'image/jpeg' }), 'a.jpg')
      form.append('description', 'from the bot')
      const captured: Record<string, string> = {}
      const { parsed } = await fill(form, chunk, captured)
      expect([...parsed.keys()]).toEqual([
        'assetData',
        'description',
        'fileCreatedAt',
        'fileModifiedAt',
      ])
      expect(parsed.get('fileCreatedAt')).toBe('c')
      expect(Buffer.from(await (parsed.get('assetData') as File).arrayBuffer()).equals(file)).toBe(
        true
      )
      expect(captured).toEqual({ description: 'from the bot' })
    }
  )

  it('leaves a form that has its dates byte for byte as it was (no repeated field)', async () => {
    const form = new FormData()
    form.append('fileCreatedAt', '2020-01-01T00:00:00.000Z')
    form.append('fileModifiedAt', '2020-01-02T00:00:00.000Z')
    form.append('assetData', new Blob([Buffer.from('JPEGBYTES')], { type: 'image/jpeg' }), 'a.jpg')
    const { bytes, result } = await fill(form, 3)
    expect(result.equals(bytes)).toBe(true)
  })

  it('the old upload rule asks for the fill and the description capture', () => {
    const contentType = 'multipart/form-data; boundary=B'
    const plain = forward(
      table.match('POST', '/api/asset/upload')!.rewrite('?key=k', { contentType, now: NOW })
    )
    expect(plain).toMatchObject({ method: 'POST', path: '/api/assets', query: '?key=k' })
    expect(plain.multipartFill).toMatchObject({
      boundary: 'B',
      defaults: { fileCreatedAt: NOW.toISOString(), fileModifiedAt: NOW.toISOString() },
      capture: ['description'],
    })
    expect(
      forward(
        table.match('POST', '/api/asset/upload')!.rewrite('', { contentType: 'application/json' })
      ).multipartFill
    ).toBeUndefined()
  })
})

// ---------------------------------------------------------------------------------------------

describe('table validation', () => {
  const base = {
    id: 'a-rule',
    row: 1,
    from: 'GET /api/thing/{id}',
    to: 'GET /api/things/{id}',
    class: 'R',
    existed: '<=1.105',
  }
  const invalid = (rulesIn: unknown[]): string => {
    try {
      validateLegacyTable({ rules: rulesIn }, undefined, 'test.yaml')
    } catch (err) {
      return (err as Error).message
    }
    throw new Error('expected the table to be refused')
  }

  it('accepts a minimal rule', () => {
    expect(validateLegacyTable({ rules: [base] })).toHaveLength(1)
  })

  it.each<[string, unknown[], RegExp]>([
    [
      'unknown field (strict)',
      [{ ...base, extra: 1 }],
      /rules\[0\] \(a-rule\): Unrecognized key: "extra"/,
    ],
    ['missing class', [{ ...base, class: undefined }], /rules\[0\] \(a-rule\)\.class:/],
    [
      'bad method',
      [{ ...base, from: 'FETCH /api/x' }],
      /rules\[0\] \(a-rule\)\.from: expected "METHOD \/path"/,
    ],
    [
      'old path outside /api',
      [{ ...base, from: 'GET /thing' }],
      /rules\[0\] \(a-rule\)\.from: the old path must start with \/api\//,
    ],
    [
      'non-kebab id',
      [{ ...base, id: 'A_Rule' }],
      /rules\[0\]\.id: expected a kebab-case id|rules\[0\] \(A_Rule\)\.id/,
    ],
    [
      'unknown request transform',
      [{ ...base, class: 'RW', request: 'nope' }],
      /rules\[0\] \(a-rule\)\.request: unknown request transform "nope"/,
    ],
    [
      'unknown response transform',
      [{ ...base, class: 'RW', response: 'nope' }],
      /\.response: unknown response transform "nope"/,
    ],
    [
      'unknown body transform',
      [{ ...base, body: 'nope' }],
      /\.body: unknown body transform "nope"/,
    ],
    [
      'to uses a param not in from',
      [{ ...base, to: 'GET /api/things/{other}' }],
      /rules\[0\] \(a-rule\)\.to: uses \{other\}, which is not in from/,
    ],
    ['to and gone', [{ ...base, gone: { message: 'm' } }], /exactly one of to, gone, fallback/],
    ['none of to/gone/fallback', [{ ...base, to: undefined }], /exactly one of to, gone, fallback/],
    [
      'R with a response transform',
      [{ ...base, response: 'asset' }],
      /a pure rename \(R\) has no request\/response transform/,
    ],
    [
      'calls without a transform',
      [{ ...base, class: 'RW', calls: ['GET /api/users/me'] }],
      /calls are made by body or response transforms/,
    ],
    [
      'where on a missing param',
      [{ ...base, where: { nope: 'uuid' } }],
      /\.where: \{nope\} \(uuid\) is not a param of from/,
    ],
    [
      'duplicate id',
      [base, { ...base, from: 'GET /api/other' }],
      /rules\[1\] \(a-rule\)\.id: duplicate of rules\[0\]/,
    ],
    [
      'split param segment',
      [{ ...base, from: 'GET /api/x{id}' }],
      /a param must be a whole segment/,
    ],
    [
      'gone in a transform rule',
      [{ ...base, class: 'X', to: undefined, gone: { message: 'm' }, response: 'asset' }],
      /only a rule with `to`/,
    ],
  ])('refuses %s', (_name, rulesIn, message) => {
    const text = invalid(rulesIn)
    expect(text).toMatch(/^Invalid test\.yaml:/)
    expect(text).toMatch(message)
  })

  it('refuses two rules that match the same requests (param names aside), unless `where` tells them apart', () => {
    const twin = { ...base, id: 'b-rule', from: 'GET /api/THING/{x}', to: 'GET /api/things/{x}' }
    expect(() => compileLegacyTable([base, twin] as LegacyRule[])).toThrow(
      /rules\[1\] \(b-rule\)\.from: .* matches the same requests as a-rule/
    )
    const constrained = { ...twin, where: { x: 'not-uuid' } }
    expect(() => compileLegacyTable([base, constrained] as LegacyRule[])).not.toThrow()
  })

  it('reads the file and names it in errors', () => {
    expect(() => loadLegacyTable('/nonexistent/legacy.yaml')).toThrow(
      /Cannot read legacy table \/nonexistent\/legacy\.yaml/
    )
  })
})
