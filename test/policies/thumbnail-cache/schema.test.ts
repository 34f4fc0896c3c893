import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { validatePolicyOptions } from '../../../policies/index.js'
import { thumbnailCacheOptions } from '../../../policies/thumbnail-cache/schema.js'
import { ConfigError } from '../../../src/config/load.js'
import { configSchema } from '../../../src/config/schema.js'
import { INVALIDATION_RULES, idsFromJson } from '../../../policies/thumbnail-cache/invalidation.js'
import { CACHEABLE_ROUTES } from '../../../policies/thumbnail-cache/key.js'

const routes = (
  JSON.parse(
    readFileSync(
      fileURLToPath(new URL('../../../config/immich-routes.json', import.meta.url)),
      'utf8'
    )
  ) as {
    routes: { method: string; path: string; sharedLink: boolean }[]
  }
).routes
const known = new Set(routes.map((r) => `${r.method} ${r.path}`))

describe('thumbnail-cache options', () => {
  it('has defaults for everything', () => {
    expect(thumbnailCacheOptions.parse({})).toEqual({
      ttlSeconds: 3600,
      nativeTtlSeconds: 300,
      heuristicTtlSeconds: 300,
      revalidateNoCache: true,
      minUses: 2,
      maxEntryBytes: 2 * 1024 * 1024,
      invalidationHoldSeconds: 30,
      staleIfErrorSeconds: 2_592_000,
      memory: { maxBytes: 256 * 1024 * 1024 },
      redis: { enabled: true, keyPrefix: 'immich-gateway:cache:', timeoutMs: 100 },
      disk: { maxBytes: 1024 * 1024 * 1024 },
    })
  })

  it.each<[unknown, string]>([
    [{ ttlSeconds: 0 }, 'policies.thumbnail-cache.ttlSeconds'],
    [{ memory: { maxBytes: 10 } }, 'policies.thumbnail-cache.memory.maxBytes'],
    [{ memory: { maxbytes: 1 } }, 'policies.thumbnail-cache.memory'],
    [{ staleIfErrorSeconds: -1 }, 'policies.thumbnail-cache.staleIfErrorSeconds'],
    [{ disk: { dir: '' } }, 'policies.thumbnail-cache.disk.dir'],
    [{ disk: { dir: '/tmp/x', maxBytes: 10 } }, 'policies.thumbnail-cache.disk.maxBytes'],
    [
      { maxEntryBytes: 64 * 1024 * 1024, memory: { maxBytes: 8 * 1024 * 1024 } },
      'policies.thumbnail-cache.maxEntryBytes',
    ],
    [{ ttl: 5 }, 'policies.thumbnail-cache'],
    [{ minUses: 3 }, 'policies.thumbnail-cache.minUses'],
    [{ redis: { keyPrefix: '' } }, 'policies.thumbnail-cache.redis.keyPrefix'],
  ])('a bad option stops the boot naming the field: %j', (options, field) => {
    const config = configSchema.parse({ policies: { 'thumbnail-cache': options } })
    expect(() => validatePolicyOptions(config)).toThrow(ConfigError)
    expect(() => validatePolicyOptions(config)).toThrow(field)
  })
})

describe('route tables', () => {
  it('every cacheable route is a GET in the Immich route table', () => {
    for (const path of CACHEABLE_ROUTES.keys()) expect(known.has(`GET ${path}`), path).toBe(true)
  })

  it('every invalidation rule names an operation of the Immich route table', () => {
    for (const key of INVALIDATION_RULES.keys()) expect(known.has(key), key).toBe(true)
  })

  it('every asset-changing bulk route of the table is covered (by name)', () => {
    const bulk = ['PUT /api/assets', 'DELETE /api/assets', 'POST /api/assets/jobs']
    for (const key of bulk)
      expect(INVALIDATION_RULES.get(key)?.bodyFields?.length, key).toBeGreaterThan(0)
  })
})

describe('idsFromJson', () => {
  it.each<[string, string[], string[] | undefined]>([
    ['{"ids":["A","b"],"force":true}', ['ids'], ['a', 'b']],
    ['{"assetIds":["x"],"name":"regenerate-thumbnail"}', ['assetIds'], ['x']],
    ['{"isFavorite":true}', ['ids'], []],
    ['{"ids":"x"}', ['ids'], undefined],
    ['{"ids":[1]}', ['ids'], undefined],
    ['not json', ['ids'], undefined],
    ['null', ['ids'], undefined],
  ])('%s', (body, fields, expected) => {
    expect(idsFromJson(Buffer.from(body), fields)).toEqual(expected)
  })
})
