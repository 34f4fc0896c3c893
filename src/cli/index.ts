#!/usr/bin/env node
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { ConfigError, loadConfig } from '../config/load.js'
import { writeRouteTable } from '../routing/generate-routes.js'
import { DEFAULT_ROUTES_FILE } from '../gateway.js'
import { checkConfig } from '../config/check.js'

/** A CLI command: receives the words after its name; returns the exit code. */
export type Command = (args: string[]) => Promise<number> | number

export class UsageError extends Error {}

const commands: Record<string, Command> = {
  serve: async () => {
    await import('../main.js')
    return -1 // keeps running
  },
  'routes generate': (args) => {
    const { values } = parseArgs({
      args,
      options: { spec: { type: 'string' }, out: { type: 'string' } },
    })
    if (!values.spec) throw new UsageError('routes generate --spec FILE [--out FILE]')
    const out = values.out ?? DEFAULT_ROUTES_FILE
    const { count } = writeRouteTable(values.spec, out)
    process.stdout.write(`wrote ${count} routes to ${out}\n`)
    return 0
  },
  'config reference': async () => {
    const { configReference } = await import('../config/reference.js')
    process.stdout.write(`${configReference()}\n`)
    return 0
  },
  'config example': async () => {
    const { configExample } = await import('../config/reference.js')
    process.stdout.write(configExample())
    return 0
  },
  'config docs': async () => {
    const { writeConfigDocs } = await import('../config/reference.js')
    process.stdout.write(`updated ${writeConfigDocs().join(', ')}\n`)
    return 0
  },
  'config check': async () => {
    const config = loadConfig()
    await checkConfig(config)
    process.stdout.write(
      `configuration ok (upstream ${config.upstream.url}, port ${config.server.port})\n`
    )
    return 0
  },
}

/** Lets other modules add their commands (keys, routes explain) without this file knowing them. */
export function registerCommand(name: string, command: Command): void {
  commands[name] = command
}

export async function run(argv: string[]): Promise<number> {
  await import('./commands.js')
  const two = argv.slice(0, 2).join(' ')
  const one = argv[0] ?? 'help'
  const [name, rest] = commands[two] ? [two, argv.slice(2)] : [one, argv.slice(1)]
  const command = commands[name]
  if (!command) {
    process.stderr.write(
      `usage: immich-gateway <command>\ncommands:\n${Object.keys(commands)
        .map((c) => `  ${c}`)
        .join('\n')}\n`
    )
    return 2
  }
  try {
    return await command(rest)
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`usage: immich-gateway ${err.message}\n`)
      return 2
    }
    if (err instanceof ConfigError) {
      process.stderr.write(`immich-gateway: invalid configuration\n${err.message}\n`)
      return 2
    }
    process.stderr.write(`immich-gateway: ${(err as Error).message}\n`)
    return 1
  }
}

/** True when this file is the process's entry point (also through the npm bin symlink). */
function isEntryPoint(): boolean {
  try {
    return !!process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)
  } catch {
    return false
  }
}

if (isEntryPoint()) {
  run(process.argv.slice(2)).then((code) => {
    if (code >= 0) process.exit(code)
  })
}
