/**
 * `config check`: everything `serve` checks before it listens — the config, every policy's options,
 * and each policy built as serve builds it (keys file, secrets, each client's Immich key, presets,
 * JWT keys, route classes, the legacy table) — with every problem collected instead of the first.
 */
import { Writable } from 'node:stream'
import pino from 'pino'
import { Registry } from 'prom-client'
import { catalogueFromRoutes } from '../auth/scopes.js'
import { CLIENT_DISABLED } from '../auth/keys-store.js'
import { keysFileFor } from '../auth/keys-file.js'
import type { Deps } from '../deps.js'
import { DEFAULT_ROUTES_FILE } from '../gateway.js'
import { Metrics } from '../observability/metrics.js'
import { compileRouteTable, loadRouteTable } from '../routing/route-table.js'
import { createForwarder } from '../upstream/forward.js'
import { createUpstreamHealth } from '../upstream/health.js'
import { POLICIES, validatePolicyOptions } from '../../policies/index.js'
import { type apiKeyAuthOptions } from '../../policies/api-key-auth/schema.js'
import { ConfigError, readConfig, resolveLoaded, type Env, type LoadFlags } from './load.js'
import { configSchema, type GatewayConfig } from './schema.js'

export interface CheckResult {
  /** Each a line (or lines) naming the field; any one means `serve` would refuse or disable something. */
  problems: string[]
  /** Warnings serve would log that are not problems (a keys file not created yet). */
  notes: string[]
  /** The checked configuration, when it loaded. */
  config?: GatewayConfig
  keysFile?: string
}

interface LogEntry {
  level: number
  msg: string
  [field: string]: unknown
}

/** Runs the checks; `env` undefined means the process environment (read by load.ts). */
export async function checkConfiguration(
  env: Env | undefined,
  flags: LoadFlags = {}
): Promise<CheckResult> {
  const problems: string[] = []
  const notes: string[] = []
  let loaded = true
  let read: GatewayConfig
  try {
    read = readConfig(env, flags)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problems.push(err.message)
    loaded = false
    // The keys file and presets are still worth checking: with the defaults and the environment.
    read = configSchema.parse({})
  }
  let config: GatewayConfig
  try {
    config = resolveLoaded(read, env, flags)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problems.push(err.message)
    loaded = false
    const { bearerTokenEnv: _unset, ...metrics } = read.metrics
    config = resolveLoaded({ ...read, metrics }, env, flags)
  }
  let options = new Map<string, unknown>()
  try {
    options = validatePolicyOptions(config)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    problems.push(err.message)
    // Check the policies whose options are valid.
    for (const policy of POLICIES) {
      const raw = config.policies[policy.name]
      const parsed = raw === false ? undefined : policy.options.safeParse(raw ?? {})
      if (parsed?.success) options.set(policy.name, parsed.data)
    }
  }

  // Every policy built as serve builds it, with a logger that records what serve would warn about.
  const entries: LogEntry[] = []
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n'))
        if (line) entries.push(JSON.parse(line) as LogEntry)
      done()
    },
  })
  const logger = pino({ level: 'warn' }, sink)
  const closers: (() => void | Promise<void>)[] = []
  const metrics = new Metrics(new Registry())
  const health = createUpstreamHealth(config, { metrics, logger }) // never started: no probe
  const forwarder = createForwarder(config, {}, health)
  closers.push(() => forwarder.close())
  const table = loadRouteTable(DEFAULT_ROUTES_FILE)
  const deps: Deps = {
    logger,
    metrics,
    health,
    forwarder,
    routes: compileRouteTable(table),
    catalogue: catalogueFromRoutes(table),
  }
  for (const policy of POLICIES) {
    if (!options.has(policy.name)) continue
    try {
      await policy.create(options.get(policy.name), {
        config,
        deps,
        onClose: (fn) => closers.push(fn),
      })
    } catch (err) {
      problems.push(
        err instanceof ConfigError
          ? err.message
          : `policies.${policy.name}: ${(err as Error).message}`
      )
    }
  }
  for (const fn of closers.reverse()) await fn()
  await new Promise<void>((resolve) => sink.end(resolve))
  for (const entry of entries) {
    if (entry.msg === CLIENT_DISABLED)
      problems.push(
        `policies.api-key-auth: ${String(entry.file)}: client ${String(entry.client)} is disabled: ${String(entry.missing)}`
      )
    else if (entry.level >= 50)
      problems.push(`${entry.msg}${entry.error ? `: ${String(entry.error)}` : ''}`)
    else notes.push(`${entry.msg}${entry.file ? ` (${String(entry.file)})` : ''}`)
  }
  const apiKeyAuth = options.get('api-key-auth') as
    ReturnType<typeof apiKeyAuthOptions.parse> | undefined
  const keysFile = apiKeyAuth
    ? keysFileFor(apiKeyAuth.keysFile, config.environment)?.file
    : undefined
  return { problems, notes, ...(loaded ? { config } : {}), ...(keysFile ? { keysFile } : {}) }
}

/**
 * The report `config check` prints: notes and the "ok" line for stdout; the problems for stderr, in
 * the words the start uses (`immich-gateway: invalid configuration`, one problem per line).
 */
export function formatCheck(result: CheckResult): { stdout: string; stderr: string; ok: boolean } {
  const notes = result.notes.map((n) => `note: ${n}\n`).join('')
  if (result.problems.length === 0) {
    const { config, keysFile } = result
    return {
      ok: true,
      stdout: `${notes}configuration ok (upstream ${config!.upstream.url}, port ${config!.server.port}${keysFile ? `, keys file ${keysFile}` : ''})\n`,
      stderr: '',
    }
  }
  return {
    ok: false,
    stdout: notes,
    stderr: `immich-gateway: invalid configuration\n${result.problems.join('\n')}\n`,
  }
}
