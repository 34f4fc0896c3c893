import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import type { RouteInfo } from '../../src/env.js'
import {
  generateRouteTable,
  generateRouteTableFile,
  serializeRouteTableFile,
  writeRouteTable,
} from '../../src/routing/generate-routes.js'
import {
  compileRouteTable,
  loadRouteTable,
  routeTemplateLabel,
} from '../../src/routing/route-table.js'

const ROUTES_FILE = fileURLToPath(new URL('../../config/immich-routes.json', import.meta.url))
const SPEC_FILE = '/work/shared/immich/immich-openapi-subset.json'
const specPresent = existsSync(SPEC_FILE)

const routes = loadRouteTable(ROUTES_FILE)
const find = (method: string, path: string): RouteInfo | undefined =>
  routes.find((r) => r.method === method && r.path === path)

describe('config/immich-routes.json', () => {
  it.skipIf(!specPresent)('has one route per operation of the spec', () => {
    const spec = JSON.parse(readFileSync(SPEC_FILE, 'utf8')) as {
      paths: Record<string, Record<string, unknown>>
    }
    const methods = new Set(['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'])
    const operations = Object.values(spec.paths).flatMap((item) =>
      Object.keys(item).filter((k) => methods.has(k))
    )
    expect(operations.length).toBeGreaterThan(0)
    expect(routes).toHaveLength(operations.length)
  })

  it.skipIf(!specPresent)(
    'is up to date with the spec (regenerate with src/routing/generate-routes.ts)',
    () => {
      const spec: unknown = JSON.parse(readFileSync(SPEC_FILE, 'utf8'))
      expect(readFileSync(ROUTES_FILE, 'utf8')).toBe(
        serializeRouteTableFile(generateRouteTableFile(spec))
      )
    }
  )

  it('is sorted by path then method, without duplicates', () => {
    const keys = routes.map((r) => `${r.path} ${r.method}`)
    expect(keys).toEqual([...keys].sort())
    expect(new Set(keys).size).toBe(keys.length)
    expect(new Set(routes.map((r) => r.operationId)).size).toBe(routes.length)
  })

  type Row = [method: string, path: string, expected: Partial<RouteInfo>]
  it.each<Row>([
    [
      'GET',
      '/api/assets/{id}/thumbnail',
      { operationId: 'viewAsset', permission: 'asset.view', sharedLink: true, public: false },
    ],
    ['GET', '/api/assets/{id}/original', { permission: 'asset.download', sharedLink: true }],
    [
      'POST',
      '/api/assets',
      { operationId: 'uploadAsset', permission: 'asset.upload', sharedLink: true },
    ],
    ['GET', '/api/people', { permission: 'person.read', adminOnly: false, sharedLink: false }],
    ['GET', '/api/admin/users', { permission: 'adminUser.read', adminOnly: true, public: false }],
    [
      'GET',
      '/api/server/ping',
      { operationId: 'pingServer', public: true, permission: null, adminOnly: false },
    ],
    ['POST', '/api/auth/login', { public: true, permission: null }],
    ['GET', '/api/api-keys/me', { operationId: 'getMyApiKey', permission: null, public: false }],
    ['POST', '/api/auth/validateToken', { permission: null, public: false }],
    ['GET', '/api/workflows/triggers', { permission: null, public: false }],
    ['POST', '/api/auth/logout', { operationId: 'logout', permission: 'all', public: false }],
    ['GET', '/api/shared-links/me', { permission: 'all', sharedLink: true }],
    ['POST', '/api/libraries/{id}/validate', { permission: 'all', adminOnly: true }],
    [
      'POST',
      '/api/search/metadata',
      { operationId: 'searchAssets', permission: 'asset.read', sharedLink: true },
    ],
    ['GET', '/api/timeline/buckets', { sharedLink: true, deprecated: false }],
    ['PUT', '/api/assets/{id}', { deprecated: true }],
  ])('%s %s', (method, path, expected) => {
    const route = find(method, path)
    expect(route).toBeDefined()
    expect(route).toMatchObject(expected)
  })

  it('marks exactly the 18 shared-link routes, and only authenticated operations name a permission', () => {
    expect(routes.filter((r) => r.sharedLink)).toHaveLength(18)
    expect(routes.filter((r) => r.public && r.permission !== null)).toEqual([])
    expect(
      routes
        .filter((r) => !r.public && r.permission === null)
        .map((r) => r.operationId)
        .sort()
    ).toEqual(['getMyApiKey', 'getWorkflowTriggers', 'validateAccessToken'])
    expect(routes.filter((r) => r.permission === 'all')).toHaveLength(12)
  })
})

