import { afterEach, describe, expect, it } from 'vitest'
import { startStack, type Stack } from '../../support/stack.js'
import { send, tally } from './support.js'

const KEY = { 'x-api-key': 'fake-admin-key' }
const THUMB = (n: number) =>
  `/api/assets/00000000-0000-4000-8000-${String(n).padStart(12, '0')}/thumbnail`

let stack: Stack | undefined
afterEach(async () => {
  await stack?.close()
  stack = undefined
})

async function start(
  options: Record<string, unknown>,
  server: Record<string, unknown> = {}
): Promise<Stack> {
  stack = await startStack({ server, policies: { 'rate-limit': options } })
  return stack
}

async function refusals(s: Stack) {
  return (await s.gateway.deps.metrics.rateLimited.get()).values
}

describe('rate-limit: budgets and the response contract', () => {
  it("lets the budget through, then answers 429 in Immich's error shape with Retry-After", async () => {
    const s = await start({ classes: { api: { points: 3, durationSeconds: 60 } } })
    const answers = []
    for (let i = 0; i < 5; i++) answers.push(await send(`${s.url}/api/server/ping`))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 429, 429])
    const refused = answers[3]!
    const body = JSON.parse(refused.body)
    expect(body).toMatchObject({
      message: 'Too many requests',
      error: 'Too Many Requests',
      statusCode: 429,
    })
    expect(body.correlationId).toBe(refused.headers['x-correlation-id'])
    const retryAfter = Number(refused.headers['retry-after'])
    expect(retryAfter).toBeGreaterThanOrEqual(1)
    expect(retryAfter).toBeLessThanOrEqual(60)
    // Immich was asked three times only.
    expect(s.immich.requestsTo('/api/server/ping')).toHaveLength(3)
    expect(await refusals(s)).toEqual([{ labels: { class: 'api', client: 'anonymous' }, value: 2 }])
    expect(
      s.logs.some((l) => l.includes('"rateLimited":"api"') && l.includes('"status":429'))
    ).toBe(true)
  })

  it('sends RateLimit-Policy and RateLimit (draft-ietf-httpapi-ratelimit-headers-10) on allowed and refused answers', async () => {
    const s = await start({ classes: { api: { points: 2, durationSeconds: 30 } } })
    const a = await send(`${s.url}/api/server/ping`)
    const b = await send(`${s.url}/api/server/ping`)
    const c = await send(`${s.url}/api/server/ping`)
    for (const answer of [a, b, c])
      expect(answer.headers['ratelimit-policy']).toBe('"api";q=2;w=30')
    expect(a.headers['ratelimit']).toMatch(/^"api";r=1;t=(29|30)$/)
    expect(b.headers['ratelimit']).toMatch(/^"api";r=0;t=(29|30)$/)
    expect(c.status).toBe(429)
    expect(c.headers['ratelimit']).toMatch(/^"api";r=0;t=(29|30)$/)
    expect(c.headers['retry-after']).toMatch(/^(29|30)$/)
  })

  it('leaves the headers out when headers: false', async () => {
    const s = await start({ headers: false, classes: { api: { points: 1, durationSeconds: 30 } } })
    const a = await send(`${s.url}/api/server/ping`)
    expect(a.headers['ratelimit']).toBeUndefined()
    expect(a.headers['ratelimit-policy']).toBeUndefined()
    const b = await send(`${s.url}/api/server/ping`)
    expect(b.status).toBe(429)
    expect(b.headers['retry-after']).toBeDefined()
  })
})

