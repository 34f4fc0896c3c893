/**
 * Two gateways sharing Redis, as replicas: a membership one of them fetched serves the other, and a
 * change made through one is seen by the other at once.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Stack } from '../../support/stack.js'
import { redisOrSkip, uniquePrefix, waitFor } from '../rate-limit/support.js'
import { call, gateway, makeWorld, type World } from './support.js'

const redisUrl = await redisOrSkip('album binding (Redis tier)')

let world: World
const stacks: Stack[] = []

beforeAll(async () => {
  world = await makeWorld()
})
afterAll(async () => {
  for (const s of stacks) await s.close()
  await world?.immich.close()
})

describe.skipIf(!redisUrl)('album memberships shared through Redis', () => {
  it('one replica fetches, the other reuses it, and both see a change at once', async () => {
    const options = { ttlSeconds: 3600, redis: { keyPrefix: `${uniquePrefix('albums')}:` } }
    const a = await gateway(world, options, { redis: { url: redisUrl } })
    const b = await gateway(world, options, { redis: { url: redisUrl } })
    stacks.push(a, b)
    const searches = () => world.immich.requestsTo('/api/search/metadata').length
    const [first, second] = [...world.hallway.assetIds]
    const before = searches()
    expect((await call(a.url, world.keys.frame, 'GET', `/api/assets/${first}`)).status).toBe(200)
    expect(searches()).toBe(before + 1)
    // Stored in Redis after the answer (not awaited): wait until B finds it without asking Immich.
    await waitFor(
      async () => {
        const s = searches()
        const r = await call(b.url, world.keys.frame, 'GET', `/api/assets/${second}`)
        return r.status === 200 && searches() === s
      },
      5000,
      'replica B to use the shared membership'
    )
    // Both hold it in memory now. A removes an asset through the gateway; B refuses it at once.
    expect((await call(b.url, world.keys.frame, 'GET', `/api/assets/${first}`)).status).toBe(200)
    const removed = await call(
      a.url,
      world.keys.frame,
      'DELETE',
      `/api/albums/${world.hallway.id}/assets`,
      {
        ids: [first],
      }
    )
    expect(removed.status).toBe(200)
    try {
      await waitFor(
        async () =>
          (await call(b.url, world.keys.frame, 'GET', `/api/assets/${first}`)).status === 404,
        2000,
        'replica B to see the change'
      )
    } finally {
      world.hallway.assetIds.add(first!)
    }
  })
})
