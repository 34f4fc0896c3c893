import { Counter, Histogram, Registry } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { LeanCounter, LeanHistogram } from '../../src/observability/lean-metrics.js'
import { DURATION_BUCKETS } from '../../src/observability/metrics.js'

// The lean series must be indistinguishable from prom-client's own at scrape time: same text, same
// JSON, same reset. Each test feeds the same observations to both and compares what the registry prints.

const observations = [
  0, 0.0004, 0.0005, 0.0007, 0.003, 0.003, 0.2, 1, 59.9, 600, 1800, 1800.5, 7200,
]

describe('lean metrics', () => {
  it('a histogram prints exactly what prom-client prints for the same observations', async () => {
    const theirs = new Registry()
    const ours = new Registry()
    const config = {
      name: 'x_duration_seconds',
      help: 'Help with "quotes" and \\ backslash.',
      labelNames: ['method', 'route'] as const,
      buckets: DURATION_BUCKETS,
    }
    const reference = new Histogram({ ...config, registers: [theirs] })
    const lean = new LeanHistogram({ ...config, registers: [ours] })
    for (const [i, v] of observations.entries()) {
      const route = i % 3 ? '/api/assets/{id}/thumbnail' : 'a "quoted" \\ route\n'
      reference.labels({ method: 'GET', route }).observe(v)
      lean.series('GET', route).observe(v)
    }
    expect(await ours.metrics()).toBe(await theirs.metrics())
    // The JSON form too (registry.getMetricsAsJSON), minus prom-client's always-null exemplars.
    const withoutExemplars = (json: unknown) =>
      JSON.parse(JSON.stringify(json, (k, v) => (k === 'exemplar' ? undefined : v)))
    expect(withoutExemplars(await ours.getMetricsAsJSON())).toEqual(
      withoutExemplars(await theirs.getMetricsAsJSON())
    )
  })

  it('buckets given out of order are sorted and counted cumulatively (prom-client does neither)', async () => {
    const ours = new Registry()
    const lean = new LeanHistogram({
      name: 'y_seconds',
      help: 'h',
      labelNames: ['a'],
      buckets: [5, 0.1, 1],
      registers: [ours],
    })
    for (const v of [0.05, 0.1, 0.5, 3, 9]) lean.series('x').observe(v)
    expect((await ours.metrics()).split('\n').filter((l) => l.startsWith('y_seconds'))).toEqual([
      'y_seconds_bucket{le="0.1",a="x"} 2',
      'y_seconds_bucket{le="1",a="x"} 3',
      'y_seconds_bucket{le="5",a="x"} 4',
      'y_seconds_bucket{le="+Inf",a="x"} 5',
      'y_seconds_sum{a="x"} 12.65',
      'y_seconds_count{a="x"} 5',
    ])
  })

  it('a counter prints exactly what prom-client prints, one line per label combination', async () => {
    const theirs = new Registry()
    const ours = new Registry()
    const config = {
      name: 'z_requests_total',
      help: 'h',
      labelNames: ['method', 'status'] as const,
    }
    const reference = new Counter({ ...config, registers: [theirs] })
    const lean = new LeanCounter({ ...config, registers: [ours] })
    for (const [method, status, by] of [
      ['GET', '200', 1],
      ['GET', '200', 2],
      ['POST', '401', 1],
      ['GET', '304', 0.5],
    ] as const) {
      reference.inc({ method, status }, by)
      lean.series(method, status).inc(by)
    }
    expect(await ours.metrics()).toBe(await theirs.metrics())
    expect(await ours.metrics()).toContain('z_requests_total{method="GET",status="200"} 3')
  })

  it('a series handle keeps counting after it was taken, and resetMetrics empties it like prom-client', async () => {
    const registry = new Registry()
    const lean = new LeanCounter({
      name: 'w_total',
      help: 'h',
      labelNames: ['k'],
      registers: [registry],
    })
    const handle = lean.series('a')
    handle.inc()
    expect(lean.series('a')).toBe(handle)
    handle.inc(4)
    expect(await registry.metrics()).toContain('w_total{k="a"} 5')
    registry.resetMetrics()
    expect(await registry.metrics()).not.toContain('w_total{')
    lean.series('a').inc()
    expect(await registry.metrics()).toContain('w_total{k="a"} 1')
  })
})
