/**
 * The alert rules evaluated by Prometheus' own engine: `promtool check rules` and the rule unit tests
 * in docs/prometheus/alerts.test.yaml (`promtool test rules`). promtool comes with Debian's
 * `prometheus` package (.ci/run installs it); without it these tests are skipped, except in CI.
 */
import { execFile } from 'node:child_process'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { ALERTS_PATH } from './promql.js'

const run = promisify(execFile)
const TESTS_PATH = join(dirname(ALERTS_PATH), 'alerts.test.yaml')

async function promtool(...args: string[]): Promise<{ ok: boolean; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: dirname(ALERTS_PATH) })
    return { ok: true, output: stdout + stderr }
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; code?: unknown }
    if (e.code === 'ENOENT') throw err
    return { ok: false, output: `${e.stdout ?? ''}${e.stderr ?? ''}` }
  }
}

const available = await run('promtool', ['--version']).then(
  () => true,
  () => false
)
if (!available && process.env.CI_REQUIRE_PROMTOOL)
  throw new Error('promtool is required (Debian package prometheus) but not installed')

describe.skipIf(!available)('promtool', () => {
  it('accepts the rules', async () => {
    const { ok, output } = await promtool('check', 'rules', ALERTS_PATH)
    expect(ok, output).toBe(true)
  })

  it('passes the rule unit tests: ImmichUpstreamDown fires within 90 s of an outage without traffic', async () => {
    const { ok, output } = await promtool('test', 'rules', TESTS_PATH)
    expect(ok, output).toBe(true)
  })

  it('would catch a slower rule (the unit tests are not vacuous)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'igw-promtool-'))
    try {
      const rules = await readFile(ALERTS_PATH, 'utf8')
      const slow = rules.replace(
        /(expr: immich_gateway_upstream_up\{job="immich-gateway"\} == 0\n\s+for: )30s/,
        '$11m'
      )
      expect(slow).not.toBe(rules)
      await writeFile(join(dir, 'alerts.yaml'), slow)
      await copyFile(TESTS_PATH, join(dir, 'alerts.test.yaml'))
      const { ok, output } = await promtool('test', 'rules', join(dir, 'alerts.test.yaml'))
      expect(ok).toBe(false)
      expect(output).toContain('ImmichUpstreamDown')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
