/**
 * The People page / timeline burst under the default configuration: 600 thumbnails from one client
 * in 2 s all pass, while the same client's `api` class is held to its own budget.
 */
import { afterEach, describe, expect, it } from 'vitest'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { startStack, type Stack } from '../support/stack.js'
import { redisOrSkip, send, tally, uniquePrefix, waitFor } from '../policies/rate-limit/support.js'

const sharedUrl = await redisOrSkip('ratelimit burst (Redis variant)')

let stack: Stack | undefined
let immich: FakeImmich | undefined
afterEach(async () => {
  await stack?.close()
  await immich?.close()
  stack = undefined
})

/**
 * Small thumbnails (what the web app asks for at `size=thumbnail` is a few KiB of webp): the test
 * times the limiter and the gateway, not the fake's byte generator.
 */
async function defaultStack(overrides: Parameters<typeof startStack>[0] = {}): Promise<Stack> {
  immich = await startFakeImmich({ thumbnailSize: 4096 })
  // The test sends all 600 at once, each on its own connection, where a browser queues them on six:
  // the per-address connection limit is lifted so the limiter is what is measured.
  return startStack(
    { ...overrides, server: { maxConnectionsPerAddress: 10_000, ...overrides.server } },
    { immich }
  )
}

const KEY = { 'x-api-key': 'fake-admin-key' }
const PEOPLE = 300

/**
 * A People page: each person's thumbnail and the asset thumbnails under it, all 600 sent at once
 * (the browser queues them; what matters to the limiter is that they arrive within the same 2 s).
 */
async function burst(url: string, total: number) {
  const paths = Array.from({ length: total }, (_, i) =>
    i % 2
      ? `/api/people/00000000-0000-4000-8000-${String(i % PEOPLE).padStart(12, '0')}/thumbnail`
      : `/api/assets/00000000-0000-4000-9000-${String(i).padStart(12, '0')}/thumbnail?size=thumbnail`
  )
  const started = performance.now()
  let lastSent = 0
  const answers = await Promise.all(
    paths.map((path) => {
      const sending = send(`${url}${path}`, { headers: KEY })
      lastSent = performance.now() - started
      return sending
    })
  )
  return { answers, sentWithinMs: lastSent, ms: performance.now() - started }
}

async function check(s: Stack): Promise<void> {
  // The api class (600 / 60 s by default) runs out first...
  const api = []
  for (let i = 0; i < 8; i++)
    api.push(
      ...(await Promise.all(Array.from({ length: 76 }, () => send(`${s.url}/api/server/ping`))))
    )
  expect(tally(api)).toEqual({ 200: 600, 429: 8 })
  // ...and still a burst of 600 thumbnails, all sent within 2 s, passes.
  const { answers, sentWithinMs, ms } = await burst(s.url, 600)
  console.info(
    `600 thumbnails sent within ${Math.round(sentWithinMs)} ms, all answered in ${Math.round(ms)} ms`
  )
  expect(sentWithinMs).toBeLessThan(2000)
  expect(tally(answers)).toEqual({ 200: 600 })
  // The thumbnails budget was spent by exactly those 600: 2400 of 3000 left.
  const remaining = answers.map((a) =>
    Number(/^"thumbnails";r=(\d+);/.exec(String(a.headers['ratelimit']))?.[1])
  )
  expect(Math.min(...remaining)).toBe(2400)
  const last = await send(`${s.url}/api/server/ping`)
  expect(last.status).toBe(429)
  expect(last.headers['ratelimit-policy']).toBe('"api";q=600;w=60')
}

describe('600 thumbnails in 2 s under the default config', () => {
  it('in memory', async () => {
    stack = await defaultStack()
    await check(stack)
  }, 30_000)

  it.runIf(sharedUrl)(
    'with Redis',
    async () => {
      stack = await defaultStack({
        redis: { url: sharedUrl },
        policies: { 'rate-limit': { keyPrefix: uniquePrefix('burst') } },
      })
      const redis = stack.gateway.deps.redis!
      await waitFor(() => redis.status === 'ready', 10_000, 'Redis ready')
      await check(stack)
    },
    30_000
  )
})
