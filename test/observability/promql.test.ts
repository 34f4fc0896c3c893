import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Counter, Gauge, Histogram, Registry, Summary } from 'prom-client'
import { describe, expect, it } from 'vitest'
import { parse as parseYaml } from 'yaml'
import { LeanCounter, LeanHistogram } from '../../src/observability/lean-metrics.js'
import { Metrics } from '../../src/observability/metrics.js'
import {
  ALERTS_PATH,
  DASHBOARD_PATH,
  PromQLParseError,
  analyzeExpression,
  catalogFromExposition,
  catalogFromRegistry,
  checkAgainstCatalog,
  checkAgainstExposition,
  collectExpressions,
  dashboardExpressions,
  extractSelectors,
  formatProblems,
  ruleExpressions,
  substituteGrafanaVariables,
  variableQueryToPromQL,
  type CollectedExpression,
} from './promql.js'

const PROMETHEUS_YML = fileURLToPath(
  new URL('../../docs/prometheus/prometheus.yml', import.meta.url)
)
const METRICS_MD = fileURLToPath(new URL('../../docs/metrics.md', import.meta.url))

const one = (expr: string): CollectedExpression[] => [
  { expr, promql: expr, source: 'test', file: 'alerts', kind: 'alert' },
]

type Json = Record<string, unknown>
const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Json
const alerts = parseYaml(readFileSync(ALERTS_PATH, 'utf8')) as {
  groups: Array<{ name: string; rules: Array<Json> }>
}

/** Every panel of the dashboard, rows' nested panels included. */
function allPanels(): Json[] {
  const out: Json[] = []
  const visit = (p: Json): void => {
    out.push(p)
    if (Array.isArray(p.panels)) (p.panels as Json[]).forEach(visit)
  }
  ;(dashboard.panels as Json[]).forEach(visit)
  return out
}

/** The gateway's own metric families (no process metrics): name → { type, labels }. */
async function declaredGatewayMetrics(): Promise<Map<string, { type: string; labels: string[] }>> {
  const registry = new Registry()
  new Metrics(registry, { processMetrics: false })
  const out = new Map<string, { type: string; labels: string[] }>()
  for (const { name, type } of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(name) as unknown as { labelNames?: string[] }
    out.set(name, { type: String(type), labels: [...(metric.labelNames ?? [])] })
  }
  return out
}

// ---------------------------------------------------------------------------------------------

