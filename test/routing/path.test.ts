import { describe, expect, it } from 'vitest'
import { GatewayError } from '../../src/errors.js'
import { canonicalPath, isApiPath } from '../../src/routing/path.js'

describe('canonicalPath', () => {
  it.each([
    ['/api/assets/abc/thumbnail', '/api/assets/abc/thumbnail'],
    ['/', '/'],
    ['/api/%61ssets/x', '/api/assets/x'],
    ['/api/assets/a%7Eb', '/api/assets/a~b'],
    ['/api/search/a%20b', '/api/search/a%20b'],
    ['/api/x%3ay', '/api/x%3Ay'],
  ])('%s → %s', (raw, canonical) => {
    expect(canonicalPath(raw)).toBe(canonical)
  })

  it.each([
    '/api/../admin/users',
    '/api/assets/..',
    '/api/./assets',
    '/api/%2e%2e/admin/users',
    '/api/%2E./admin',
    '/api//admin/users',
    '/api/assets%2fx',
    '/api/assets%5Cx',
    '/api\\admin',
    '/api/assets/%00',
    '/api/assets/%zz',
    '/api/assets/\u00e9',
    'api/assets',
    '*',
  ])('refuses %s with 400', (raw) => {
    try {
      canonicalPath(raw)
      expect.unreachable(`${raw} was accepted`)
    } catch (err) {
      expect(err).toBeInstanceOf(GatewayError)
      expect((err as GatewayError).status).toBe(400)
    }
  })
})

describe('isApiPath', () => {
  it.each([
    ['/api', true],
    ['/api/assets', true],
    ['/API/assets', true],
    ['/Api', true],
    ['/apix', false],
    ['/photos', false],
    ['/', false],
  ])('%s → %s', (path, api) => expect(isApiPath(path)).toBe(api))
})