describe('rate-limit: route classes', () => {
  it('gives thumbnails (GET and HEAD) their own budget: an exhausted api budget does not stop them', async () => {
    const s = await start({
      classes: {
        api: { points: 2, durationSeconds: 60 },
        thumbnails: { points: 5, durationSeconds: 60 },
      },
    })
    expect(tally(await Promise.all([1, 2, 3].map(() => send(`${s.url}/api/server/ping`))))).toEqual(
      { 200: 2, 429: 1 }
    )
    const thumbs = []
    for (let i = 0; i < 4; i++) thumbs.push(await send(`${s.url}${THUMB(i)}`, { headers: KEY }))
    thumbs.push(await send(`${s.url}${THUMB(9)}`, { method: 'HEAD', headers: KEY }))
    expect(thumbs.map((t) => t.status)).toEqual([200, 200, 200, 200, 200])
    expect(thumbs[0]!.headers['ratelimit-policy']).toMatch(/^"thumbnails";q=5;w=60\b/)
    expect(thumbs[4]!.headers['ratelimit']).toMatch(/^"thumbnails";r=0;/)
    const sixth = await send(`${s.url}${THUMB(1)}`, { headers: KEY })
    expect(sixth.status).toBe(429)
    // The client label is whatever authentication made of the API key (`native` when passed through).
    expect((await refusals(s)).map((v) => [v.labels.class, v.value]).sort()).toEqual([
      ['api', 1],
      ['thumbnails', 1],
    ])
  })

  it('classes people thumbnails, profile images and originals as thumbnails, uploads as uploads', async () => {
    const s = await start({})
    const id = '00000000-0000-4000-8000-000000000001'
    const cases: [string, string, string][] = [
      ['GET', `/api/people/${id}/thumbnail`, 'thumbnails'],
      ['GET', `/api/users/${id}/profile-image`, 'thumbnails'],
      ['GET', `/api/assets/${id}/original`, 'thumbnails'],
      ['GET', `/api/assets/${id}/video/playback`, 'thumbnails'],
      ['POST', '/api/assets', 'uploads'],
      ['GET', `/api/assets/${id}`, 'api'],
      ['DELETE', `/api/users/profile-image`, 'api'],
      ['GET', '/api/not-a-route', 'api'],
    ]
    for (const [method, path, cls] of cases) {
      const answer = await send(`${s.url}${path}`, { method, headers: KEY })
      expect(answer.headers['ratelimit-policy'], `${method} ${path}`).toMatch(
        new RegExp(`^"${cls}";`)
      )
    }
  })

  it('does not limit the web UI unless webUi is on', async () => {
    let s = await start({ classes: { api: { points: 1, durationSeconds: 60 } } })
    const web = await Promise.all([1, 2, 3].map(() => send(`${s.url}/photos`)))
    expect(web.map((w) => w.status)).toEqual([200, 200, 200])
    expect(web[0]!.headers['ratelimit']).toBeUndefined()
    await s.close()
    s = await start({ webUi: true, classes: { api: { points: 1, durationSeconds: 60 } } })
    expect(tally(await Promise.all([1, 2, 3].map(() => send(`${s.url}/photos`))))).toEqual({
      200: 1,
      429: 2,
    })
  })

  it('a custom class takes its routes away from api', async () => {
    const s = await start({
      classes: {
        api: { points: 100, durationSeconds: 60 },
        ping: { points: 1, durationSeconds: 60, methods: ['GET'], routes: ['/api/server/ping'] },
      },
    })
    const answers = [
      await send(`${s.url}/api/server/ping`),
      await send(`${s.url}/api/server/ping`),
      await send(`${s.url}/api/server/version`),
    ]
    expect(answers.map((a) => a.status)).toEqual([200, 429, 200])
    expect(answers[1]!.headers['ratelimit-policy']).toBe('"ping";q=1;w=60')
  })
})

describe('rate-limit: per-client overrides', () => {
  it("applies a client's own budget, keeping the class window when only points are given", async () => {
    const s = await start({
      classes: { api: { points: 100, durationSeconds: 45 } },
      clients: { anonymous: { api: { points: 2 } } },
    })
    const answers = []
    for (let i = 0; i < 3; i++) answers.push(await send(`${s.url}/api/server/ping`))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429])
    expect(answers[0]!.headers['ratelimit-policy']).toBe('"api";q=2;w=45')
  })

  it('false lifts the limit for that client and class', async () => {
    const s = await start({
      classes: { api: { points: 1, durationSeconds: 60 } },
      clients: { anonymous: { api: false } },
    })
    const answers = await Promise.all([1, 2, 3, 4].map(() => send(`${s.url}/api/server/ping`)))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200])
    expect(answers[0]!.headers['ratelimit']).toBeUndefined()
  })
})

