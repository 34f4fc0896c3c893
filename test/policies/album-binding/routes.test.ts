import { describe, expect, it } from 'vitest'
import { packageFile } from '../../../src/paths.js'
import { loadRouteTable } from '../../../src/routing/route-table.js'
import { BOUND_KEY_ROUTES } from '../../../policies/album-binding/routes.js'
import { treatmentOf } from '../../../policies/album-binding/index.js'

const routes = loadRouteTable(packageFile('config/immich-routes.json'))
const key = (r: { method: string; path: string }) => `${r.method} ${r.path}`

describe('the bound-key route table (policies/album-binding/routes.ts)', () => {
  it('classifies every operation of config/immich-routes.json', () => {
    const missing = routes.filter((r) => !(key(r) in BOUND_KEY_ROUTES)).map(key)
    expect(missing, 'classify these in policies/album-binding/routes.ts').toEqual([])
  })

  it('names no operation the route table does not have', () => {
    const known = new Set(routes.map(key))
    expect(Object.keys(BOUND_KEY_ROUTES).filter((k) => !known.has(k))).toEqual([])
  })

  it('refuses what it does not know, and judges HEAD as GET', () => {
    expect(treatmentOf('GET', '/api/some/new/route')).toBe('refuse')
    expect(treatmentOf('HEAD', '/api/assets/{id}/thumbnail')).toBe('asset')
  })

  it('lets through only routes whose answers hold no asset data, or that it narrows or checks', () => {
    const passing = routes.filter((r) => treatmentOf(r.method, r.path) === 'pass')
    for (const r of passing) {
      // Nothing that lists, searches, or serves assets, albums, people, places or memories.
      expect(key(r)).not.toMatch(
        /assets|albums|people|person|faces|search|timeline|memories|map|duplicates|stacks|tags|shared-links|download|trash|sync|view|libraries|activities|partners/
      )
      expect(r.adminOnly, key(r)).toBe(false)
    }
    // Every admin operation is refused: a bound key is a narrow key.
    for (const r of routes.filter((x) => x.adminOnly))
      expect(treatmentOf(r.method, r.path), key(r)).toBe('refuse')
    // Writes are refused except changes to a bound album's own contents or settings.
    for (const r of routes.filter((x) => x.method !== 'GET' && !x.path.startsWith('/api/search'))) {
      const t = treatmentOf(r.method, r.path)
      if (t !== 'refuse' && t !== 'pass')
        expect(['album', 'album-assets', 'asset'], key(r)).toContain(t)
    }
  })
})
