import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { rateLimitOptions, THUMBNAIL_ROUTES } from '../../../policies/rate-limit/schema.js'
import { startFakeImmich, type FakeImmich } from '../../fake-immich/server.js'
import { startStack } from '../../support/stack.js'

let immich: FakeImmich
beforeAll(async () => {
  immich = await startFakeImmich()
})
afterAll(() => immich.close())

/** Starts a gateway with these policy options; a boot that succeeds is closed and reported as such. */
async function boot(policies: Record<string, unknown>): Promise<string> {
  try {
    const stack = await startStack({ policies }, { immich })
    await stack.close()
    return 'booted'
  } catch (err) {
    return (err as Error).message
  }
}

describe('rate-limit options: defaults', () => {
  it('has generous thumbnails, uploads and api classes, insurance on store errors, headers on, web UI free', () => {
    const o = rateLimitOptions.parse({})
    expect(o).toMatchObject({
      keyPrefix: 'igw:rl',
      onStoreError: 'insurance',
      insuranceDivisor: 1,
      storeTimeoutMs: 250,
      addressFactor: 4,
      webUi: false,
      headers: true,
      clients: {},
    })
    expect(o.classes.thumbnails).toEqual({
      points: 3000,
      durationSeconds: 60,
      methods: ['GET', 'HEAD'],
      routes: THUMBNAIL_ROUTES,
    })
    expect(o.classes.uploads).toEqual({
      points: 1800,
      durationSeconds: 60,
      methods: ['POST'],
      routes: ['/api/assets'],
    })
    expect(o.classes.api).toEqual({ points: 600, durationSeconds: 60 })
  })

  it('a partial built-in class keeps its other defaults', () => {
    const o = rateLimitOptions.parse({ classes: { thumbnails: { points: 10 } } })
    expect(o.classes.thumbnails).toEqual({
      points: 10,
      durationSeconds: 60,
      methods: ['GET', 'HEAD'],
      routes: THUMBNAIL_ROUTES,
    })
    expect(o.classes.api.points).toBe(600)
  })
})

describe('rate-limit options: a bad option stops the boot naming the field', () => {
  it('good options boot', async () => {
    expect(
      await boot({
        'rate-limit': {
          classes: {
            search: {
              points: 5,
              durationSeconds: 10,
              methods: ['POST'],
              routes: ['/api/search/metadata'],
            },
          },
          clients: { frame: { thumbnails: { points: 1 } } },
        },
      })
    ).toBe('booted')
  })

  const cases: [string, unknown, string][] = [
    ['unknown field', { burst: 1 }, 'policies.rate-limit: Unrecognized key: "burst"'],
    ['zero points', { classes: { api: { points: 0 } } }, 'policies.rate-limit.classes.api.points'],
    [
      'fractional window',
      { classes: { thumbnails: { durationSeconds: 1.5 } } },
      'policies.rate-limit.classes.thumbnails.durationSeconds',
    ],
    ['bad store mode', { onStoreError: 'ignore' }, 'policies.rate-limit.onStoreError'],
    ['bad divisor', { insuranceDivisor: 0 }, 'policies.rate-limit.insuranceDivisor'],
    [
      'bad class name',
      { classes: { 'Big Files': { points: 1, durationSeconds: 1, routes: ['/api/assets'] } } },
      'policies.rate-limit.classes.Big Files',
    ],
    [
      'custom class without routes',
      { classes: { search: { points: 1, durationSeconds: 1 } } },
      'policies.rate-limit.classes.search.routes',
    ],
    [
      'route not a template',
      { classes: { search: { points: 1, durationSeconds: 1, routes: ['search/metadata'] } } },
      'policies.rate-limit.classes.search.routes.0',
    ],
    [
      'bad method',
      {
        classes: {
          search: {
            points: 1,
            durationSeconds: 1,
            methods: ['FETCH'],
            routes: ['/api/search/metadata'],
          },
        },
      },
      'policies.rate-limit.classes.search.methods.0',
    ],
    [
      'bad override field',
      { clients: { frame: { thumbnails: { rate: 1 } } } },
      'policies.rate-limit.clients.frame.thumbnails',
    ],
    [
      'unknown route template',
      { classes: { search: { points: 1, durationSeconds: 1, routes: ['/api/search/nothing'] } } },
      'policies.rate-limit.classes.search.routes[0]: no Immich route',
    ],
    [
      'method the route lacks',
      {
        classes: {
          search: {
            points: 1,
            durationSeconds: 1,
            methods: ['GET'],
            routes: ['/api/search/metadata'],
          },
        },
      },
      'policies.rate-limit.classes.search.routes[0]: no Immich route GET /api/search/metadata',
    ],
    [
      'route in two classes',
      {
        classes: {
          mine: {
            points: 1,
            durationSeconds: 1,
            methods: ['GET'],
            routes: ['/api/assets/{id}/thumbnail'],
          },
        },
      },
      'is already in class "thumbnails"',
    ],
    [
      'override of an unknown class',
      { clients: { frame: { thumbs: { points: 1 } } } },
      'policies.rate-limit.clients.frame.thumbs: unknown route class',
    ],
  ]
  it.each(cases)('%s', async (_name, options, message) => {
    expect(await boot({ 'rate-limit': options })).toContain(message)
  })
})

describe('login-guard options', () => {
  const cases: [string, unknown, string][] = [
    ['unknown field', { maxFailures: 3 }, 'policies.login-guard: Unrecognized key: "maxFailures"'],
    ['zero failures', { maxFailuresPerAccount: 0 }, 'policies.login-guard.maxFailuresPerAccount'],
    ['tiny body cap', { maxBodyBytes: 10 }, 'policies.login-guard.maxBodyBytes'],
    ['bad prefix', { keyPrefix: 'has space' }, 'policies.login-guard.keyPrefix'],
  ]
  it.each(cases)('%s', async (_name, options, message) => {
    expect(await boot({ 'login-guard': options })).toContain(message)
  })
})
