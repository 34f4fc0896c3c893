#!/usr/bin/env node
/**
 * `immich-gateway <command>`: every command describes itself (`--help`: usage, flags, an example),
 * refuses flags it does not know (exit 2, with its usage line) and starts nothing when asked for help.
 */
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ConfigError } from '../config/load.js'
import { isEntryPoint, packageFile } from '../paths.js'

/** What a command receives: its flags and positional arguments, already checked against its spec. */
export interface Parsed {
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

/** A CLI command. `run` returns the exit code (-1: keep running, as `serve` does). */
export interface CommandSpec {
  /** One line for the command list. */
  summary: string
  /** What follows the command name in the usage line, e.g. `NAME [--file KEYS_FILE]`. */
  usage: string
  /** Flags and arguments, one per line (`--name NAME   what it is`). */
  details?: string
  /** A command line someone can copy. */
  example: string
  options?: NonNullable<ParseArgsConfig['options']>
  /** How many positional arguments it takes (default none). */
  positionals?: { min: number; max: number }
  /** The command parses its own arguments (strictly, with parseArgs): `run` gets them as positionals. */
  rawArgs?: boolean
  run(parsed: Parsed): Promise<number> | number
}

/** A wrong invocation: the message, then the command's usage line; exit 2. */
export class UsageError extends Error {}

const commands = new Map<string, CommandSpec>()

/** Each module registers its commands (keys, routes explain...) without this file knowing them. */
export function registerCommand(name: string, spec: CommandSpec): void {
  commands.set(name, spec)
}

/** The names of the registered commands. */
export function registeredCommands(): string[] {
  return [...commands.keys()]
}

/** A string flag's value (parseArgs has already checked its type). */
export function flag(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name]
  return typeof value === 'string' ? value : undefined
}

function version(): string {
  return (JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as { version: string })
    .version
}

const HELP_FLAGS = new Set(['-h', '--help'])

function wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf('--')
  return (end === -1 ? args : args.slice(0, end)).some((a) => HELP_FLAGS.has(a))
}

function usageLine(name: string, spec: CommandSpec): string {
  return `usage: immich-gateway ${name}${spec.usage ? ` ${spec.usage}` : ''}`
}

function commandHelp(name: string, spec: CommandSpec): string {
  const details = spec.details ? `\n${spec.details.replace(/^/gm, '  ')}\n` : ''
  return `${usageLine(name, spec)}\n\n${spec.summary}\n${details}  -h, --help  this help\n\nexample:\n  ${spec.example}\n`
}

/** The command list, of everything or of one group (`keys`). */
function overview(group?: string): string {
  const names = [...commands.keys()].filter((n) => !group || n.startsWith(`${group} `)).sort()
  const width = Math.max(...names.map((n) => n.length))
  const list = names.map((n) => `  ${n.padEnd(width)}  ${commands.get(n)!.summary}`).join('\n')
  const head = group
    ? `usage: immich-gateway ${group} <command> [flags]`
    : `immich-gateway ${version()}: an edge gateway for a self-hosted Immich\n\nusage: immich-gateway <command> [flags]`
  return `${head}\n\ncommands:\n${list}\n\n"immich-gateway <command> --help" shows a command's flags and an example.${group ? '' : '\n  -h, --help     this help\n  -v, --version  the version'}\n`
}

function parse(name: string, spec: CommandSpec, args: string[]): Parsed {
  if (spec.rawArgs) return { values: {}, positionals: args }
  const { values, positionals } = parseArgs({
    args,
    options: spec.options ?? {},
    allowPositionals: true,
    strict: true,
  })
  const { min, max } = spec.positionals ?? { min: 0, max: 0 }
  if (positionals.length < min || positionals.length > max) {
    const extra = positionals.length > max ? `unexpected argument "${positionals[max]}"` : ''
    throw new UsageError(extra || `${name}: missing argument`)
  }
  return { values: values as Parsed['values'], positionals }
}

/** Runs the CLI on `argv` (the words after the program name); resolves to the exit code. */
export async function run(argv: string[]): Promise<number> {
  await import('./commands.js')
  const out = (text: string) => process.stdout.write(text)
  const err = (text: string) => process.stderr.write(text)
  const [first, second] = argv
  if (first === undefined) {
    err(overview())
    return 2
  }
  if (first === '-v' || first === '--version') {
    out(`${version()}\n`)
    return 0
  }
  if (HELP_FLAGS.has(first) || first === 'help') {
    const topic = argv.slice(1).join(' ')
    if (!topic) out(overview())
    else if (commands.has(topic)) out(commandHelp(topic, commands.get(topic)!))
    else if ([...commands.keys()].some((n) => n.startsWith(`${topic} `))) out(overview(topic))
    else {
      err(`immich-gateway: no command "${topic}"\n\n${overview()}`)
      return 2
    }
    return 0
  }
  const two = `${first} ${second ?? ''}`
  const [name, rest] = commands.has(two) ? [two, argv.slice(2)] : [first, argv.slice(1)]
  const spec = commands.get(name)
  if (!spec) {
    const group = [...commands.keys()].some((n) => n.startsWith(`${first} `))
    if (group && (second === undefined || HELP_FLAGS.has(second))) {
      ;(second === undefined ? err : out)(overview(first))
      return second === undefined ? 2 : 0
    }
    err(
      `immich-gateway: unknown command "${group ? two.trim() : first}"\n\n${overview(group ? first : undefined)}`
    )
    return 2
  }
  if (wantsHelp(rest)) {
    out(commandHelp(name, spec))
    return 0
  }
  try {
    return await spec.run(parse(name, spec, rest))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (error instanceof UsageError || code?.startsWith('ERR_PARSE_ARGS')) {
      // parseArgs goes on about `--` after the point: the usage line below says it better.
      const message = (error as Error).message.split('\n')[0]!.replace(/\. To specify .*$/, '')
      err(
        `immich-gateway ${name}: ${message}\n${usageLine(name, spec)}\n(immich-gateway ${name} --help: flags and an example)\n`
      )
      return 2
    }
    if (error instanceof ConfigError) {
      err(`immich-gateway: invalid configuration\n${error.message}\n`)
      return 2
    }
    err(`immich-gateway: ${(error as Error).message}\n`)
    return 1
  }
}

/** Runs the CLI as the process: the exit code becomes the process's (unless a command keeps running). */
export function main(argv: string[] = process.argv.slice(2)): void {
  void run(argv).then((code) => {
    if (code >= 0) process.exit(code)
  })
}

if (isEntryPoint(import.meta.url)) main()
