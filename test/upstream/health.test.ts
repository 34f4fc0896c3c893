/**
 * The breaker's state machine, driven by its real probe against a fake Immich that is stopped and
 * started on its port, and by the outcomes the forwarder reports.
 */
import pino from 'pino'
import { Registry } from 'prom-client'
import { afterEach, describe, expect, it } from 'vitest'
import { configSchema } from '../../src/config/schema.js'
import { Metrics } from '../../src/observability/metrics.js'
import { PASS, REFUSED, TRIAL, UpstreamHealth } from '../../src/upstream/health.js'
import { waitFor } from '../policies/rate-limit/support.js'
import { RestartableImmich } from '../support/outage.js'

const opened: { close(): Promise<void> }[] = []
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) await o.close()
})

async function setup(breaker: Record<string, unknown> = {}, intervalSeconds = 0.05) {
  const immich = await RestartableImmich.start()
  opened.push({ close: () => immich.stop() })
  const metrics = new Metrics(new Registry(), { processMetrics: false })
  const lines: string[] = []
  const logger = pino({ level: 'info' }, { write: (l: string) => lines.push(l) })
  const config = configSchema.parse({
    upstream: { url: immich.url, health: { intervalSeconds, timeoutSeconds: 1 }, breaker },
  })
  const health = new UpstreamHealth(config, { metrics, logger })
  opened.push(health)
  const transitions = async (to: string) =>
    (await metrics.breakerTransitions.get()).values.find((v) => v.labels.to === to)?.value
  return { immich, health, metrics, lines, transitions }
}

describe('UpstreamHealth', () => {
  it('opens after failureThreshold consecutive connect failures; a success or a reset does not count', async () => {
    const { health, transitions, lines } = await setup({ failureThreshold: 3 })
    for (let i = 0; i < 2; i++) health.failed(health.admit(), 'refused')
    health.succeeded(health.admit())
    for (let i = 0; i < 2; i++) health.failed(health.admit(), 'timeout')
    health.failed(health.admit(), 'reset')
    expect(health.breakerState).toBe('closed')
    health.failed(health.admit(), 'dns')
    expect(health.breakerState).toBe('open')
    expect(health.admit()).toBe(REFUSED)
    const refusal = health.refusal()
    expect([refusal.status, refusal.headers['retry-after']]).toEqual([503, '1'])
    expect(await transitions('open')).toBe(1)
    expect(lines.join('')).toContain('3 consecutive failures (dns)')
  })

  it('probe down → open at once; up → half-open with one trial; trial failure reopens, success closes', async () => {
    const { immich, health, metrics } = await setup({}, 0.3)
    await immich.stop()
    health.start()
    await waitFor(() => health.breakerState === 'open', 3000, 'open')
    expect((await metrics.upstreamUp.get()).values[0]!.value).toBe(0)
    await immich.start()
    await waitFor(() => health.breakerState === 'half_open', 3000, 'half-open')
    expect((await metrics.upstreamUp.get()).values[0]!.value).toBe(1)
    const trial = health.admit()
    expect(trial).toBe(TRIAL)
    expect(health.admit()).toBe(REFUSED)
    expect(health.refusing).toBe(true)
    health.released(trial) // the client left: the next request is the trial
    const second = health.admit()
    expect(second).toBe(TRIAL)
    health.failed(second, 'refused')
    expect(health.breakerState).toBe('open')
    await waitFor(() => health.breakerState === 'half_open', 3000, 'half-open again')
    health.succeeded(health.admit())
    expect(health.breakerState).toBe('closed')
    expect(health.admit()).toBe(PASS)
    expect((await metrics.breakerState.get()).values[0]!.value).toBe(0)
  })

  it('a second good probe closes a half-open breaker even with its trial still out (a long upload)', async () => {
    const { immich, health } = await setup({}, 0.2)
    await immich.stop()
    health.start()
    await waitFor(() => health.breakerState === 'open', 3000, 'open')
    await immich.start()
    await waitFor(() => health.breakerState === 'half_open', 3000, 'half-open')
    expect(health.admit()).toBe(TRIAL)
    await waitFor(() => health.breakerState === 'closed', 3000, 'closed')
  })

  it('disabled: probes and the gauge, but never refuses', async () => {
    const { immich, health } = await setup({ enabled: false })
    await immich.stop()
    health.start()
    expect(await health.readiness()).toEqual({ ok: false, detail: { upstream: 'refused' } })
    for (let i = 0; i < 10; i++) health.failed(health.admit(), 'refused')
    expect(health.admit()).toBe(PASS)
  })
})
