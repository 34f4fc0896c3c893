import type { Redis } from 'ioredis'
import { resolve } from 'node:path'
import { keysFileFor } from '../../src/auth/keys-file.js'
import { DEFAULT_KEYS_FILE } from '../../src/config/load.js'
import {
  FileUsageStore,
  RedisUsageStore,
  usageStateFile,
  type UsageStore,
} from '../../src/auth/usage.js'
import type { GatewayConfig } from '../../src/config/schema.js'
import { scopesOptions, type ScopesOptions } from './schema.js'

/** The keys file the api-key-auth policy reads (its option, else the resolved environment's, else the default). */
function keysFileOf(config: GatewayConfig): string {
  const raw = config.policies['api-key-auth']
  const keysFile =
    raw && typeof raw === 'object' ? (raw as { keysFile?: unknown }).keysFile : undefined
  return (
    keysFileFor(typeof keysFile === 'string' ? keysFile : undefined, config.environment)?.file ??
    resolve(DEFAULT_KEYS_FILE)
  )
}

/**
 * Where learned usage lives for this configuration: Redis when one is given, else the state file
 * (the `learn.stateFile` option, or beside `keysFile` / the configured keys file). The gateway and
 * the CLI (`keys usage`, `keys tighten`) both open it through here, so they agree.
 */
export function usageStoreFor(
  config: GatewayConfig,
  redis: Redis | undefined,
  options: { keysFile?: string; ownsRedis?: boolean } = {}
): UsageStore {
  const raw = config.policies.scopes
  const learn: ScopesOptions['learn'] = scopesOptions.parse(
    raw && typeof raw === 'object' ? raw : {}
  ).learn
  if (redis) return new RedisUsageStore(redis, learn.redisKeyPrefix, options.ownsRedis)
  return new FileUsageStore(
    learn.stateFile ?? usageStateFile(options.keysFile ?? keysFileOf(config))
  )
}