describe('extractSelectors', () => {
  it('takes the bucket series and le + grouping + matcher labels from histogram_quantile', () => {
    expect(
      extractSelectors(
        'histogram_quantile(0.99, sum by (le, route) (rate(immich_gateway_request_duration_seconds_bucket{route=~"$route"}[$__rate_interval])))'
      )
    ).toEqual([
      { metric: 'immich_gateway_request_duration_seconds_bucket', labels: ['le', 'route'] },
    ])
  })

  it('adds le under histogram_quantile even when the grouping forgets it', () => {
    expect(extractSelectors('histogram_quantile(0.5, sum(rate(x_bucket[5m])))')).toEqual([
      { metric: 'x_bucket', labels: ['le'] },
    ])
  })

  it('never takes functions, aggregations, keywords, durations or grouping labels for metrics', () => {
    const s = extractSelectors(
      'sum without (method) (rate(foo_total{a="1"}[5m] offset 1h)) / ignoring(method) group_left sum by (b) (increase(bar_total[1d:5m] @ end()))'
    )
    expect(s).toEqual([
      { metric: 'foo_total', labels: ['a', 'method'] },
      { metric: 'bar_total', labels: ['b'] },
    ])
  })

  it('puts aggregation grouping after the parenthesis too', () => {
    expect(extractSelectors('sum(rate(x_total[5m])) by (job, route)')).toEqual([
      { metric: 'x_total', labels: ['job', 'route'] },
    ])
  })

  it('sends on() labels to both sides and group_left labels to the one side', () => {
    expect(
      extractSelectors('rate(a_total[5m]) * on (instance) group_left (version) b_info')
    ).toEqual([
      { metric: 'a_total', labels: ['instance'] },
      { metric: 'b_info', labels: ['instance', 'version'] },
    ])
    expect(extractSelectors('a * on (x) group_right (y) b')).toEqual([
      { metric: 'a', labels: ['x', 'y'] },
      { metric: 'b', labels: ['x'] },
    ])
  })

  it('takes group_left followed by an expression as the right operand', () => {
    expect(extractSelectors('a * on (x) group_left (sum by (x) (b))')).toEqual([
      { metric: 'a', labels: ['x'] },
      { metric: 'b', labels: ['x'] },
    ])
  })

  it('pushes an outer grouping down through binary operators and functions', () => {
    expect(extractSelectors('sum by (route) (rate(a_total[5m]) / rate(b_total[5m]))')).toEqual([
      { metric: 'a_total', labels: ['route'] },
      { metric: 'b_total', labels: ['route'] },
    ])
    // a literal on one side: labels pass through to the other only
    expect(extractSelectors('sum by (kind) (2 * rate(a_total[5m]))')).toEqual([
      { metric: 'a_total', labels: ['kind'] },
    ])
  })

  it('knows and/unless keep the left side, or keeps both', () => {
    expect(extractSelectors('sum by (k) (a and on (j) b)')).toEqual([
      { metric: 'a', labels: ['j', 'k'] },
      { metric: 'b', labels: ['j'] },
    ])
    expect(extractSelectors('sum by (k) (a or b)')).toEqual([
      { metric: 'a', labels: ['k'] },
      { metric: 'b', labels: ['k'] },
    ])
  })

  it('depends on label_replace/label_join sources, not on the label they make', () => {
    expect(
      extractSelectors(
        'sum by (dst) (label_replace(rate(x_total[5m]), "dst", "$1", "src", "(.*)"))'
      )
    ).toEqual([{ metric: 'x_total', labels: ['src'] }])
    expect(extractSelectors('label_join(x, "d", ",", "a", "b")')).toEqual([
      { metric: 'x', labels: ['a', 'b'] },
    ])
    expect(extractSelectors('count_values("v", x)')).toEqual([{ metric: 'x', labels: [] }])
  })

  it('reads the metric name from __name__ and from a quoted name', () => {
    expect(extractSelectors('{__name__="x_total", a="b"}')).toEqual([
      { metric: 'x_total', labels: ['a'] },
    ])
    expect(extractSelectors('{"x_total", a="b"}')).toEqual([{ metric: 'x_total', labels: ['a'] }])
    expect(extractSelectors('{job="a"}')).toEqual([]) // nothing to check without a name
  })

  it('handles parameters, literals, subqueries, unary minus, comparisons with bool, comments', () => {
    const s = extractSelectors(`
      # the top 5
      topk(5, -max_over_time(rate(x_total{a!~"b,c}"}[1m])[1h:]) > bool 0.5e-3)
      or vector(0) + scalar(y)
      unless quantile(0.9, z) * Inf`)
    expect(s).toEqual([
      { metric: 'x_total', labels: ['a'] },
      { metric: 'y', labels: [] },
      { metric: 'z', labels: [] },
    ])
  })

  it('keeps colons of recording-rule names and keyword-like label names', () => {
    expect(extractSelectors('job:requests:rate5m{by="x", on="y"}')).toEqual([
      { metric: 'job:requests:rate5m', labels: ['by', 'on'] },
    ])
  })

  it('merges several uses of a metric and lists the innermost function of each use', () => {
    const expr = 'sum(rate(x_total{a="1"}[5m])) / sum by (b) (increase(x_total[5m])) + deriv(g[5m])'
    expect(extractSelectors(expr)).toEqual([
      { metric: 'x_total', labels: ['a', 'b'] },
      { metric: 'g', labels: [] },
    ])
    expect(analyzeExpression(expr).map((u) => u.fn)).toEqual(['rate', 'increase', 'deriv'])
  })

  it('throws on malformed PromQL', () => {
    for (const bad of [
      'sum(rate(x[5m])',
      'x{a="b"',
      'x[5m',
      'rate(x[5m]) +',
      'sum by (a (x)',
      'x{a=b}',
      'x $y',
    ]) {
      expect(() => extractSelectors(bad), bad).toThrow(PromQLParseError)
    }
  })
})

