// The gateway configurations the benchmark runs, one gateway process each. A variant whose feature
// is not registered in policies/index.ts yet is skipped with the reason.
import { createHash, randomBytes } from 'node:crypto'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { POLICIES } from '../policies/index.js'
import { configSchema } from '../src/config/schema.js'
import { BENCH_ALBUM_ID } from './album.js'

export interface GatewayVariant {
  name: string
  logLevel: 'warn' | 'info'
  /** Written as GATEWAY_CONFIG. */
  config: Record<string, unknown>
  redisUrl?: string
  env?: Record<string, string>
  /** The key clients of this variant present as `x-api-key`. */
  gatewayKey?: string
}

export type VariantOrSkip = GatewayVariant | { name: string; skip: string }

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

/** Every registered policy switched off: the bare forwarding path. */
function allOff(registered: string[]): Record<string, false> {
  return Object.fromEntries(registered.map((name) => [name, false]))
}

export async function gatewayVariants(): Promise<Map<string, VariantOrSkip>> {
  const registered = POLICIES.map((p) => p.name)
  const has = (name: string) => registered.includes(name)
  const missing = (...names: string[]) => names.filter((n) => !has(n))
  const out = new Map<string, VariantOrSkip>()
  const add = (v: VariantOrSkip) => out.set(v.name, v)

  add({ name: 'gateway', logLevel: 'warn', config: { policies: allOff(registered) } })
  add({ name: 'gateway-info', logLevel: 'info', config: { policies: allOff(registered) } })

  // A gateway client with a read scope; the gateway injects the fake Immich's admin key upstream.
  const gatewayKey = `igw_${randomBytes(32).toString('base64url')}`
  const keysFile = join(mkdtempSync(join(tmpdir(), 'igw-bench-keys-')), 'keys.yaml')
  // The same client bound to the benchmark album (bench/album.ts): issue #17's comparison.
  const boundKey = `igw_${randomBytes(32).toString('base64url')}`
  const entry = (name: string, key: string, extra = '') =>
    `  - name: ${name}\n    keyHash: "sha256:${createHash('sha256').update(key).digest('hex')}"\n` +
    `    scopes: [asset.view, asset.read, server.about]\n    upstreamKeyEnv: BENCH_IMMICH_KEY\n${extra}`
  writeFileSync(keysFile, `clients:\n${entry('bench', gatewayKey)}`)
  // The bound client in a file of its own: a build from before album binding (--alt-dist) refuses it.
  const albumKeysFile = join(dirname(keysFile), 'keys-albums.yaml')
  writeFileSync(
    albumKeysFile,
    `clients:\n${entry('bench', gatewayKey)}${entry('bench-bound', boundKey, `    albums: [${BENCH_ALBUM_ID}]\n`)}`
  )
  const keyEnv = { BENCH_IMMICH_KEY: 'fake-admin-key', GATEWAY_KEYS_FILE: keysFile }
  // Budgets no benchmark reaches: the limiter counts every request but never refuses one.
  const limiter = (prefix: string) => ({
    keyPrefix: prefix,
    classes: {
      thumbnails: { points: 1_000_000_000, durationSeconds: 60 },
      api: { points: 1_000_000_000, durationSeconds: 60 },
    },
  })
  const runId = randomBytes(4).toString('hex')
  const authPolicies = (prefix: string) => ({
    ...allOff(registered),
    'api-key-auth': {},
    scopes: {},
    'rate-limit': limiter(prefix),
  })

  const authNeeds = missing('api-key-auth', 'scopes', 'rate-limit')
  if (authNeeds.length) {
    const skip = `policy ${authNeeds.join(', ')} not registered in policies/index.ts`
    for (const name of ['gateway-auth-mem', 'gateway-auth-redis', 'gateway-cache'])
      add({ name, skip })
  } else {
    add({
      name: 'gateway-auth-mem',
      logLevel: 'warn',
      config: { policies: authPolicies(`igw-bench-mem-${runId}`) },
      env: keyEnv,
      gatewayKey,
    })
    add({
      name: 'gateway-auth-redis',
      logLevel: 'warn',
      config: { policies: authPolicies(`igw-bench-${runId}`) },
      redisUrl: REDIS_URL,
      env: keyEnv,
      gatewayKey,
    })
    if (!has('thumbnail-cache'))
      add({
        name: 'gateway-cache',
        skip: 'policy thumbnail-cache not registered in policies/index.ts',
      })
    else {
      add({
        name: 'gateway-cache',
        logLevel: 'warn',
        config: {
          policies: { ...authPolicies(`igw-bench-cache-${runId}`), 'thumbnail-cache': {} },
        },
        env: keyEnv,
        gatewayKey,
      })
      // The same gateway configuration (album-binding on), one with the bound key, one unbound.
      for (const [name, key] of [
        ['gateway-cache-bound', boundKey],
        ['gateway-cache-albums', gatewayKey],
      ] as const)
        add(
          has('album-binding')
            ? {
                name,
                logLevel: 'warn',
                config: {
                  policies: {
                    ...authPolicies(`igw-bench-${name}-${runId}`),
                    'thumbnail-cache': {},
                    'album-binding': {},
                  },
                },
                env: { ...keyEnv, GATEWAY_KEYS_FILE: albumKeysFile },
                gatewayKey: key,
              }
            : { name, skip: 'policy album-binding not registered in policies/index.ts' }
        )
    }
  }

  if (!has('legacy-routes'))
    add({
      name: 'gateway-legacy',
      skip: 'policy legacy-routes not registered in policies/index.ts',
    })
  else
    add({
      name: 'gateway-legacy',
      logLevel: 'warn',
      config: { policies: { ...allOff(registered), 'legacy-routes': {} } },
    })

  const metricsOff = configSchema.safeParse({ metrics: { enabled: false } })
  if (metricsOff.success) {
    add({
      name: 'gateway-metrics-off',
      logLevel: 'warn',
      config: { metrics: { enabled: false }, policies: allOff(registered) },
    })
  } else {
    add({
      name: 'gateway-metrics-off',
      skip: 'the config has no switch to turn metrics off (metrics.enabled)',
    })
  }
  return out
}
