import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { type z } from 'zod'
import { configSchema, type GatewayConfig } from './schema.js'

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

type Env = Record<string, string | undefined>

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
  ['GATEWAY_CONSOLE_TOKEN', 'console.token'],
]

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

/** Reads GATEWAY_CONFIG (YAML or JSON) if set, applies env overrides, validates. Throws ConfigError. */
export function loadConfig(env: Env = process.env): GatewayConfig {
  let raw: Record<string, unknown> = {}
  const file = env.GATEWAY_CONFIG
  if (file) {
    let text: string
    try {
      text = readFileSync(file, 'utf8')
    } catch (err) {
      throw new ConfigError(
        `GATEWAY_CONFIG: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`
      )
    }
    let parsed: unknown
    try {
      parsed = parseYaml(text)
    } catch (err) {
      throw new ConfigError(
        `GATEWAY_CONFIG: ${file} is not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`
      )
    }
    if (parsed != null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ConfigError(
        `GATEWAY_CONFIG: ${file} must hold a mapping of options at its top level`
      )
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
  return result.data
}