describe('substituteGrafanaVariables', () => {
  it('replaces interval builtins with durations and other variables with .*', () => {
    expect(
      substituteGrafanaVariables(
        'rate(x{a=~"$client", b=~"${route:regex}", c=~"[[c]]"}[$__rate_interval]) offset ${__range}'
      )
    ).toBe('rate(x{a=~".*", b=~".*", c=~".*"}[5m]) offset 1h')
  })
  it('leaves label_replace back-references alone', () => {
    expect(substituteGrafanaVariables('label_replace(x, "d", "$1", "s", "(.*)")')).toContain('"$1"')
  })
})

describe('collecting expressions', () => {
  it('rewrites Grafana variable queries', () => {
    expect(variableQueryToPromQL('label_values(m{a=~"x"}, l)')).toBe('count by (l) (m{a=~"x"})')
    expect(variableQueryToPromQL('query_result(sum by (x) (m))')).toBe('sum by (x) (m)')
    expect(variableQueryToPromQL('label_values(l)')).toBeUndefined()
    expect(variableQueryToPromQL('label_names()')).toBeUndefined()
  })

  it('finds targets in nested rows, variables (string or object queries), annotations and old-style rows', () => {
    const found = dashboardExpressions({
      panels: [
        {
          type: 'timeseries',
          id: 1,
          title: 'T',
          targets: [
            { refId: 'A', expr: 'a' },
            { refId: 'B', expr: '' },
          ],
        },
        {
          type: 'row',
          id: 2,
          title: 'R',
          collapsed: true,
          panels: [{ type: 'stat', id: 3, title: 'S', targets: [{ refId: 'A', expr: 'b' }] }],
        },
      ],
      rows: [{ title: 'old', panels: [{ id: 4, title: 'O', targets: [{ expr: 'c' }] }] }],
      templating: {
        list: [
          { type: 'query', name: 'v1', query: 'label_values(d, x)' },
          { type: 'query', name: 'v2', query: { query: 'label_values(e{y="1"}, z)', refId: 'X' } },
          { type: 'datasource', name: 'ds', query: 'prometheus' },
        ],
      },
      annotations: { list: [{ name: 'restarts', expr: 'changes(f[5m]) > 0' }] },
    })
    expect(found.map((e) => e.promql)).toEqual([
      'a',
      'b',
      'c',
      'count by (x) (d)',
      'count by (z) (e{y="1"})',
      'changes(f[5m]) > 0',
    ])
    expect(found[1]!.source).toBe('dashboard: row "R" (id 2) / panel "S" (id 3) target A')
    const rules = ruleExpressions({
      groups: [
        {
          name: 'g',
          rules: [
            { record: 'r:x', expr: 'sum(x)' },
            { alert: 'A', expr: 'r:x > 1' },
          ],
        },
      ],
    })
    expect(rules.map((r) => [r.kind, r.defines])).toEqual([
      ['record', 'r:x'],
      ['alert', undefined],
    ])
  })

  it('collects every dashboard target and every alert rule', () => {
    const exprs = collectExpressions()
    const targets = allPanels().flatMap((p) =>
      Array.isArray(p.targets) ? (p.targets as Json[]) : []
    )
    expect(exprs.filter((e) => e.kind === 'target')).toHaveLength(targets.length)
    expect(exprs.filter((e) => e.kind === 'alert')).toHaveLength(
      alerts.groups.flatMap((g) => g.rules).length
    )
    expect(exprs.filter((e) => e.kind === 'variable').map((e) => e.source)).toEqual([
      'dashboard: variable "job"',
      'dashboard: variable "instance"',
      'dashboard: variable "client"',
      'dashboard: variable "route"',
    ])
    expect(exprs.some((e) => e.source.startsWith('dashboard: row "Process"'))).toBe(true) // nested in a collapsed row
  })
})

// ---------------------------------------------------------------------------------------------

