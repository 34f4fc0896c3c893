import { ConfigError, loadConfig } from './config/load.js'
import { startGateway } from './gateway.js'

/** Entry point: config → gateway → serve; SIGTERM/SIGINT drain in-flight requests and exit. */
async function main(): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`immich-gateway: invalid configuration\n${err.message}\n`)
      process.exit(2)
    }
    throw err
  }
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

main().catch((err: unknown) => {
  // A policy's boot-time check (keys file, presets, route classes...) is a configuration error too.
  if (err instanceof ConfigError) {
    process.stderr.write(`immich-gateway: invalid configuration\n${err.message}\n`)
    process.exit(2)
  }
  process.stderr.write(`immich-gateway: cannot start: ${(err as Error)?.message ?? String(err)}\n`)
  process.exit(1)
})
