import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { RouteInfo } from '../../../src/env.js'
import { packageFile } from '../../../src/paths.js'
import { compileRouteTable, loadRouteTable } from '../../../src/routing/route-table.js'
import {
  catalogueFromRoutes,
  decideAccess,
  defaultCatalogue,
  DEFAULT_PRESETS_FILE,
  grantingScope,
  loadPresets,
  loadScopeResolver,
  ScopeResolver,
} from '../../../src/auth/scopes.js'
import { startStack } from '../../support/stack.js'
import { tempDir } from '../api-key-auth/support.js'

const routes = loadRouteTable(packageFile('config/immich-routes.json'))
const matcher = compileRouteTable(routes)
const catalogue = defaultCatalogue()
const resolver = loadScopeResolver()
const dir = tempDir('igw-scopes-')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function route(method: string, path: string): RouteInfo {
  const found = matcher.match(method, path)
  if (!found) throw new Error(`no route ${method} ${path}`)
  return found.route
}

describe('permission catalogue', () => {
  it('holds every permission of the route table, all, and every dotted prefix', () => {
    expect(catalogue.permissions.size).toBe(
      new Set(routes.map((r) => r.permission).filter(Boolean)).size +
        (routes.some((r) => r.permission === 'all') ? 0 : 1)
    )
    for (const p of [
      'asset.view',
      'album.read',
      'adminUser.read',
      'asset.edit.create',
      'maintenance',
      'all',
    ])
      expect(catalogue.permissions.has(p)).toBe(true)
    for (const p of ['asset', 'asset.edit', 'adminUser', 'album'])
      expect(catalogue.prefixes.has(p)).toBe(true)
    expect(catalogue.prefixes.has('maintenance')).toBe(false)
  })
})

describe('presets (config/scopes.yaml)', () => {
  it('the shipped presets load and name only real permissions', () => {
    const presets = loadPresets(DEFAULT_PRESETS_FILE, catalogue)
    expect([...presets.keys()]).toEqual(
      expect.arrayContaining(['photo-frame', 'read-only', 'uploader', 'backup', 'album-viewer'])
    )
    for (const [, preset] of presets)
      for (const s of resolver.expand(preset.scopes)) expect(resolver.kind(s)).not.toBeUndefined()
  })

  it('read-only grants no write and no admin route', () => {
    const scopes = resolver.expand(['read-only'])
    for (const r of routes) {
      const d = decideAccess(scopes, { path: r.path.replace(/\{[^}]+\}/g, 'x'), route: r }, 'all')
      if (d.allowed && r.permission !== null) {
        expect(r.adminOnly, `${r.method} ${r.path}`).toBe(false)
        expect(
          ['GET', 'HEAD', 'POST'].includes(r.method) || r.path.includes('/video/stream/'),
          `${r.method} ${r.path}`
        ).toBe(true)
        if (r.method === 'POST') expect(r.permission).toMatch(/\.(read|download|statistics)$/)
      }
    }
  })

  const bad: [string, string, RegExp][] = [
    [
      'unknown permission',
      'presets:\n  p:\n    scopes: [asset.veiw]\n',
      /presets\.p\.scopes: unknown scope "asset\.veiw"/,
    ],
    ['cycle', 'presets:\n  a:\n    scopes: [b]\n  b:\n    scopes: [a]\n', /preset cycle a → b → a/],
    [
      'name of a permission',
      'presets:\n  maintenance:\n    scopes: [all]\n',
      /presets\.maintenance: a preset cannot have the name of a permission/,
    ],
    ['bad name', 'presets:\n  Photo_Frame:\n    scopes: [all]\n', /kebab-case/],
    ['unknown field', 'presets:\n  p:\n    scope: [all]\n', /Unrecognized key: "scope"/],
  ]
  it.each(bad)('a bad presets file is refused: %s', (_label, yaml, message) => {
    const file = join(dir, 'bad.yaml')
    writeFileSync(file, yaml)
    expect(() => loadPresets(file, catalogue)).toThrow(message)
  })

  it('presets may include presets', () => {
    const file = join(dir, 'nested.yaml')
    writeFileSync(
      file,
      'presets:\n  viewer:\n    scopes: [asset.view]\n  more:\n    scopes: [viewer, album.read]\n'
    )
    const r = new ScopeResolver(catalogue, loadPresets(file, catalogue))
    expect([...r.expand(['more'])].sort()).toEqual(['album.read', 'asset.view'])
  })
})