describe('exposition check (reusable for the live scrape)', () => {
  const text = [
    '# HELP app_requests_total Requests.',
    '# TYPE app_requests_total counter',
    'app_requests_total{route="/a,b",status="200",client="x\\"y"} 3',
    'app_requests_total{route="/c",status="500",client="z"} 1 1700000000000',
    '# TYPE app_duration_seconds histogram',
    'app_duration_seconds_bucket{le="0.1",route="/a"} 1',
    'app_duration_seconds_bucket{le="+Inf",route="/a"} 2',
    'app_duration_seconds_sum{route="/a"} 0.3',
    'app_duration_seconds_count{route="/a"} 2',
    '# TYPE app_up gauge',
    'app_up 1',
    '# TYPE app_refusals_total counter',
    '# TYPE om_things counter',
    'om_things_total{kind="a"} 1',
    'om_things_created{kind="a"} 1700000000',
    '# EOF',
  ].join('\n')

  it('parses families, labels and histogram series', () => {
    const c = catalogFromExposition(text)
    expect([...c.get('app_requests_total')!.labels].sort()).toEqual(['client', 'route', 'status'])
    expect([...c.get('app_duration_seconds_bucket')!.labels].sort()).toEqual(['le', 'route'])
    expect([...c.get('app_duration_seconds_count')!.labels]).toEqual(['route'])
    expect(c.get('app_refusals_total')!.labelsKnown).toBe(false)
    expect(c.get('om_things_total')!.type).toBe('counter')
  })

  it('reports missing metrics and labels, and nothing for good expressions', () => {
    expect(
      checkAgainstExposition(
        text,
        one('histogram_quantile(0.9, sum by (le, route) (rate(app_duration_seconds_bucket[5m])))')
      )
    ).toEqual([])
    expect(
      checkAgainstExposition(
        text,
        one('sum by (instance, kind) (rate(om_things_total{kind="a"}[5m])) + on() app_up')
      )
    ).toEqual([])
    expect(
      checkAgainstExposition(text, one('sum by (method) (rate(app_requests_total[5m]))')).map(
        (p) => [p.kind, p.metric, p.label]
      )
    ).toEqual([['missing-label', 'app_requests_total', 'method']])
    expect(
      checkAgainstExposition(text, one('sum by (le) (rate(app_duration_seconds_count[5m]))')).map(
        (p) => p.kind
      )
    ).toEqual(['missing-label'])
    const missing = checkAgainstExposition(
      text,
      one('rate(app_duration_seconds[5m]) + rate(nope_total[5m])')
    )
    expect(missing.map((p) => [p.kind, p.metric])).toEqual([
      ['missing-metric', 'app_duration_seconds'],
      ['missing-metric', 'nope_total'],
    ])
    expect(missing[0]!.message).toContain('_bucket')
  })

  it('checks labels of announced families only when asked to require samples', () => {
    expect(
      checkAgainstExposition(text, one('sum by (client) (rate(app_refusals_total[5m]))'))
    ).toEqual([])
    expect(
      checkAgainstExposition(text, one('sum by (client) (rate(app_refusals_total[5m]))'), {
        requireSamples: true,
      }).map((p) => p.kind)
    ).toEqual(['no-samples'])
  })

  it('flags rate() over a gauge, deriv() over a counter, parse errors; allows up and recorded series', () => {
    expect(checkAgainstExposition(text, one('rate(app_up[5m])')).map((p) => p.kind)).toEqual([
      'type-mismatch',
    ])
    expect(
      checkAgainstExposition(text, one('deriv(app_requests_total[5m])')).map((p) => p.kind)
    ).toEqual(['type-mismatch'])
    expect(
      checkAgainstExposition(text, one('sum(rate(app_requests_total[5m])')).map((p) => p.kind)
    ).toEqual(['parse-error'])
    expect(checkAgainstExposition(text, one('up{job="g"} == 0'))).toEqual([])
    expect(checkAgainstExposition(text, one('up{status="g"} == 0')).map((p) => p.label)).toEqual([
      'status',
    ])
    const recorded: CollectedExpression[] = [
      {
        expr: 'sum(app_up)',
        promql: 'sum(app_up)',
        source: 'r',
        file: 'alerts',
        kind: 'record',
        defines: 'app:up:sum',
      },
      ...one('app:up:sum > 0'),
    ]
    expect(checkAgainstExposition(text, recorded)).toEqual([])
  })

  it("accepts a real registry's exposition with every labelled series set", async () => {
    const metrics = new Metrics(new Registry())
    for (const metric of (await metrics.registry.getMetricsAsJSON()).map(
      (m) => metrics.registry.getSingleMetric(m.name) as unknown
    )) {
      const names = (metric as unknown as { labelNames?: string[] }).labelNames ?? []
      if (names.length === 0) continue
      const labels = Object.fromEntries(names.map((n) => [n, 'x']))
      if (metric instanceof Counter) metric.inc(labels)
      else if (metric instanceof Gauge) metric.set(labels, 1)
      else if (metric instanceof Histogram || metric instanceof Summary)
        metric.observe(labels, 0.01)
      else if (metric instanceof LeanCounter) metric.series(...names.map(() => 'x')).inc()
      else if (metric instanceof LeanHistogram) metric.series(...names.map(() => 'x')).observe(0.01)
      else throw new Error(`unknown metric type: ${String(metric)}`)
    }
    const problems = checkAgainstExposition(
      await metrics.registry.metrics(),
      collectExpressions(),
      { requireSamples: true }
    )
    expect(problems, formatProblems(problems)).toEqual([])
  })
})