describe('rate-limit: native credentials', () => {
  const ping = (s: Stack, key: string) =>
    send(`${s.url}/api/users/me`, { headers: { 'x-api-key': key } })

  it('one native credential has its own budget, and the address budget is shown beside it', async () => {
    const s = await start({
      addressFactor: 3,
      classes: { api: { points: 2, durationSeconds: 60 } },
    })
    const answers = []
    for (let i = 0; i < 3; i++) answers.push(await ping(s, 'fake-admin-key'))
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429])
    expect(answers[0]!.headers['ratelimit-policy']).toBe('"api";q=2;w=60, "api-address";q=6;w=60')
    expect(answers[0]!.headers['ratelimit']).toMatch(/^"api";r=1;t=\d+, "api-address";r=5;t=\d+$/)
    // Another credential from the same address still has budget.
    expect((await ping(s, 'fake-user-key')).status).toBe(200)
  })

  it('made-up credentials do not buy fresh budgets: the address ceiling stops them', async () => {
    const s = await start({
      addressFactor: 2,
      classes: { api: { points: 2, durationSeconds: 60 } },
    })
    const answers = []
    for (let i = 0; i < 6; i++) answers.push(await ping(s, `made-up-key-${i}`))
    // Immich refuses each key (401) but only the first four reach it.
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 401, 429, 429])
    expect(answers[4]!.headers['ratelimit']).toMatch(/"api-address";r=0;/)
    expect(s.immich.requestsTo('/api/users/me')).toHaveLength(4)
  })

  it('addressFactor 0 turns the ceiling off', async () => {
    const s = await start({
      addressFactor: 0,
      classes: { api: { points: 2, durationSeconds: 60 } },
    })
    const answers = []
    for (let i = 0; i < 6; i++) answers.push(await ping(s, `made-up-key-${i}`))
    expect(answers.map((a) => a.status)).toEqual([401, 401, 401, 401, 401, 401])
    expect(answers[0]!.headers['ratelimit-policy']).toBe('"api";q=2;w=60')
  })
})

describe('rate-limit: the key is the client address, believed from trusted proxies only', () => {
  it('a spoofed X-Forwarded-For from an untrusted peer does not buy a fresh budget', async () => {
    const s = await start({ classes: { api: { points: 2, durationSeconds: 60 } } })
    const answers = []
    for (let i = 0; i < 4; i++)
      answers.push(
        await send(`${s.url}/api/server/ping`, { headers: { 'x-forwarded-for': `203.0.113.${i}` } })
      )
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429, 429])
  })

  it('behind a trusted proxy each forwarded client has its own budget', async () => {
    const s = await start(
      { classes: { api: { points: 2, durationSeconds: 60 } } },
      { trustedProxies: ['127.0.0.1'] }
    )
    const answers = []
    for (let i = 0; i < 4; i++)
      answers.push(
        await send(`${s.url}/api/server/ping`, { headers: { 'x-forwarded-for': `203.0.113.${i}` } })
      )
    expect(answers.map((a) => a.status)).toEqual([200, 200, 200, 200])
    const again = []
    for (let i = 0; i < 3; i++)
      again.push(
        await send(`${s.url}/api/server/ping`, { headers: { 'x-forwarded-for': '203.0.113.7' } })
      )
    expect(again.map((a) => a.status)).toEqual([200, 200, 429])
  })

  it('IPv6 clients of one /64 share a budget', async () => {
    const s = await start(
      { classes: { api: { points: 2, durationSeconds: 60 } } },
      { trustedProxies: ['127.0.0.1'] }
    )
    const answers = []
    for (const address of [
      '2001:db8:1:2::1',
      '2001:db8:1:2::2',
      '2001:db8:1:2::abcd:1',
      '2001:0db8:0001:0002:ffff:ffff:ffff:ffff',
    ]) {
      answers.push(
        await send(`${s.url}/api/server/ping`, { headers: { 'x-forwarded-for': address } })
      )
    }
    expect(answers.map((a) => a.status)).toEqual([200, 200, 429, 429])
    const otherNet = await send(`${s.url}/api/server/ping`, {
      headers: { 'x-forwarded-for': '2001:db8:1:3::1' },
    })
    expect(otherNet.status).toBe(200)
  })
})
