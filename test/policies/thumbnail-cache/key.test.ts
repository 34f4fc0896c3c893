import { describe, expect, it } from 'vitest'
import {
  cacheKey,
  hashedKey,
  normalizeQuery,
  sharedLinkToken,
} from '../../../policies/thumbnail-cache/key.js'

describe('normalizeQuery', () => {
  it.each([
    ['', ''],
    ['size=thumbnail', 'size=thumbnail'],
    ['size=preview&c=abc', 'c=abc&size=preview'],
    ['c=abc&size=preview', 'c=abc&size=preview'],
    ['size=preview&&edited=true&', 'edited=true&size=preview'],
    ['key=K&size=thumbnail&zzz=1', 'key=K&size=thumbnail&zzz=1'],
    ['flag&size=x', 'flag&size=x'],
  ])('%j → %j', (query, expected) => {
    expect(normalizeQuery(query)).toBe(expected)
  })

  it('the two-parameter fast path agrees with the general rule on every shape', () => {
    // The general rule, written plainly: drop empty parts, sort by name, refuse a repeated name.
    const reference = (query: string): string | undefined => {
      const parts = query.split('&').filter((p) => p !== '')
      const name = (p: string) => (p.includes('=') ? p.slice(0, p.indexOf('=')) : p)
      const sorted = [...parts].sort((x, y) => (name(x) < name(y) ? -1 : name(x) > name(y) ? 1 : 0))
      if (sorted.some((p, i) => i > 0 && name(p) === name(sorted[i - 1]!))) return undefined
      return sorted.join('&')
    }
    const pieces = ['', 'a', 'b', 'a=1', 'a=2', 'b=1', 'b=', '=x', 'size=preview', 'c=1=2', 'A=1']
    for (const x of pieces)
      for (const y of pieces)
        for (const sep of ['&', '&&']) {
          const query = `${x}${sep}${y}`
          if (query === '') continue
          expect(normalizeQuery(query), query).toBe(reference(query))
        }
  })

  it('refuses a parameter given twice (which copy Immich reads is not ours to guess)', () => {
    expect(normalizeQuery('size=preview&size=thumbnail')).toBeUndefined()
    expect(normalizeQuery('size=thumbnail&c=1&size=preview')).toBeUndefined()
  })
})

describe('cacheKey', () => {
  it('differs by identity, id, class and query; ignores id case and parameter order', () => {
    const base = cacheKey('a', 'ABC', 'id-1', 'size=preview&c=x')
    expect(base).toBe(cacheKey('a', 'abc', 'id-1', 'c=x&size=preview'))
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-2', 'c=x&size=preview'))
    expect(base).not.toBe(cacheKey('a', 'abd', 'id-1', 'c=x&size=preview'))
    expect(base).not.toBe(cacheKey('p', 'abc', 'id-1', 'c=x&size=preview'))
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-1', 'c=y&size=preview'))
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-1', 'c=x&size=preview&key=k'))
  })

  it('has no key without an identity or with an ambiguous query', () => {
    expect(cacheKey('a', 'abc', '', 'size=preview')).toBeUndefined()
    expect(cacheKey('a', 'abc', 'id', 'size=a&size=b')).toBeUndefined()
  })

  it("no id or query can make one identity's key equal another's", () => {
    const victim = cacheKey('a', 'x', 'id-1', 'size=a|b')!
    expect(cacheKey('a', 'x', 'id-1|size=a', 'b')).not.toBe(victim)
    expect(cacheKey('a', 'x', 'id', '1|size=a|b')).not.toBe(victim)
    expect(victim.startsWith('4:id-1|')).toBe(true)
    expect(cacheKey('a', 'x|y', 'id-1', '')).toBeUndefined()
    expect(cacheKey('a', '', 'id-1', '')).toBeUndefined()
  })

  it('hashes keys for Redis (no query credential in a key name)', () => {
    const key = cacheKey('a', 'abc', 'id-1', 'key=secret-share-key')!
    expect(hashedKey(key)).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(hashedKey(key)).not.toContain('secret')
  })
})

describe('sharedLinkToken', () => {
  it.each<[string | undefined, string]>([
    [undefined, ''],
    ['', ''],
    ['immich_shared_link_token=abc', 'abc'],
    ['a=1; immich_shared_link_token=abc; b=2', 'abc'],
    ['a=1;immich_shared_link_token=abc', 'abc'],
    ['ximmich_shared_link_token=evil; immich_shared_link_token=real', 'real'],
    ['ximmich_shared_link_token=evil', ''],
    ['immich_access_token=t', ''],
  ])('%j → %j', (cookie, expected) => {
    expect(sharedLinkToken(cookie)).toBe(expected)
  })
})