// ---------------------------------------------------------------------------------------------

describe('static: the dashboard and the alerts use only what metrics.ts declares', () => {
  it('every metric and label exists, with the right counter/gauge functions', async () => {
    const catalog = await catalogFromRegistry(new Metrics(new Registry()).registry)
    const problems = checkAgainstCatalog(catalog, collectExpressions())
    expect(problems, formatProblems(problems)).toEqual([])
  })

  it('the dashboard shows every gateway metric', async () => {
    const used = new Set(
      collectExpressions()
        .filter((e) => e.file === 'dashboard')
        .flatMap((e) =>
          extractSelectors(e.promql).map((s) => s.metric.replace(/_(bucket|sum|count)$/, ''))
        )
    )
    const unused = [...(await declaredGatewayMetrics()).keys()].filter((name) => !used.has(name))
    expect(unused).toEqual([])
  })

  it('an unknown metric or label would be caught', async () => {
    const catalog = await catalogFromRegistry(new Metrics(new Registry()).registry)
    const problems = checkAgainstCatalog(
      catalog,
      one(
        'sum by (route) (rate(immich_gateway_upstream_errors_total[5m])) + immich_gateway_cache_hits_total'
      )
    )
    expect(problems.map((p) => [p.kind, p.metric, p.label])).toEqual([
      ['missing-label', 'immich_gateway_upstream_errors_total', 'route'],
      ['missing-metric', 'immich_gateway_cache_hits_total', undefined],
    ])
  })
})

