import { describe, expect, it } from 'vitest'
import {
  cookieValue,
  findNativeCredential,
  isCleanToken,
  queryParams,
  stripCredentialQuery,
  withoutSessionCookie,
} from '../../../src/auth/credentials.js'
import { credentialIdentity, keyHash, sha256Hex } from '../../../src/auth/hash.js'
import { GATEWAY_KEY_PATTERN, generateKey } from '../../../src/auth/keygen.js'
import { parseDuration } from '../../../src/auth/duration.js'

describe('stripCredentialQuery', () => {
  it.each([
    ['/a', '/a'],
    ['/a?', '/a?'],
    ['/a?size=preview', '/a?size=preview'],
    ['/a?apiKey=igw_x', '/a'],
    ['/a?apiKey=igw_x&size=preview', '/a?size=preview'],
    ['/a?size=preview&apiKey=igw_x', '/a?size=preview'],
    ['/a?z=1&x-api-key=k&b=%20x&key=s&slug=t&sessionKey=u&c', '/a?z=1&b=%20x&c'],
    ['/a?APIKEY=1&ApiKey=2&keep=3', '/a?keep=3'],
    ['/a?api%4Bey=1&keep=1', '/a?keep=1'],
    ['/a?apiKey[]=1&apiKey[x]=2&keep=1', '/a?keep=1'],
    ['/a?keyword=x&monkey=y&keys=z', '/a?keyword=x&monkey=y&keys=z'],
    ['/a?a=1&&b=2', '/a?a=1&&b=2'],
    ['/a?key', '/a'],
    ['/a?size=thumbnail&c=Zm9v', '/a?size=thumbnail&c=Zm9v'],
    ['/a?SLUG=x&size=preview', '/a?size=preview'],
    ['/a?ke%79=1&size=preview', '/a?size=preview'],
    ['/a?size=preview&sessionKey=a+b', '/a?size=preview'],
  ])('%s → %s', (input, expected) => {
    expect(stripCredentialQuery(input)).toBe(expected)
  })
})

describe('cookies', () => {
  it('removes only the session cookie', () => {
    expect(withoutSessionCookie('a=1; immich_access_token=t; immich_auth_type=password')).toBe(
      'a=1; immich_auth_type=password'
    )
    expect(withoutSessionCookie('immich_access_token=t')).toBeNull()
    expect(withoutSessionCookie('immich_access_token_x=1;immich_access_token=t')).toBe(
      'immich_access_token_x=1'
    )
  })

  it('reads the first value, quoted or encoded', () => {
    expect(
      cookieValue('a=1; immich_access_token="t%20x"; immich_access_token=2', 'immich_access_token')
    ).toBe('t x')
    expect(cookieValue('a=1', 'immich_access_token')).toBeUndefined()
    expect(cookieValue(undefined, 'a')).toBeUndefined()
  })
})

describe("findNativeCredential follows Immich's precedence", () => {
  const all = {
    'x-immich-share-key': 'sk',
    'x-immich-share-slug': 'ss',
    'x-immich-user-token': 'ut',
    'x-immich-session-token': 'st',
    authorization: 'Bearer bt',
    cookie: 'immich_access_token=ct',
    'x-api-key': 'ak',
  }
  const query = '?key=qk&slug=qs&sessionKey=qt&apiKey=qa'
  const order = ['sk', 'qk', 'ss', 'qs', 'ut', 'st', 'qt', 'bt', 'ct', 'ak', 'qa']

  it('each credential is found only when everything before it is absent', () => {
    const headers: Record<string, string> = { ...all }
    let q = query
    const seen: string[] = []
    for (;;) {
      const found = findNativeCredential(headers, q)
      if (!found) break
      seen.push(found.value)
      // Remove the one found and look again.
      for (const [name, value] of Object.entries(headers))
        if (value.endsWith(found.value)) delete headers[name]
      q = q.replace(new RegExp(`[a-zA-Z]+=${found.value}`), 'x=1')
    }
    expect(seen).toEqual(order)
  })

  it('classifies kinds and ignores empty values and a non-bearer authorization', () => {
    expect(findNativeCredential({ 'x-immich-share-key': '' }, '')).toBeUndefined()
    expect(findNativeCredential({ authorization: 'Basic abc' }, '')).toBeUndefined()
    expect(findNativeCredential({ authorization: 'bearer abc' }, '')).toMatchObject({
      kind: 'session',
      value: 'abc',
      source: 'bearer',
    })
    expect(findNativeCredential({}, '?slug=s')).toMatchObject({
      kind: 'sharedLink',
      source: 'query:slug',
    })
    expect(findNativeCredential({}, '?apiKey=a')).toMatchObject({
      kind: 'apiKey',
      source: 'query:apiKey',
    })
    expect(findNativeCredential({}, '?apikey=a')).toBeUndefined()
  })
})

describe('helpers', () => {
  it('queryParams decodes names and values', () => {
    expect(queryParams('?a=1&b%20c=d+e&f')).toEqual([
      { name: 'a', value: '1' },
      { name: 'b c', value: 'd e' },
      { name: 'f', value: '' },
    ])
  })

  it('isCleanToken refuses control bytes, spaces, non-ASCII and oversize', () => {
    expect(isCleanToken('abc-_.~+/=')).toBe(true)
    for (const bad of ['', 'a b', 'a\tb', 'caf\u00e9', 'a\u0001', 'x'.repeat(8193)])
      expect(isCleanToken(bad)).toBe(false)
  })

  it('keys: igw_ + 43 base64url chars (256 bits), all different', () => {
    const keys = new Set(Array.from({ length: 200 }, generateKey))
    expect(keys.size).toBe(200)
    for (const k of keys) expect(k).toMatch(GATEWAY_KEY_PATTERN)
    expect(Buffer.from(generateKey().slice(4), 'base64url')).toHaveLength(32)
  })

  it('hashes and identities', () => {
    expect(sha256Hex('abc')).toBe(
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    )
    expect(keyHash('abc')).toBe(
      'sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'
    )
    expect(credentialIdentity('u:', 'abc')).toBe('u:ba7816bf8f01cfea414140de5dae2223')
    expect(credentialIdentity('n:', 'abc')).not.toBe(credentialIdentity('u:', 'abc'))
  })

  it('durations', () => {
    expect(parseDuration('90d')).toBe(90 * 86_400_000)
    expect(parseDuration('12h')).toBe(12 * 3_600_000)
    expect(parseDuration('2w')).toBe(14 * 86_400_000)
    expect(() => parseDuration('1y')).toThrow(/not a duration/)
    expect(() => parseDuration('-1d')).toThrow(/not a duration/)
  })
})
