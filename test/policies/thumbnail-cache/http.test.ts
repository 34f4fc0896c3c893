import { describe, expect, it } from 'vitest'
import {
  clientHasCurrent,
  parseCacheControl,
  storagePlan,
  storedHeaders,
  type StorageLimits,
} from '../../../policies/thumbnail-cache/http.js'

const limits: StorageLimits = {
  ttlSeconds: 3600,
  heuristicTtlSeconds: 300,
  revalidateNoCache: true,
  staleIfErrorSeconds: 2_592_000,
}
const MONTH_MS = 2_592_000_000
const IMMICH =
  'private, max-age=86400, no-transform, stale-while-revalidate=2592000, stale-if-error=2592000'
const webp = (extra: Record<string, string | string[]> = {}) => ({
  'content-type': 'image/webp',
  'cache-control': IMMICH,
  etag: 'W/"1-a"',
  ...extra,
})

describe('storagePlan', () => {
  it.each<
    [
      string,
      number,
      Record<string, string | string[]>,
      { ttlMs: number; revalidate: boolean; staleMs: number } | undefined,
    ]
  >([
    [
      "Immich's thumbnail: kept for the configured TTL (below max-age)",
      200,
      webp(),
      { ttlMs: 3_600_000, revalidate: false, staleMs: MONTH_MS },
    ],
    [
      'max-age below the limit wins',
      200,
      webp({ 'cache-control': 'private, max-age=60' }),
      { ttlMs: 60_000, revalidate: false, staleMs: 0 },
    ],
    [
      'Age is deducted',
      200,
      webp({ 'cache-control': 'max-age=60', age: '50' }),
      { ttlMs: 10_000, revalidate: false, staleMs: 0 },
    ],
    ['max-age=0', 200, webp({ 'cache-control': 'max-age=0' }), undefined],
    ['no-store', 200, webp({ 'cache-control': 'private, no-store' }), undefined],
    [
      'person thumbnail (no-cache): stored to be revalidated',
      200,
      webp({ 'cache-control': 'private, no-cache, no-transform' }),
      { ttlMs: 3_600_000, revalidate: true, staleMs: 0 },
    ],
    [
      'no-cache without a validator',
      200,
      { 'content-type': 'image/jpeg', 'cache-control': 'no-cache' },
      undefined,
    ],
    [
      'profile image (no Cache-Control): heuristic TTL',
      200,
      { 'content-type': 'image/jpeg' },
      { ttlMs: 300_000, revalidate: false, staleMs: 0 },
    ],
    ['not a 200', 206, webp(), undefined],
    ['a 304', 304, webp(), undefined],
    ['not an image', 200, webp({ 'content-type': 'application/json' }), undefined],
    ['a cookie', 200, webp({ 'set-cookie': ['a=b'] }), undefined],
    ['a content coding', 200, webp({ 'content-encoding': 'gzip' }), undefined],
    ['Vary: *', 200, webp({ vary: '*' }), undefined],
    [
      'Vary: Accept-Encoding is fine',
      200,
      webp({ vary: 'Accept-Encoding' }),
      { ttlMs: 3_600_000, revalidate: false, staleMs: MONTH_MS },
    ],
    [
      'upper-case content type',
      200,
      webp({ 'content-type': 'IMAGE/WEBP' }),
      { ttlMs: 3_600_000, revalidate: false, staleMs: MONTH_MS },
    ],
  ])('%s', (_name, status, headers, expected) => {
    expect(storagePlan(status, headers, limits)).toEqual(expected)
  })

  it('stale-if-error: capped by the option, 0 switches it off, nonsense ignored', () => {
    const cc = (v: string) => webp({ 'cache-control': `max-age=60, ${v}` })
    expect(storagePlan(200, cc('stale-if-error=120'), limits)?.staleMs).toBe(120_000)
    expect(storagePlan(200, webp(), { ...limits, staleIfErrorSeconds: 600 })?.staleMs).toBe(600_000)
    expect(storagePlan(200, webp(), { ...limits, staleIfErrorSeconds: 0 })?.staleMs).toBe(0)
    expect(storagePlan(200, cc('stale-if-error=abc'), limits)?.staleMs).toBe(0)
    expect(storagePlan(200, cc('stale-if-error=-5'), limits)?.staleMs).toBe(0)
  })

  it('no-cache and heuristic storage can be switched off', () => {
    const off = { ...limits, heuristicTtlSeconds: 0, revalidateNoCache: false }
    expect(storagePlan(200, webp({ 'cache-control': 'no-cache' }), off)).toBeUndefined()
    expect(storagePlan(200, { 'content-type': 'image/jpeg' }, off)).toBeUndefined()
  })
})

describe('parseCacheControl', () => {
  it('reads directives case-insensitively, with quoted values', () => {
    const d = parseCacheControl('Private, MAX-AGE="86400", no-transform')
    expect(d.get('private')).toBe('')
    expect(d.get('max-age')).toBe('86400')
    expect(d.has('no-transform')).toBe(true)
  })
})

describe('storedHeaders', () => {
  it('keeps the replayed headers only, with the stored length', () => {
    const stored = storedHeaders(
      {
        ...webp(),
        'x-powered-by': 'Express',
        'x-correlation-id': 'abc',
        'set-cookie': ['x=y'],
        ratelimit: 'r',
        'content-length': '99',
        'last-modified': 'Sun, 22 Nov 2026 11:13:04 GMT',
      },
      4404
    )
    expect(stored).toEqual({
      'content-type': 'image/webp',
      'cache-control': IMMICH,
      etag: 'W/"1-a"',
      'last-modified': 'Sun, 22 Nov 2026 11:13:04 GMT',
      'content-length': '4404',
    })
  })
})

describe('clientHasCurrent (RFC 9110 §13.1)', () => {
  const etag = 'W/"1134-1a202f5ad71"'
  const lastModified = 'Sun, 22 Nov 2026 11:13:04 GMT'
  it.each<[string, Record<string, string>, boolean]>([
    ['same weak tag', { 'if-none-match': etag }, true],
    ['weak comparison: strong form of the tag', { 'if-none-match': '"1134-1a202f5ad71"' }, true],
    ['one of a list', { 'if-none-match': '"x", W/"1134-1a202f5ad71"' }, true],
    ['*', { 'if-none-match': '*' }, true],
    ['another tag', { 'if-none-match': 'W/"other"' }, false],
    ['If-Modified-Since equal', { 'if-modified-since': lastModified }, true],
    ['If-Modified-Since later', { 'if-modified-since': 'Mon, 23 Nov 2026 00:00:00 GMT' }, true],
    ['If-Modified-Since earlier', { 'if-modified-since': 'Sat, 21 Nov 2026 00:00:00 GMT' }, false],
    [
      'If-None-Match wins over If-Modified-Since',
      { 'if-none-match': 'W/"other"', 'if-modified-since': lastModified },
      false,
    ],
    ['garbage date', { 'if-modified-since': 'yesterday' }, false],
    ['no conditional', {}, false],
  ])('%s', (_name, headers, expected) => {
    expect(clientHasCurrent(headers, etag, lastModified)).toBe(expected)
  })

  it('never matches an entry without validators', () => {
    expect(clientHasCurrent({ 'if-none-match': '*' }, undefined, undefined)).toBe(false)
    expect(
      clientHasCurrent(
        { 'if-modified-since': 'Mon, 23 Nov 2026 00:00:00 GMT' },
        undefined,
        undefined
      )
    ).toBe(false)
  })
})