describe('generateRouteTable', () => {
  const tiny = {
    openapi: '3.0.0',
    info: { title: 'Immich', version: '9.9.9' },
    paths: {
      '/z': {
        get: { operationId: 'last', security: [{ bearer: [] }], 'x-immich-permission': 'z.read' },
      },
      '/ping': { get: { operationId: 'ping' }, post: { operationId: 'pingEmpty', security: [] } },
      '/api-keys/me': { get: { operationId: 'getMyApiKey', security: [{ bearer: [] }] } },
      '/auth/logout': { post: { operationId: 'logout', security: [{ api_key: [] }] } },
      '/things/{id}': {
        parameters: [],
        summary: 'not an operation',
        put: {
          operationId: 'putThing',
          security: [{ bearer: [] }],
          'x-immich-permission': 'thing.update',
          'x-immich-admin-only': true,
          deprecated: true,
          parameters: [{ name: 'key', in: 'header' }],
        },
        get: {
          operationId: 'getThing',
          security: [{ bearer: [] }],
          'x-immich-permission': 'thing.read',
          parameters: [{ name: 'slug', in: 'query' }],
        },
      },
    },
  }

  it('maps each operation and sorts by path then method', () => {
    expect(generateRouteTable(tiny)).toEqual([
      {
        method: 'GET',
        path: '/api/api-keys/me',
        operationId: 'getMyApiKey',
        permission: null,
        adminOnly: false,
        public: false,
        sharedLink: false,
        deprecated: false,
      },
      {
        method: 'POST',
        path: '/api/auth/logout',
        operationId: 'logout',
        permission: 'all',
        adminOnly: false,
        public: false,
        sharedLink: false,
        deprecated: false,
      },
      {
        method: 'GET',
        path: '/api/ping',
        operationId: 'ping',
        permission: null,
        adminOnly: false,
        public: true,
        sharedLink: false,
        deprecated: false,
      },
      {
        method: 'POST',
        path: '/api/ping',
        operationId: 'pingEmpty',
        permission: null,
        adminOnly: false,
        public: true,
        sharedLink: false,
        deprecated: false,
      },
      {
        method: 'GET',
        path: '/api/things/{id}',
        operationId: 'getThing',
        permission: 'thing.read',
        adminOnly: false,
        public: false,
        sharedLink: true,
        deprecated: false,
      },
      {
        method: 'PUT',
        path: '/api/things/{id}',
        operationId: 'putThing',
        permission: 'thing.update',
        adminOnly: true,
        public: false,
        sharedLink: false,
        deprecated: true,
      },
      {
        method: 'GET',
        path: '/api/z',
        operationId: 'last',
        permission: 'z.read',
        adminOnly: false,
        public: false,
        sharedLink: false,
        deprecated: false,
      },
    ])
  })

  it.each<[string, unknown]>([
    ['null', null],
    ['an array', []],
    ['a document without paths', { openapi: '3.0.0', info: { title: 't', version: '1' } }],
    ['a Swagger 2 document', { swagger: '2.0', info: { title: 't', version: '1' }, paths: {} }],
    [
      'a document with an unknown openapi version',
      { openapi: '2.0', info: { title: 't', version: '1' }, paths: {} },
    ],
  ])('rejects %s with a clear error', (_name, spec) => {
    expect(() => generateRouteTable(spec)).toThrow(/Not an OpenAPI 3 document/)
  })

  it('follows OpenAPI: document-level security, anonymous {} requirement, path-level parameters', () => {
    const spec = {
      openapi: '3.1.0',
      info: { title: 't', version: '1' },
      security: [{ api_key: [] }],
      paths: {
        '/inherits': { get: { operationId: 'inherits' } },
        '/optional': { get: { operationId: 'optional', security: [{}, { api_key: [] }] } },
        '/shared/{id}': {
          parameters: [{ name: 'key', in: 'query' }],
          get: { operationId: 'shared', security: [] },
        },
      },
    }
    expect(
      generateRouteTable(spec).map((r) => [r.operationId, r.public, r.permission, r.sharedLink])
    ).toEqual([
      ['inherits', false, 'all', false],
      ['optional', true, null, false],
      ['shared', true, null, true],
    ])
  })

  it('rejects an operation without operationId', () => {
    const spec = {
      openapi: '3.0.0',
      info: { title: 't', version: '1' },
      paths: { '/x': { get: {} } },
    }
    expect(() => generateRouteTable(spec)).toThrow(/GET \/x/)
  })

  describe('writeRouteTable', () => {
    const dir = mkdtempSync(join(tmpdir(), 'routes-'))
    afterAll(() => rmSync(dir, { recursive: true, force: true }))

    it('writes a pretty-printed file that loadRouteTable reads back', () => {
      const specFile = join(dir, 'spec.json')
      const outFile = join(dir, 'routes.json')
      writeFileSync(specFile, JSON.stringify(tiny))
      expect(writeRouteTable(specFile, outFile)).toEqual({ count: 7 })
      const text = readFileSync(outFile, 'utf8')
      expect(text).toMatch(
        /^\{\n {2}"generatedFrom": \{\n {4}"title": "Immich",\n {4}"version": "9\.9\.9"\n {2}\},\n {2}"count": 7,/
      )
      expect(loadRouteTable(outFile)).toEqual(generateRouteTable(tiny))
    })

    it('loadRouteTable rejects a file whose count disagrees with its routes', () => {
      const outFile = join(dir, 'bad.json')
      writeFileSync(
        outFile,
        JSON.stringify({ generatedFrom: { title: 't', version: '1' }, count: 3, routes: [] })
      )
      expect(() => loadRouteTable(outFile)).toThrow(/count does not match/)
    })

    it('loadRouteTable rejects a malformed route', () => {
      const outFile = join(dir, 'bad-route.json')
      const route = {
        method: 'get',
        path: '/api/x',
        operationId: 'x',
        permission: null,
        adminOnly: false,
        public: true,
        sharedLink: false,
        deprecated: false,
      }
      writeFileSync(
        outFile,
        JSON.stringify({ generatedFrom: { title: 't', version: '1' }, count: 1, routes: [route] })
      )
      expect(() => loadRouteTable(outFile)).toThrow(/Invalid route table/)
    })
  })
})

describe('compileRouteTable', () => {
  const matcher = compileRouteTable(routes)

  type MatchRow = [
    method: string,
    path: string,
    operationId: string,
    params: Record<string, string>,
  ]
  it.each<MatchRow>([
    // static beats param, with backtracking between siblings
    ['GET', '/api/assets/statistics', 'getAssetStatistics', {}],
    ['PUT', '/api/assets/copy', 'copyAsset', {}],
    ['PUT', '/api/assets/abc', 'updateAsset', { id: 'abc' }],
    ['PUT', '/api/assets/metadata/edits', 'editAsset', { id: 'metadata' }],
    [
      'GET',
      '/api/assets/8b1d4b1e-0000-4000-8000-000000000001',
      'getAssetInfo',
      { id: '8b1d4b1e-0000-4000-8000-000000000001' },
    ],
    ['GET', '/api/assets/statistics/thumbnail', 'viewAsset', { id: 'statistics' }],
    ['GET', '/api/people/p1/statistics', 'getPersonStatistics', { id: 'p1' }],
    ['POST', '/api/people/merge', 'mergePeople', {}],
    ['POST', '/api/people/p1/merge', 'mergePersonLegacy', { id: 'p1' }],
    // params extracted, raw text kept
    ['GET', '/api/assets/abc/thumbnail', 'viewAsset', { id: 'abc' }],
    ['GET', '/api/assets/a%2Fb/original', 'downloadAsset', { id: 'a%2Fb' }],
    [
      'GET',
      '/api/assets/A1/video/stream/S1/2/seg-3.ts',
      'getSegment',
      { id: 'A1', sessionId: 'S1', variantIndex: '2', filename: 'seg-3.ts' },
    ],
    [
      'GET',
      '/api/assets/A1/video/stream/S1/2/playlist.m3u8',
      'getMediaPlaylist',
      { id: 'A1', sessionId: 'S1', variantIndex: '2' },
    ],
    ['GET', '/api/assets/A1/video/stream/main.m3u8', 'getMainPlaylist', { id: 'A1' }],
    // same trie position, different param names
    ['DELETE', '/api/admin/integrity/report/r1', 'deleteIntegrityReport', { id: 'r1' }],
    ['GET', '/api/admin/integrity/report/r1/file', 'getIntegrityReportFile', { id: 'r1' }],
    [
      'GET',
      '/api/admin/integrity/report/untracked/csv',
      'getIntegrityReportCsv',
      { type: 'untracked' },
    ],
    // case-insensitive static segments; params keep their case
    ['GET', '/API/Assets/X/THUMBNAIL', 'viewAsset', { id: 'X' }],
    ['GET', '/api/SERVER/ping', 'pingServer', {}],
    // one trailing slash tolerated
    ['GET', '/api/server/ping/', 'pingServer', {}],
    ['GET', '/api/assets/abc/thumbnail/', 'viewAsset', { id: 'abc' }],
    // HEAD falls back to GET
    ['HEAD', '/api/assets/abc/thumbnail', 'viewAsset', { id: 'abc' }],
    ['HEAD', '/api/server/ping', 'pingServer', {}],
    // other methods
    ['POST', '/api/assets', 'uploadAsset', {}],
    ['DELETE', '/api/assets', 'deleteAssets', {}],
    ['PATCH', '/api/albums/abc', 'updateAlbumInfo', { id: 'abc' }],
  ])('%s %s → %s', (method, path, operationId, params) => {
    const m = matcher.match(method, path)
    expect(m?.route.operationId).toBe(operationId)
    expect(m?.route.method).toBe(method === 'HEAD' ? 'GET' : method)
    expect(m?.params).toEqual(params)
  })

  it.each<[method: string, path: string]>([
    ['GET', '/api/does-not-exist'],
    ['GET', '/api/asset/upload'],
    ['GET', '/api/assets/a/b/c/d'],
    ['GET', '/api/assets/abc/thumbnail/extra'],
    ['PUT', '/api/server/ping'], // wrong method
    ['POST', '/api/assets/abc/thumbnail'], // wrong method
    ['HEAD', '/api/auth/login'], // POST only: HEAD falls back to GET, not to anything
    ['OPTIONS', '/api/server/ping'],
    ['GET', '/api/server/ping//'], // only one trailing slash
    ['GET', '/api/assets//thumbnail'], // empty param
    ['GET', '/api//server/ping'],
    ['GET', '/api'],
    ['GET', '/api/'],
    ['GET', '/'],
    ['GET', ''],
    ['GET', 'api/server/ping'],
    ['GET', '/server/ping'], // spec path without the /api prefix
  ])('%s %s → no match', (method, path) => {
    expect(matcher.match(method, path)).toBeUndefined()
  })

  it('uses an explicit HEAD operation over the GET one', () => {
    const base = {
      permission: null,
      adminOnly: false,
      public: true,
      sharedLink: false,
      deprecated: false,
    }
    const m = compileRouteTable([
      { ...base, method: 'GET', path: '/api/x/{id}', operationId: 'getX' },
      { ...base, method: 'HEAD', path: '/api/x/{id}', operationId: 'headX' },
      { ...base, method: 'GET', path: '/api/y', operationId: 'getY' },
    ])
    expect(m.match('HEAD', '/api/x/1')?.route.operationId).toBe('headX')
    expect(m.match('HEAD', '/api/y')?.route.operationId).toBe('getY')
    expect(m.match('GET', '/api/x/1')?.route.operationId).toBe('getX')
  })

  it('backtracks from a static branch that dead-ends into the param branch', () => {
    const base = {
      permission: null,
      adminOnly: false,
      public: true,
      sharedLink: false,
      deprecated: false,
    }
    const m = compileRouteTable([
      { ...base, method: 'GET', path: '/api/a/b/c', operationId: 'static' },
      { ...base, method: 'GET', path: '/api/a/{x}/d', operationId: 'param' },
    ])
    expect(m.match('GET', '/api/a/b/c')).toEqual({
      route: expect.objectContaining({ operationId: 'static' }),
      params: {},
    })
    expect(m.match('GET', '/api/a/b/d')).toEqual({
      route: expect.objectContaining({ operationId: 'param' }),
      params: { x: 'b' },
    })
  })

  it('drops params collected on an abandoned branch', () => {
    const base = {
      permission: null,
      adminOnly: false,
      public: true,
      sharedLink: false,
      deprecated: false,
    }
    const m = compileRouteTable([
      { ...base, method: 'GET', path: '/api/s/{p}/q', operationId: 'staticFirst' },
      { ...base, method: 'GET', path: '/api/{x}/{y}/r', operationId: 'paramsOnly' },
    ])
    expect(m.match('GET', '/api/s/1/q')?.params).toEqual({ p: '1' })
    expect(m.match('GET', '/api/s/1/r')).toEqual({
      route: expect.objectContaining({ operationId: 'paramsOnly' }),
      params: { x: 's', y: '1' },
    })
  })

  it('refuses ambiguous routes at compile time', () => {
    const base = {
      permission: null,
      adminOnly: false,
      public: true,
      sharedLink: false,
      deprecated: false,
    }
    expect(() =>
      compileRouteTable([
        { ...base, method: 'GET', path: '/api/x/{id}', operationId: 'a' },
        { ...base, method: 'GET', path: '/api/X/{name}', operationId: 'b' },
      ])
    ).toThrow(/Ambiguous routes/)
  })

  it('matches every route of the table by its own template', () => {
    for (const route of routes) {
      const concrete = route.path.replace(/\{(\w+)\}/g, (_m, name: string) => `v-${name}`)
      const m = matcher.match(route.method, concrete)
      expect(m?.route, `${route.method} ${route.path}`).toBe(route)
    }
  })

  it('labels a route by its template', () => {
    const route = find('GET', '/api/assets/{id}/thumbnail')!
    expect(routeTemplateLabel(route)).toBe('/api/assets/{id}/thumbnail')
  })
})
