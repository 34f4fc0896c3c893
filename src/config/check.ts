import pino from 'pino'
import { Registry } from 'prom-client'
import { buildPolicies } from '../../policies/index.js'
import type { Deps } from '../deps.js'
import { Metrics } from '../observability/metrics.js'
import { packageFile } from '../paths.js'
import { compileRouteTable, loadRouteTable } from '../routing/route-table.js'
import { createForwarder } from '../upstream/forward.js'
import { createUpstreamHealth } from '../upstream/health.js'
import type { GatewayConfig } from './schema.js'

/**
 * Everything the gateway checks at start, without starting it: every policy is built as at boot
 * (options, keys file, presets, legacy table, route classes, issuer keys and env vars) against an
 * in-memory store and an unused upstream agent, then released. `config check` and the start see the
 * same errors (a ConfigError naming the field), so no configuration passes one and fails the other.
 */
export async function checkConfig(config: GatewayConfig, routesFile?: string): Promise<void> {
  const closers: (() => void | Promise<void>)[] = []
  const logger = pino({ level: 'silent' })
  const metrics = new Metrics(new Registry())
  const health = createUpstreamHealth(config, { metrics, logger }) // never started: no probe
  const forwarder = createForwarder(config, {}, health)
  closers.push(() => forwarder.close())
  const deps: Deps = {
    logger,
    metrics,
    health,
    forwarder,
    routes: compileRouteTable(
      loadRouteTable(routesFile ?? packageFile('config/immich-routes.json'))
    ),
    redis: undefined,
  }
  try {
    await buildPolicies(config, deps, (fn) => closers.push(fn))
  } finally {
    for (const close of closers.reverse()) await close()
  }
}