describe('expansion', () => {
  it('strict expansion names the bad entry', () => {
    expect(() => resolver.expand(['asset.view', 'nope'])).toThrow(/\[1\]: unknown scope "nope"/)
    expect(() => resolver.expand(['asset.*.*'])).toThrow(/unknown scope/)
    expect(() => resolver.expand(['*'])).toThrow(/unknown scope/)
  })

  it('lenient expansion (token claims) ignores openid, email...', () => {
    expect([...resolver.expandKnown(['openid', 'email', 'asset.view', 'backup'])]).toEqual(
      expect.arrayContaining(['asset.view', 'asset.download'])
    )
    expect(resolver.expandKnown(['openid']).size).toBe(0)
  })
})

describe('grantingScope', () => {
  const s = (...scopes: string[]) => new Set(scopes)
  it.each<[string[], string, boolean, string | undefined]>([
    [['asset.view'], 'asset.view', false, 'asset.view'],
    [['asset.view'], 'asset.download', false, undefined],
    [['asset.*'], 'asset.download', false, 'asset.*'],
    [['asset.*'], 'asset.edit.create', false, 'asset.*'],
    [['asset.edit.*'], 'asset.edit.create', false, 'asset.edit.*'],
    [['asset.edit.*'], 'asset.view', false, undefined],
    [['asset.*'], 'assetFile.read', false, undefined],
    [['album.*'], 'albumAsset.create', false, undefined],
    [['all'], 'adminUser.read', true, 'all'],
    [['adminUser.read'], 'adminUser.read', true, 'adminUser.read'],
    [['adminUser.*'], 'adminUser.read', true, undefined],
    [['server.*'], 'server.statistics', true, undefined],
    [['server.*'], 'server.about', false, 'server.*'],
    [['asset.*'], 'all', false, undefined],
    [['all'], 'all', false, 'all'],
  ])('%j grants %s (admin-only %s) → %s', (scopes, permission, adminOnly, expected) => {
    expect(grantingScope(s(...scopes), permission, adminOnly)).toBe(expected)
  })
})

describe('decideAccess', () => {
  const view = new Set(['asset.view', 'album.read'])
  it.each<[string, string, boolean, string?]>([
    ['GET', '/api/assets/x/thumbnail', true],
    ['GET', '/api/albums', true],
    ['POST', '/api/assets', false, 'Missing required permission: asset.upload'],
    ['DELETE', '/api/assets', false, 'Missing required permission: asset.delete'],
    ['GET', '/api/people', false, 'Missing required permission: person.read'],
    ['GET', '/api/admin/users', false, 'Missing required permission: adminUser.read'],
    ['POST', '/api/auth/logout', false, 'Missing required permission: all'],
    ['GET', '/api/server/ping', true],
    ['GET', '/api/api-keys/me', true],
    ['POST', '/api/auth/validateToken', true],
  ])('%s %s → %s', (method, path, allowed, message) => {
    const d = decideAccess(view, { path, route: route(method, path) }, 'all')
    expect(d.allowed).toBe(allowed)
    if (!d.allowed) {
      expect(d.message).toBe(message)
      expect(d.reason).toBe('missing_permission')
    }
  })

  it('unknown /api route → 403 unknown_route; web UI → allowed; websocket → websocketPermission', () => {
    expect(decideAccess(new Set(['all']), { path: '/api/nope' }, 'all')).toMatchObject({
      allowed: false,
      reason: 'unknown_route',
      message: 'Route not allowed for this key',
    })
    expect(decideAccess(new Set(), { path: '/photos/x' }, 'all').allowed).toBe(true)
    expect(decideAccess(view, { path: '/api/socket.io/' }, 'all')).toMatchObject({
      allowed: false,
      message: 'Missing required permission: all',
    })
    expect(decideAccess(view, { path: '/api/socket.io/' }, 'asset.view').allowed).toBe(true)
    expect(decideAccess(new Set(['all']), { path: '/API/Socket.IO' }, 'all').allowed).toBe(true)
  })
})

describe('the scopes policy at boot', () => {
  it('websocketPermission must be a real permission', async () => {
    await expect(
      startStack({ policies: { scopes: { websocketPermission: 'socket.open' } } })
    ).rejects.toThrow(
      /policies\.scopes\.websocketPermission: "socket\.open" is not an Immich permission/
    )
  })

  it('gateway keys and tokens cannot run without it', async () => {
    await expect(startStack({ policies: { scopes: false } })).rejects.toThrow(
      /policies\.api-key-auth: needs the scopes policy/
    )
  })

  it('a catalogue from any route list', () => {
    const c = catalogueFromRoutes([
      {
        method: 'GET',
        path: '/api/x',
        operationId: 'x',
        permission: 'a.b.c',
        adminOnly: false,
        public: false,
        sharedLink: false,
        deprecated: false,
      },
    ])
    expect([...c.permissions].sort()).toEqual(['a.b.c', 'all'])
    expect([...c.prefixes].sort()).toEqual(['a', 'a.b'])
  })
})