describe('dashboard', () => {
  const templating = (dashboard.templating as { list: Json[] }).list
  const variable = (name: string): Json | undefined => templating.find((v) => v.name === name)

  it('is importable: __inputs, datasource variable, schema version, unique ids, grid within 24 columns', () => {
    expect(dashboard.__inputs).toEqual([
      expect.objectContaining({
        name: 'DS_PROMETHEUS',
        type: 'datasource',
        pluginId: 'prometheus',
      }),
    ])
    expect(variable('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' })
    expect(dashboard.schemaVersion).toBe(39)
    expect(dashboard.uid).toBe('immich-gateway')
    const panels = allPanels()
    const ids = panels.map((p) => p.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const p of panels) {
      const g = p.gridPos as { x: number; y: number; w: number; h: number }
      expect(g.x + g.w, String(p.title)).toBeLessThanOrEqual(24)
      expect(g.h, String(p.title)).toBeGreaterThan(0)
    }
  })

  it('uses ${datasource} everywhere', () => {
    const ds = { type: 'prometheus', uid: '${datasource}' }
    for (const p of allPanels().filter((p) => p.type !== 'row')) {
      expect(p.datasource, String(p.title)).toEqual(ds)
      for (const t of p.targets as Json[]) expect(t.datasource, String(p.title)).toEqual(ds)
    }
    for (const v of templating.filter((v) => v.type === 'query')) expect(v.datasource).toEqual(ds)
    const text = JSON.stringify(dashboard)
    expect(text).not.toMatch(/"uid":\s*"(?!\$\{datasource\}|-- Grafana --|immich-gateway")/)
  })

  it('has client and route variables from label_values, multi with All', () => {
    for (const name of ['client', 'route']) {
      const v = variable(name)!
      expect(v, name).toMatchObject({
        type: 'query',
        multi: true,
        includeAll: true,
        allValue: '.*',
      })
      const query = (v.query as { query: string }).query
      expect(query).toMatch(
        new RegExp(`^label_values\\(immich_gateway_requests_total.*, ${name}\\)$`)
      )
      expect(v.definition).toBe(query)
    }
  })

  it('has job and instance variables, and every gateway series is scoped by them', () => {
    expect(templating.map((v) => v.name)).toEqual([
      'datasource',
      'job',
      'instance',
      'client',
      'route',
    ])
    for (const name of ['job', 'instance']) {
      expect(variable(name), name).toMatchObject({
        type: 'query',
        multi: true,
        includeAll: true,
        allValue: '.*',
      })
    }
    expect((variable('instance')!.query as { query: string }).query).toContain('job=~"$job"')
    const exprs = [
      ...collectExpressions()
        .filter((e) => e.file === 'dashboard' && e.kind === 'target')
        .map((e) => e.expr),
    ]
    expect(exprs.length).toBeGreaterThan(50)
    for (const expr of exprs) {
      for (const m of expr.matchAll(/immich_gateway_[a-z0-9_]+(\{[^}]*\})?/g)) {
        expect(m[1] ?? '', expr).toContain('job=~"$job", instance=~"$instance"')
      }
    }
  })

  it('has every stat panel answer with a number even without traffic (or vector(), or a series present from the start)', async () => {
    const fresh = await catalogFromRegistry(new Metrics(new Registry()).registry)
    for (const panel of allPanels().filter((p) => p.type === 'stat')) {
      for (const t of panel.targets as Json[]) {
        const expr = String(t.expr)
        if (/\bor vector\(-?\d+\)\s*$/.test(expr)) continue
        // Otherwise only series a fresh gateway exports (unlabelled, or labelled and initialised).
        for (const use of extractSelectors(substituteGrafanaVariables(expr))) {
          const info = fresh.get(use.metric)
          expect(info?.labelsKnown, `${String(panel.title)}: ${use.metric}`).toBe(true)
        }
      }
    }
  })

  it('matches multi-value variables with =~ only, and uses $__rate_interval / $__range for every window', () => {
    for (const e of collectExpressions().filter((e) => e.file === 'dashboard')) {
      expect(e.expr, e.source).not.toMatch(/\w\s*!?=\s*"[^"]*\$\{?(client|route)\b/) // = or != with a multi-value variable
      expect(e.expr, e.source).not.toMatch(/\[\s*\d+[smhdwy]\s*\]/)
      if (/\brate\(|increase\(|changes\(/.test(e.expr))
        expect(e.expr, e.source).toMatch(/\$__rate_interval|\$__range/)
    }
  })

  it('has the requested rows', () => {
    const rows = allPanels()
      .filter((p) => p.type === 'row')
      .map((p) => p.title)
    expect(rows).toEqual([
      'Overview',
      'Traffic',
      'Errors',
      'Latency',
      'Thumbnail cache',
      'Refusals and security',
      'Legacy API',
      'Uploads and websockets',
      'Client types',
      'Redis and rate-limit store',
      'Process',
    ])
  })
})

describe('alert rules and scrape config', () => {
  const rules = alerts.groups.flatMap((g) => g.rules)

  it('every rule has expr, for, severity, summary and description; names are unique', () => {
    for (const r of rules) {
      expect(typeof r.alert, JSON.stringify(r)).toBe('string')
      expect(String(r.expr).trim()).not.toBe('')
      expect(String(r.for)).toMatch(/^\d+[smh]$/)
      expect(['critical', 'warning', 'info']).toContain((r.labels as Json).severity)
      expect((r.annotations as Json).summary).toBeTruthy()
      expect((r.annotations as Json).description).toBeTruthy()
    }
    const names = rules.map((r) => r.alert)
    expect(new Set(names).size).toBe(names.length)
  })

  it('covers the requested conditions', () => {
    const uses = (name: string): string[] =>
      rules.filter((r) => String(r.expr).includes(name)).map((r) => String(r.alert))
    expect(uses('immich_gateway_upstream_up')).toEqual(['ImmichUpstreamDown'])
    expect(uses('immich_gateway_upstream_breaker_transitions_total')).toHaveLength(1)
    expect(uses('immich_gateway_upstream_errors_total').length).toBeGreaterThanOrEqual(1)
    expect(uses('status=~"5.."').length).toBeGreaterThanOrEqual(1)
    expect(uses('immich_gateway_login_blocked_total')).toHaveLength(1)
    expect(uses('immich_gateway_login_failures_total')).toHaveLength(1)
    expect(uses('immich_gateway_redis_up')).toHaveLength(1)
    expect(uses('immich_gateway_ratelimit_insurance_active')).toHaveLength(1)
    expect(
      rules.filter(
        (r) =>
          String(r.expr).includes('cache_requests_total') && String(r.expr).includes('offset 1h')
      )
    ).toHaveLength(1)
  })

  it('prometheus.yml scrapes the metrics listener under the job the alerts match, and loads the rules', () => {
    const config = parseYaml(readFileSync(PROMETHEUS_YML, 'utf8')) as {
      rule_files: string[]
      scrape_configs: Array<{
        job_name: string
        metrics_path: string
        static_configs: Array<{ targets: string[] }>
      }>
    }
    expect(config.rule_files).toContain('alerts.yaml')
    const job = config.scrape_configs.find((j) => j.job_name === 'immich-gateway')!
    expect(job.metrics_path).toBe('/metrics')
    expect(job.static_configs[0]!.targets).toEqual(['127.0.0.1:9464'])
    const jobs = new Set(
      [...JSON.stringify(alerts).matchAll(/job=\\"([^\\]+)\\"/g)].map((m) => m[1])
    )
    expect([...jobs]).toEqual(['immich-gateway'])
  })
})

describe('docs/metrics.md, the metrics reference', () => {
  it.each([[METRICS_MD, '## Gateway metrics']])(
    '%s lists every gateway metric with its type and labels, as declared',
    async (file, heading) => {
      const md = readFileSync(file, 'utf8')
      const section = md.split(heading)[1]!.split('\n#')[0]!
      const rows = new Map<string, { type: string; labels: string[] }>()
      for (const m of section.matchAll(/^\| `([a-z_]+)` \| (\w+) \| ([^|]*) \|/gm)) {
        const labels = [...m[3]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!)
        rows.set(m[1]!, { type: m[2]!, labels })
      }
      expect(rows).toEqual(await declaredGatewayMetrics())
    }
  )

  it('lists only process metrics that exist, with their labels', async () => {
    const catalog = await catalogFromRegistry(new Metrics(new Registry()).registry)
    const section = readFileSync(METRICS_MD, 'utf8')
      .split('## Node process metrics')[1]!
      .split('\n## ')[0]!
    for (const m of section.matchAll(/^\| `([a-z_0-9]+)` \| (\w+) \| ([^|]*) \|/gm)) {
      const name = m[2] === 'histogram' ? `${m[1]}_count` : m[1]!
      const info = catalog.get(name)
      expect(info, m[1]).toBeDefined()
      expect(info!.type).toBe(m[2])
      expect([...info!.labels].sort()).toEqual(
        [...m[3]!.matchAll(/`([a-z_]+)`/g)].map((l) => l[1]!).sort()
      )
    }
  })
})
