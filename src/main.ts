import { ConfigError, loadConfig, type LoadFlags } from './config/load.js'
import { startGateway } from './gateway.js'
import { isEntryPoint } from './paths.js'

/**
 * Config → gateway → serve; SIGTERM/SIGINT drain in-flight requests and exit. A bad configuration
 * (the config, the keys file, presets, route classes...) exits 2 naming the field; anything else
 * that stops the start exits 1.
 */
export async function serve(flags: LoadFlags = {}): Promise<void> {
  try {
    await start(flags)
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`immich-gateway: invalid configuration\n${err.message}\n`)
      process.exit(2)
    }
    process.stderr.write(
      `immich-gateway: cannot start: ${(err as Error)?.message ?? String(err)}\n`
    )
    process.exit(1)
  }
}

async function start(flags: LoadFlags): Promise<void> {
  const config = loadConfig(undefined, flags)
  const gateway = await startGateway(config)
  gateway.deps.logger.info(
    {
      url: gateway.url,
      upstream: config.upstream.url,
      metrics: gateway.metricsUrl ?? 'off',
      redis: config.redis.url ? 'on' : 'off',
    },
    'immich-gateway listening'
  )
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) return
    stopping = true
    gateway.deps.logger.info({ signal }, 'shutting down: draining in-flight requests')
    gateway.close().then(
      () => process.exit(0),
      () => process.exit(1)
    )
  }
  process.on('SIGTERM', () => stop('SIGTERM'))
  process.on('SIGINT', () => stop('SIGINT'))
}

if (isEntryPoint(import.meta.url)) void serve()
