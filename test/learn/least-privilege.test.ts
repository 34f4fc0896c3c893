import { describe, expect, it } from 'vitest'
import {
  immichPermissions,
  nonAdminPermissions,
  tightenPlan,
  usageReport,
} from '../../src/auth/least-privilege.js'
import { loadScopeResolver } from '../../src/auth/scopes.js'
import { usageField, type ClientUsage } from '../../src/auth/usage.js'

const resolver = loadScopeResolver()

function usage(
  cells: [permission: string, route: string, granted: number, refused?: number][]
): ClientUsage {
  return new Map(
    cells.map(([permission, route, granted, refused = 0]) => {
      const [method, path] = route.split(' ')
      return [usageField(permission, method!, path!), { granted, refused, first: 1, last: 2 }]
    })
  )
}

describe('least privilege', () => {
  it('expands scopes to concrete Immich permissions: wildcards stop at admin-only ones, all stays all', () => {
    expect(immichPermissions(new Set(['all', 'asset.view']))).toEqual(['all'])
    const server = immichPermissions(new Set(['server.*']))
    expect(server).toContain('server.about')
    expect(server).not.toContain('server.statistics')
    expect(immichPermissions(resolver.expandPreset('uploader'))).toEqual([
      'album.create',
      'album.read',
      'albumAsset.create',
      'asset.upload',
      'user.read',
    ])
    const base = nonAdminPermissions()
    expect(base.has('asset.view')).toBe(true)
    expect(base.has('adminUser.read')).toBe(false)
    expect(base.has('all')).toBe(false)
  })

  it('tightens to a preset only when it matches exactly, and diffs against what the key holds', () => {
    const exact = usageReport(
      'c',
      usage([
        ['asset.upload', 'POST /api/assets', 3],
        ['asset.upload', 'POST /api/assets/bulk-upload-check', 1],
        ['album.read', 'GET /api/albums', 1],
        ['album.create', 'POST /api/albums', 1],
        ['albumAsset.create', 'PUT /api/albums/{id}/assets', 1],
        ['user.read', 'GET /api/users/me', 2],
        ['all', 'GET /api/socket.io', 0, 4],
      ]),
      ['album.read', 'asset.upload', 'asset.view']
    )
    expect(exact.used[0]).toMatchObject({
      permission: 'asset.upload',
      granted: 4,
      routes: ['POST /api/assets', 'POST /api/assets/bulk-upload-check'],
    })
    expect(exact.refused).toEqual([expect.objectContaining({ permission: 'all', refused: 4 })])
    expect(exact.unused).toEqual(['asset.view'])
    const plan = tightenPlan(exact, new Set(['asset.*', 'album.read']), resolver)
    expect(plan.scopes).toEqual(['uploader'])
    expect(plan.removed).toContain('asset.delete')
    expect(plan.removed).not.toContain('asset.upload')
    expect(plan.added).toEqual(['album.create', 'albumAsset.create', 'user.read'])

    const partial = usageReport('c', usage([['asset.upload', 'POST /api/assets', 1]]), [])
    expect(tightenPlan(partial, new Set(['all']), resolver)).toMatchObject({
      scopes: ['asset.upload'],
      removed: ['all'],
      added: [],
    })
  })
})
