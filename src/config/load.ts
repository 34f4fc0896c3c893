/**
 * Configuration loading: the only module that reads the process environment. Everything the gateway
 * takes from it (overrides, file locations, the variables a field names, the metrics token) is
 * resolved here into the config, so `config check` sees exactly what `serve` would.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { type z } from 'zod'
import { configSchema, type GatewayConfig, type ResolvedEnvironment } from './schema.js'

/** A configuration problem: printed as one clear line at startup, never with a stack trace. */
export class ConfigError extends Error {
  override name = 'ConfigError'
}

/** Formats zod issues as `field.path: what was expected` lines. */
export function describeIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.')
      return `${path || '(root)'}: ${issue.message}`
    })
    .join('\n')
}

export type Env = Readonly<Record<string, string | undefined>>

/** The keys file when neither the config nor the environment names one (relative to the working directory). */
export const DEFAULT_KEYS_FILE = 'config/keys.yaml'

function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target
  for (const key of path.slice(0, -1)) {
    const next = node[key]
    node = (typeof next === 'object' && next !== null ? next : (node[key] = {})) as Record<
      string,
      unknown
    >
  }
  node[path[path.length - 1]!] = value
}

/** An empty YAML value (`redis:` with everything under it commented out) means "not set". */
function withoutNulls(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(withoutNulls)
  if (typeof value !== 'object' || value === null) return value
  const out: Record<string, unknown> = {}
  for (const [key, v] of Object.entries(value)) if (v !== null) out[key] = withoutNulls(v)
  return out
}

function asPort(name: string, raw: string): number {
  if (!/^\d+$/.test(raw))
    throw new ConfigError(`${name}: expected a port number (0-65535), got "${raw}"`)
  return Number(raw)
}

/** Environment variables that override the file, and the field each one sets. */
const ENV_FIELDS: [string, string][] = [
  ['IMMICH_URL', 'upstream.url'],
  ['PORT', 'server.port'],
  ['HOST', 'server.host'],
  ['REDIS_URL', 'redis.url'],
  ['LOG_LEVEL', 'logging.level'],
  ['METRICS_PORT', 'metrics.port'],
  ['METRICS_HOST', 'metrics.host'],
  ['GATEWAY_CONSOLE_TOKEN', 'console.token'],
]

/** Variables the gateway reads besides ENV_FIELDS and the ones a field names (compose files are checked against both lists). */
export const ENV_FILES: readonly string[] = [
  'GATEWAY_CONFIG',
  'GATEWAY_KEYS_FILE',
  'GATEWAY_SCOPES_FILE',
]

/** Every variable name the loader itself reads. */
export const KNOWN_ENV: readonly string[] = [...ENV_FIELDS.map(([name]) => name), ...ENV_FILES]

function applyEnv(raw: Record<string, unknown>, env: Env): void {
  for (const [name, field] of ENV_FIELDS) {
    const value = env[name]
    if (!value) continue
    setIn(
      raw,
      field.split('.'),
      name === 'PORT' || name === 'METRICS_PORT' ? asPort(name, value) : value
    )
  }
}

/** Command-line flags that take precedence over the environment (`serve`, `config check`). */
export interface LoadFlags {
  /** The config file (instead of GATEWAY_CONFIG). */
  file?: string
  /** The keys file (instead of GATEWAY_KEYS_FILE and policies.api-key-auth.keysFile). */
  keys?: string
}

/**
 * Attaches what the environment holds for a validated config: the variables, the keys and presets
 * files, the metrics token. Without `defaultKeysFile` no keys file is implied (tests: nothing is read
 * from the working directory). Throws ConfigError when a field names a variable that is not set.
 */
export function resolveEnvironment(
  config: GatewayConfig,
  vars: Env,
  options: { defaultKeysFile?: string } = {}
): GatewayConfig {
  const environment: ResolvedEnvironment = { vars: { ...vars } }
  const keysFile = vars.GATEWAY_KEYS_FILE || options.defaultKeysFile
  if (keysFile) environment.keysFile = resolve(keysFile)
  if (vars.GATEWAY_SCOPES_FILE) environment.presetsFile = resolve(vars.GATEWAY_SCOPES_FILE)
  const tokenEnv = config.metrics.bearerTokenEnv
  if (tokenEnv) {
    const token = vars[tokenEnv]
    if (!token)
      throw new ConfigError(
        `metrics.bearerTokenEnv: environment variable ${tokenEnv} is not set (it must hold the token Prometheus sends)`
      )
    environment.metricsToken = token
  }
  return { ...config, environment }
}

/**
 * Reads the config file (flags.file, else GATEWAY_CONFIG; YAML or JSON) if any, applies env overrides,
 * validates, and resolves the environment into it. Throws ConfigError.
 */
export function loadConfig(env: Env = process.env, flags: LoadFlags = {}): GatewayConfig {
  return resolveLoaded(readConfig(env, flags), env, flags)
}

/** The environment resolved into a config readConfig returned (the keys flag included). */
export function resolveLoaded(
  config: GatewayConfig,
  env: Env = process.env,
  flags: LoadFlags = {}
): GatewayConfig {
  return resolveEnvironment(config, flags.keys ? { ...env, GATEWAY_KEYS_FILE: flags.keys } : env, {
    defaultKeysFile: DEFAULT_KEYS_FILE,
  })
}

/** The config file and env overrides, validated; the environment not resolved yet. Throws ConfigError. */
export function readConfig(env: Env = process.env, flags: LoadFlags = {}): GatewayConfig {
  let raw: Record<string, unknown> = {}
  const file = flags.file ?? env.GATEWAY_CONFIG
  const label = flags.file ? '--file' : 'GATEWAY_CONFIG'
  if (file) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(
        `${label}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`
      )
    }
    let parsed: unknown
    try {
      parsed = parseYaml(text)
    } catch (err) {
      throw new ConfigError(
        `${label}: ${file} is not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`
      )
    }
    if (parsed != null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ConfigError(`${label}: ${file} must hold a mapping of options at its top level`)
    }
    raw = withoutNulls(parsed ?? {}) as Record<string, unknown>
  }
  applyEnv(raw, env)
  const result = configSchema.safeParse(raw)
  if (!result.success) {
    // Name the env variable too when the bad value came from one.
    const message = describeIssues(result.error).replace(/^([\w.]+):/gm, (line, path: string) => {
      const from = ENV_FIELDS.find(([name, field]) => field === path && env[name])
      return from ? `${path} (env ${from[0]}):` : line
    })
    throw new ConfigError(message)
  }
  let config: GatewayConfig = result.data
  if (flags.keys) {
    // The flag wins over the config file too, so `config check --keys` checks the file it names.
    const apiKeyAuth = config.policies['api-key-auth']
    if (typeof apiKeyAuth === 'object' && apiKeyAuth !== null && 'keysFile' in apiKeyAuth)
      config = {
        ...config,
        policies: { ...config.policies, 'api-key-auth': { ...apiKeyAuth, keysFile: flags.keys } },
      }
  }
  return config
}
