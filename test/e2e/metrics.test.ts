import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import {
  checkAgainstExposition,
  collectExpressions,
  formatProblems,
} from '../observability/promql.js'
import { startStack, type Stack } from '../support/stack.js'

const ADMIN = { 'x-api-key': 'fake-admin-key' }

async function scrape(url: string): Promise<string> {
  const res = await request(url)
  expect(res.statusCode).toBe(200)
  return res.body.text()
}

function seriesCount(exposition: string, prefix = 'immich_gateway_'): number {
  return exposition.split('\n').filter((line) => line.startsWith(prefix)).length
}

describe('metrics', () => {
  let stack: Stack
  beforeAll(async () => {
    process.env.IGW_TEST_METRICS_TOKEN = 'metrics-token-for-tests'
    // With Redis, as a multi-replica install runs: the Redis panels and alerts have their series too.
    stack = await startStack({
      metrics: { port: 0, bearerTokenEnv: 'IGW_TEST_METRICS_TOKEN' },
      redis: { url: 'redis://127.0.0.1:6379' },
    })
  })
  afterAll(async () => {
    await stack.close()
  })

  it('serves /metrics on its own loopback listener', () => {
    expect(stack.gateway.metricsUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/metrics$/)
  })

  it('exposes every family and label the dashboard and the alert rules use, after real traffic', async () => {
    for (let i = 0; i < 5; i++) {
      for (const path of [
        '/api/server/ping',
        '/api/users/me',
        '/api/assets/m1/thumbnail',
        '/',
        '/api/nope',
      ]) {
        const res = await request(`${stack.url}${path}`, { headers: ADMIN })
        await res.body.dump()
      }
    }
    const text = await scrape(stack.gateway.metricsUrl!)
    const problems = checkAgainstExposition(text, collectExpressions())
    expect(problems, formatProblems(problems)).toEqual([])
    expect(text).toMatch(
      /immich_gateway_requests_total\{method="GET",route="\/api\/assets\/\{id\}\/thumbnail",status="200",client="[^"]+"\} 5/
    )
    expect(text).toMatch(
      /immich_gateway_upstream_duration_seconds_count\{method="GET",route="\/api\/users\/me"\} 5/
    )
    expect(text).toContain('immich_gateway_process_resident_memory_bytes')
  })

  it('serves /metrics on the main port only with the bearer token', async () => {
    const without = await request(`${stack.url}/metrics`)
    expect(without.statusCode).toBe(401)
    await without.body.dump()
    const wrong = await request(`${stack.url}/metrics`, {
      headers: { authorization: 'Bearer nope' },
    })
    expect(wrong.statusCode).toBe(401)
    await wrong.body.dump()
    const right = await request(`${stack.url}/metrics`, {
      headers: { authorization: 'Bearer metrics-token-for-tests' },
    })
    expect(right.statusCode).toBe(200)
    expect(await right.body.text()).toContain('immich_gateway_requests_total')
  })

  it('keeps the number of series bounded under 10,000 requests to random paths', async () => {
    const before = seriesCount(await scrape(stack.gateway.metricsUrl!))
    const paths = Array.from({ length: 10_000 }, (_, i) => {
      const r = randomBytes(6).toString('hex')
      return i % 3 === 0
        ? `/api/${r}/${r}`
        : i % 3 === 1
          ? `/${r}`
          : `/api/assets/${r}/thumbnail?size=${r}`
    })
    for (let i = 0; i < paths.length; i += 100) {
      await Promise.all(
        paths.slice(i, i + 100).map(async (path) => {
          const res = await request(`${stack.url}${path}`)
          await res.body.dump()
        })
      )
    }
    const after = seriesCount(await scrape(stack.gateway.metricsUrl!))
    // A handful of new label combinations (route unmatched/web/thumbnail × a few statuses), never one per path.
    expect(after - before).toBeLessThan(200)
  }, 120_000)
})
