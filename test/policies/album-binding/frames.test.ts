/**
 * The call sequences of real frame apps in album mode (frame-apps.ts), replayed through the gateway
 * with a key bound to the frame's album: every call works, and every asset they get to show is one
 * of the album's.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Stack } from '../../support/stack.js'
import { FRAME_APPS, type FrameStep } from './frame-apps.js'
import { assetIdsIn, call, gateway, makeWorld, type World } from './support.js'

let world: World
let stack: Stack

beforeAll(async () => {
  world = await makeWorld()
  stack = await gateway(world)
})
afterAll(async () => {
  await stack?.close()
  await world?.immich.close()
})

function fill(value: unknown, vars: Record<string, string>): unknown {
  if (typeof value === 'string')
    return value.replace(/\{(\w+)\}/g, (_, name: string) => vars[name]!)
  if (Array.isArray(value)) return value.map((v) => fill(v, vars))
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fill(v, vars)]))
  return value
}

describe('frame apps in album mode, with a key bound to their album', () => {
  for (const app of FRAME_APPS) {
    it(app.name, async () => {
      const assets = await replay(app.steps, world.hallway.id, true)
      for (const id of assets) expect(world.hallway.assetIds.has(id), id).toBe(true)
      if (app.showsAssets) expect(assets.size).toBeGreaterThan(0)
    })

    it(`${app.name}, set to an album the key is not bound to: shows nothing`, async () => {
      const assets = await replay(app.steps, world.kitchen.id, false)
      expect([...assets]).toEqual([])
    })
  }
})

/** Runs an app's steps for `album`; returns the asset ids its listings gave it to show. */
async function replay(steps: FrameStep[], album: string, mustWork: boolean): Promise<Set<string>> {
  const assets = new Set<string>()
  const buckets = new Set<string>()
  const run = async (step: FrameStep, vars: Record<string, string>) => {
    const path = fill(step.path, vars) as string
    const reply = await call(stack.url, world.keys.frame, step.method, path, fill(step.body, vars))
    if (mustWork) expect(reply.status, `${step.method} ${path}`).toBe(200)
    else expect(reply.status, `${step.method} ${path}`).toBeLessThan(500)
    if (/^\/api\/(search|timeline)\//.test(path))
      for (const id of assetIdsIn(reply.json)) assets.add(id)
    if (Array.isArray(reply.json))
      for (const b of reply.json as { timeBucket?: string }[])
        if (b.timeBucket) buckets.add(b.timeBucket)
    return reply
  }
  for (const step of steps) {
    if (step.path.includes('{asset}')) {
      for (const asset of [...assets]) await run(step, { album, asset })
    } else if (step.path.includes('{bucket}')) {
      for (const bucket of buckets) await run(step, { album, bucket })
    } else {
      const reply = await run(step, { album })
      if (step.path === '/api/albums')
        expect((reply.json as { id: string }[]).map((a) => a.id)).toEqual([world.hallway.id])
    }
  }
  return assets
}
