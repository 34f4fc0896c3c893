import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createServer } from 'node:http'
import type { MiddlewareHandler } from 'hono'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { Registry } from 'prom-client'
import { buildPolicies } from '../policies/index.js'
import type { GatewayConfig } from './config/schema.js'
import { createConsoleHook, type ConsoleHook } from './console/mount.js'
import type { Deps } from './deps.js'
import type { Env } from './env.js'
import { createLogger } from './observability/logging.js'
import { Metrics } from './observability/metrics.js'
import { catalogueFromRoutes } from './auth/scopes.js'
import { compileRouteTable, loadRouteTable } from './routing/route-table.js'
import { packageFile } from './paths.js'
import { mainServerFactory, type MainServerFactory } from './server/tls.js'
import { createForwarder } from './upstream/forward.js'
import { createApp } from './pipeline.js'
import { createNodeServer } from './server/listener.js'
import { createUpstreamHealth } from './upstream/health.js'

export interface GatewayOptions {
  /** Tests pass their own logger (to capture lines) and registry. */
  logger?: Logger
  registry?: Registry
  routesFile?: string
  /** Stock Hono middleware to run after observe, before the phases (src/pipeline.ts). */
  middleware?: MiddlewareHandler<Env>[]
}

export interface Gateway {
  server: Server
  metricsServer?: Server
  deps: Deps
  url: string
  metricsUrl?: string
  /** Stops accepting, lets in-flight requests finish (up to the grace period), releases everything. */
  close(): Promise<void>
}

export const DEFAULT_ROUTES_FILE = packageFile('config/immich-routes.json')

/** Builds and starts the gateway: deps, policies, app, main listener, metrics listener. */
export async function startGateway(
  config: GatewayConfig,
  options: GatewayOptions = {}
): Promise<Gateway> {
  const logger = options.logger ?? createLogger(config.logging.level)
  const metrics = new Metrics(options.registry ?? new Registry())
  const closers: (() => void | Promise<void>)[] = []
  const health = createUpstreamHealth(config, { metrics, logger })
  closers.push(() => health.close())
  const forwarder = createForwarder(
    config,
    {
      onHeaders: (c, seconds) =>
        metrics.upstreamDuration
          .series(c.get('upstream').method, c.get('routeLabel'))
          .observe(seconds),
      onError: (kind) => metrics.upstreamErrors.inc({ kind }),
    },
    health
  )
  closers.push(() => forwarder.close())
  let redis: Redis | undefined
  // Without Redis the gauge is absent rather than a constant 0 that would look like an outage.
  if (!config.redis.url) metrics.registry.removeSingleMetric('immich_gateway_redis_up')
  if (config.redis.url) {
    // No offline queue: a command while Redis is down fails at once and the caller falls back.
    // Loaded only when configured: ioredis alone is ~15 MB of resident memory.
    const { Redis } = await import('ioredis')
    // Auto-pipelining: the commands of every request in one event-loop turn go out in one write and
    // come back in one read, instead of a syscall pair per limiter or cache call.
    redis = new Redis(config.redis.url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      lazyConnect: false,
      enableAutoPipelining: true,
    })
    redis.on('error', () => {})
    redis.on('ready', () => metrics.redisUp.set(1))
    redis.on('close', () => metrics.redisUp.set(0))
    metrics.redisUp.set(0)
    closers.push(() => void redis!.disconnect())
  }
  const releaseAll = async () => {
    for (const fn of closers.reverse()) await fn()
  }
  let deps: Deps
  let policies
  let consoleHook: ConsoleHook | undefined
  try {
    const table = loadRouteTable(options.routesFile ?? DEFAULT_ROUTES_FILE)
    const routes = compileRouteTable(table)
    deps = {
      logger,
      metrics,
      forwarder,
      routes,
      catalogue: catalogueFromRoutes(table),
      redis,
      health,
    }
    policies = await buildPolicies(config, deps, (fn) => closers.push(fn))
    consoleHook = createConsoleHook(config, deps, (fn) => closers.push(fn))
  } catch (err) {
    // A policy that cannot start stops the boot; what was opened so far is released.
    await releaseAll()
    throw err
  }
  let main: MainServerFactory
  try {
    main = await mainServerFactory(config, deps)
  } catch (err) {
    await releaseAll()
    throw err
  }
  closers.push(() => main.stop())
  const server = createNodeServer(
    createApp(config, deps, policies, options.middleware, consoleHook),
    config,
    metrics,
    main
  )
  main.attach(server)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(config.server.port, config.server.host, () => resolve())
  })
  // Probing starts once the boot's CPU burst is over (a probe timed out by it would open the breaker).
  health.start()
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `${main.protocol}://${host === '0.0.0.0' ? '127.0.0.1' : host}:${address.port}`

  let metricsServer: Server | undefined
  let metricsUrl: string | undefined
  if (config.metrics.port !== undefined) {
    metricsServer = createServer(async (req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'content-type': metrics.registry.contentType })
      res.end(await metrics.registry.metrics())
    })
    await new Promise<void>((resolve, reject) => {
      metricsServer!.once('error', reject)
      metricsServer!.listen(config.metrics.port, config.metrics.host, () => resolve())
    })
    const m = metricsServer.address() as AddressInfo
    metricsUrl = `http://${m.family === 'IPv6' ? `[${m.address}]` : m.address}:${m.port}/metrics`
  }

  async function close(): Promise<void> {
    const grace = config.server.shutdownGraceSeconds * 1000
    const drained = new Promise<void>((resolve) => server.close(() => resolve()))
    // Keep-alive connections go idle one by one as their requests finish: close each as it does.
    const reaper = setInterval(() => main.closeIdle(), 50)
    main.closeIdle()
    const timer = setTimeout(() => main.closeAll(), grace)
    await drained
    clearInterval(reaper)
    clearTimeout(timer)
    metricsServer?.close()
    await releaseAll()
  }

  return { server, metricsServer, deps, url, metricsUrl, close }
}
