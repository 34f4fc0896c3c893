/**
 * The dashboard's stat panels as Grafana would show them: a real Prometheus (Debian's `prometheus`
 * package, like promtool) scrapes a real gateway in front of a healthy fake Immich, with no client
 * traffic, and every stat panel's query must come back with a number (0 rather than "No data").
 * The alert rules are loaded too, so a rule Prometheus refuses fails here.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { waitFor } from '../policies/rate-limit/support.js'
import { freePort } from '../support/http.js'
import { startStack, type Stack } from '../support/stack.js'
import { ALERTS_PATH, DASHBOARD_PATH } from './promql.js'

const available = await new Promise<boolean>((resolve) => {
  const child = spawn('prometheus', ['--version'], { stdio: 'ignore' })
  child.on('error', () => resolve(false))
  child.on('exit', (code) => resolve(code === 0))
})
if (!available && process.env.CI_REQUIRE_PROMTOOL)
  throw new Error('prometheus is required (Debian package prometheus) but not installed')

type Json = Record<string, unknown>

/** Every stat panel's queries, with Grafana's variables as an "All" selection would set them. */
function statQueries(): { title: string; expr: string }[] {
  const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Json
  const out: { title: string; expr: string }[] = []
  const visit = (p: Json): void => {
    if (p.type === 'stat')
      for (const t of p.targets as Json[])
        out.push({
          title: String(p.title),
          expr: String(t.expr)
            .replaceAll('$__rate_interval', '5s')
            .replaceAll('$__range', '1m')
            .replace(/\$\{?[a-z]+\}?/g, '.*'),
        })
    if (Array.isArray(p.panels)) (p.panels as Json[]).forEach(visit)
  }
  ;(dashboard.panels as Json[]).forEach(visit)
  return out
}

describe.skipIf(!available)('a real Prometheus scraping a healthy gateway without traffic', () => {
  let stack: Stack
  let prometheus: ChildProcess
  let dir: string
  let api: string
  const logs: string[] = []

  async function query(expr: string): Promise<Array<{ metric: Json; value: [number, string] }>> {
    const res = await request(`${api}/api/v1/query?query=${encodeURIComponent(expr)}`)
    const body = (await res.body.json()) as { status: string; data: { result: unknown } }
    expect(body.status, expr).toBe('success')
    return body.data.result as Array<{ metric: Json; value: [number, string] }>
  }

  beforeAll(async () => {
    stack = await startStack({ metrics: { port: 0 } })
    dir = await mkdtemp(join(tmpdir(), 'igw-prometheus-'))
    const port = await freePort()
    api = `http://127.0.0.1:${port}`
    const target = new URL(stack.gateway.metricsUrl!).host
    await writeFile(
      join(dir, 'prometheus.yml'),
      [
        'global: { scrape_interval: 1s, evaluation_interval: 1s }',
        `rule_files: ['${ALERTS_PATH}']`,
        'scrape_configs:',
        '  - job_name: immich-gateway',
        `    static_configs: [{ targets: ['${target}'] }]`,
        '',
      ].join('\n')
    )
    prometheus = spawn(
      'prometheus',
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] }
    )
    prometheus.stderr!.on('data', (chunk: Buffer) => logs.push(chunk.toString()))
    await waitFor(
      async () => {
        const res = await request(`${api}/-/ready`).catch(() => undefined)
        await res?.body.dump()
        return res?.statusCode === 200
      },
      20_000,
      'prometheus ready'
    )
    // Enough scrapes for a 5 s rate window.
    await waitFor(
      async () =>
        Number((await query('count_over_time(up{job="immich-gateway"}[10s])'))[0]?.value[1]) >= 6,
      30_000,
      'six scrapes'
    )
  }, 60_000)

  afterAll(async () => {
    prometheus?.kill('SIGTERM')
    if (prometheus && prometheus.exitCode === null)
      await new Promise((resolve) => prometheus.once('exit', resolve))
    await stack?.close()
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  it('loads the alert rules', async () => {
    const res = await request(`${api}/api/v1/rules`)
    const body = (await res.body.json()) as {
      data: { groups: Array<{ rules: Array<{ name: string; health: string }> }> }
    }
    const rules = body.data.groups.flatMap((g) => g.rules)
    expect(rules.map((r) => r.name)).toContain('ImmichUpstreamDown')
    for (const r of rules) expect(r.health, r.name).not.toBe('err')
    expect(logs.join('')).not.toMatch(/level=error/)
  })

  it('answers every stat panel with a number, and the healthy values', async () => {
    const queries = statQueries()
    expect(queries.length).toBeGreaterThanOrEqual(14)
    const values = new Map<string, number>()
    for (const { title, expr } of queries) {
      const result = await query(expr)
      expect(result.length, `${title}: ${expr}`).toBeGreaterThan(0)
      const value = Number(result[0]!.value[1])
      expect(Number.isNaN(value), `${title}: ${expr} = ${result[0]!.value[1]}`).toBe(false)
      values.set(title, value)
    }
    expect(values.get('Immich')).toBe(1)
    expect(values.get('Breaker')).toBe(0)
    expect(values.get('5xx ratio')).toBe(0)
    expect(values.get('Upstream errors / s')).toBe(0)
    expect(values.get('Redis')).toBe(-1) // no Redis configured: shown as "not configured"
    expect(values.get('Stale answers in range')).toBe(0)
  })
})
