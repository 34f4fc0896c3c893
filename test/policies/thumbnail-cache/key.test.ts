import { describe, expect, it } from 'vitest';
import { cacheKey, hashedKey, normalizeQuery, sharedLinkToken } from '../../../src/cache/key.js';

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
    expect(normalizeQuery(query)).toBe(expected);
  });

  it('refuses a parameter given twice (which copy Immich reads is not ours to guess)', () => {
    expect(normalizeQuery('size=preview&size=thumbnail')).toBeUndefined();
    expect(normalizeQuery('size=thumbnail&c=1&size=preview')).toBeUndefined();
  });
});

describe('cacheKey', () => {
  it('differs by identity, id, class and query; ignores id case and parameter order', () => {
    const base = cacheKey('a', 'ABC', 'id-1', 'size=preview&c=x');
    expect(base).toBe(cacheKey('a', 'abc', 'id-1', 'c=x&size=preview'));
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-2', 'c=x&size=preview'));
    expect(base).not.toBe(cacheKey('a', 'abd', 'id-1', 'c=x&size=preview'));
    expect(base).not.toBe(cacheKey('p', 'abc', 'id-1', 'c=x&size=preview'));
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-1', 'c=y&size=preview'));
    expect(base).not.toBe(cacheKey('a', 'abc', 'id-1', 'c=x&size=preview&key=k'));
  });

  it('has no key without an identity or with an ambiguous query', () => {
    expect(cacheKey('a', 'abc', '', 'size=preview')).toBeUndefined();
    expect(cacheKey('a', 'abc', 'id', 'size=a&size=b')).toBeUndefined();
  });

  it("no id or query can make one identity's key equal another's", () => {
    const victim = cacheKey('a', 'x', 'id-1', 'size=a|b')!;
    expect(cacheKey('a', 'x', 'id-1|size=a', 'b')).not.toBe(victim);
    expect(cacheKey('a', 'x', 'id', '1|size=a|b')).not.toBe(victim);
    expect(victim.startsWith('4:id-1|')).toBe(true);
    expect(cacheKey('a', 'x|y', 'id-1', '')).toBeUndefined();
    expect(cacheKey('a', '', 'id-1', '')).toBeUndefined();
  });

  it('hashes keys for Redis (no query credential in a key name)', () => {
    const key = cacheKey('a', 'abc', 'id-1', 'key=secret-share-key')!;
    expect(hashedKey(key)).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hashedKey(key)).not.toContain('secret');
  });
});

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
    expect(sharedLinkToken(cookie)).toBe(expected);
  });
});
