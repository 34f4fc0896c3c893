/**
 * docs/compose/ is wired to what the gateway really reads: every variable the gateway service sets is
 * one src/config/load.ts reads (and the values load), ports line up between the gateway, the image,
 * Immich's old port and Prometheus, every file mounted from this repository exists, and the Grafana
 * provisioning leaves no placeholder of the shipped dashboard literal.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse, type Tags } from 'yaml'
import { describe, expect, it } from 'vitest'
import { KNOWN_ENV, loadConfig } from '../../src/config/load.js'
import { parseDockerfile } from './dockerfile.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const SOURCE = '${IMMICH_GATEWAY_SOURCE:-./immich-gateway}'

/** Compose's `!reset` tag (Compose 2.24+): an empty value that replaces the base file's. */
const customTags: Tags = [
  { tag: '!reset', collection: 'seq', resolve: () => [] } as never,
  { tag: '!reset', collection: 'map', resolve: () => ({}) } as never,
]

interface Service {
  image?: string
  build?: string
  ports?: string[]
  environment?: Record<string, string>
  volumes?: string[]
  secrets?: string[]
  command?: string[]
  depends_on?: unknown
}
interface ComposeFile {
  services: Record<string, Service>
  volumes?: Record<string, unknown>
  secrets?: Record<string, { file: string }>
}

const read = (name: string) =>
  parse(readFileSync(join(ROOT, 'docs/compose', name), 'utf8'), { customTags }) as ComposeFile
const gatewayFile = read('gateway.yml')
const monitoring = read('monitoring.yml')
const gateway = gatewayFile.services['immich-gateway']!
const image = Object.assign(
  {},
  ...(parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
    .at(-1)!
    .filter((i) => i.op === 'ENV')
    .map((i) => Object.fromEntries(i.args.split(' ').map((p) => p.split('=')))) as object[])
) as Record<string, string>

/** `source:target[:ro]` → both; a repository path is mapped to this checkout. */
function mount(spec: string): { source: string; target: string; repo?: string } {
  if (spec.startsWith(`${SOURCE}/`)) {
    const [path, target] = spec.slice(SOURCE.length + 1).split(':') as [string, string]
    return { source: `${SOURCE}/${path}`, target, repo: join(ROOT, path) }
  }
  const [source, target] = spec.split(':') as [string, string]
  return { source, target }
}

describe('docs/compose/gateway.yml: the gateway in front of Immich', () => {
  it('sets only variables the config loader reads, with values that load', () => {
    const env = gateway.environment!
    for (const name of Object.keys(env)) expect(KNOWN_ENV, name).toContain(name)
    const config = loadConfig(env)
    expect(config.upstream.url).toBe('http://immich-server:2283')
    expect(config.redis.url).toBe('redis://redis:6379/5')
    expect(config.metrics).toMatchObject({ port: 9464, host: '0.0.0.0' })
  })

  it('publishes 2283 (as immich-server did) on the port the gateway listens on; immich-server publishes nothing', () => {
    expect(gateway.ports).toEqual([`2283:${gateway.environment!.PORT}`])
    expect(gateway.environment!.PORT).toBe(image.PORT)
    expect(gatewayFile.services['immich-server']!.ports).toEqual([])
    expect(gateway.depends_on).toEqual(expect.arrayContaining(['immich-server', 'redis']))
  })

  it('keeps keys and secrets files in a volume at the image keys path; the secret is mounted', () => {
    const data = gateway.volumes!.map(mount).find((m) => m.target === '/data')
    expect(data?.source).toBe('gateway-data')
    expect(Object.keys(gatewayFile.volumes ?? {})).toContain('gateway-data')
    expect(image.GATEWAY_KEYS_FILE).toBe('/data/keys.yaml')
    expect(gateway.secrets).toEqual(Object.keys(gatewayFile.secrets ?? {}))
    expect(gateway.build).toBe(SOURCE)
    expect(existsSync(join(ROOT, 'Dockerfile'))).toBe(true)
  })
})

describe('docs/compose/monitoring.yml: Prometheus and Grafana', () => {
  const services = monitoring.services
  const mounts = Object.values(services).flatMap((s) => (s.volumes ?? []).map(mount))

  it('mounts only files that exist in this repository (or named volumes)', () => {
    for (const m of mounts) {
      if (m.repo) expect(existsSync(m.repo), m.source).toBe(true)
      else expect(Object.keys(monitoring.volumes ?? {}), m.source).toContain(m.source)
    }
  })

  it('Prometheus scrapes the gateway service on its METRICS_PORT and loads the shipped rules', () => {
    const config = mounts.find((m) => m.target === '/etc/prometheus/prometheus.yml')!
    const prometheus = parse(readFileSync(config.repo!, 'utf8')) as {
      rule_files: string[]
      scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[]
    }
    const job = prometheus.scrape_configs.find((j) => j.job_name === 'immich-gateway')!
    expect(job.static_configs[0]!.targets).toEqual([
      `immich-gateway:${gateway.environment!.METRICS_PORT}`,
    ])
    const rules = mounts.find((m) => m.repo?.endsWith('docs/prometheus/alerts.yaml'))!
    expect(rules.target).toMatch(/^\/etc\/prometheus\/rules\/[^/]+\.yaml$/)
    expect(prometheus.rule_files).toEqual(['/etc/prometheus/rules/*.yaml'])
    const promtool = spawnSync('promtool', ['check', 'config', '--syntax-only', config.repo!], {
      encoding: 'utf8',
    })
    if (promtool.error === undefined)
      expect(promtool.status, promtool.stdout + promtool.stderr).toBe(0)
  })

  it('Grafana gets the data source and the dashboard with no placeholder left literal', () => {
    const grafana = services.grafana!
    const target = (suffix: string) =>
      grafana.volumes!.map(mount).find((m) => m.target.startsWith(suffix))!
    const datasources = parse(
      readFileSync(target('/etc/grafana/provisioning/datasources/').repo!, 'utf8')
    ) as { datasources: { uid: string; type: string; url: string }[] }
    const [source] = datasources.datasources
    expect(source).toMatchObject({ type: 'prometheus', url: 'http://prometheus:9090' })
    const provider = parse(
      readFileSync(target('/etc/grafana/provisioning/dashboards/').repo!, 'utf8')
    ) as { providers: { options: { path: string } }[] }
    expect(target('/var/lib/grafana/dashboards').target).toBe(provider.providers[0]!.options.path)

    // Run the init service's own command on the shipped dashboard.
    const init = services['grafana-dashboards']!
    const work = mkdtempSync(join(tmpdir(), 'igw-grafana-'))
    try {
      const src = init.volumes!.map(mount).find((m) => m.target === '/src')!
      const script = init
        .command![2]!.replace(/\$\$/g, '$')
        .replace(/\/src\//g, `${src.repo}/`)
        .replace(/\/dashboards\//g, `${work}/`)
      execFileSync('sh', ['-c', script])
      const text = readFileSync(join(work, 'immich-gateway.json'), 'utf8')
      expect(text).not.toContain('${DS_PROMETHEUS}')
      const dashboard = JSON.parse(text) as {
        templating: { list: { name: string; current: { value: unknown } }[] }
      }
      const variable = dashboard.templating.list.find((v) => v.name === 'datasource')!
      expect(variable.current.value).toBe(source!.uid)
    } finally {
      rmSync(work, { recursive: true, force: true })
    }
  })
})
