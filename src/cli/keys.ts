/**
 * `immich-gateway keys add | list | revoke | rotate | set-upstream`: edits the keys file in place
 * (comments kept), and the upstream secrets file beside it for Immich keys given on stdin,
 * atomically, so a running gateway picks the change up within a second without a restart.
 */
import { readFileSync } from 'node:fs'
import { resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { parseDuration } from '../auth/duration.js'
import {
  commitClient,
  findClient,
  KeyEditError,
  openKeys as openKeysFile,
  prepareClient,
  removeClient,
  rotateKey,
  saveKeys,
  type KeyEditField,
  type KeyEditOptions,
  type KeysDoc,
} from '../auth/keys-edit.js'
import { CLIENT_NAME, ENV_NAME, keysFileFor, type ClientEntry } from '../auth/keys-file.js'
import { GATEWAY_KEY_PREFIX } from '../auth/keygen.js'
import { loadScopeResolver, type ScopeResolver } from '../auth/scopes.js'
import { mintedSecretsFile, readMintedSecrets, writeMintedSecret } from '../auth/minted-secrets.js'
import { loadConfig } from '../config/load.js'
import { apiKeyAuthOptions } from '../../policies/api-key-auth/schema.js'
import { registerCommand, UsageError, type CommandSpec } from './index.js'
import {
  heldPermissions,
  immichSession,
  learnField,
  mintInto,
  revokeMinted,
  rotateMinted,
} from './keys-learn.js'

const DEFAULT_GRACE = '24h'

/**
 * What the gateway would use (GATEWAY_CONFIG, GATEWAY_KEYS_FILE, GATEWAY_SCOPES_FILE), unless
 * --file says. Every edit goes through src/auth/keys-edit.ts, the module the console writes with.
 */
interface Setup {
  file: string
  resolver: ScopeResolver
  edit: KeyEditOptions
  env: Readonly<Record<string, string | undefined>>
}

function setup(fileFlag: string | undefined): Setup {
  const config = loadConfig()
  const options = apiKeyAuthOptions.parse(config.policies['api-key-auth'] || {})
  const file = fileFlag
    ? resolve(fileFlag)
    : keysFileFor(options.keysFile, config.environment)!.file
  const presetsFile = options.presetsFile ?? config.environment?.presetsFile
  return {
    file,
    resolver: loadScopeResolver(presetsFile),
    edit: { presetsFile },
    env: config.environment?.vars ?? {},
  }
}

/** Opens the keys file the gateway uses (or --file's) for editing. */
export function openKeys(fileFlag: string | undefined): KeysDoc {
  return openKeysFile(setup(fileFlag).file)
}

/** Saves an edited keys file, checking scopes against the presets the gateway uses. */
export function save(keys: KeysDoc): void {
  saveKeys(keys, setup(keys.file).edit)
}

const FLAGS: Record<KeyEditField, string> = {
  name: '--name',
  scopes: '--scopes',
  upstreamKeyEnv: '--upstream-key-env',
  upstreamKeyFile: '--upstream-key-file',
  expiresAt: '--expires',
  allowFrom: '--allow-from',
  albums: '--albums',
}

/** Runs a keys-file edit; a refusal names the flag it is about. */
function editing<T>(edit: () => T): T {
  try {
    return edit()
  } catch (err) {
    if (!(err instanceof KeyEditError) || err.field === undefined) throw err
    throw new Error(`${FLAGS[err.field]}: ${err.message}`, { cause: err })
  }
}

export function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}

/** `90d` from now, or an ISO date/time. */
export function instant(text: string, flag: string): string {
  if (/^\d+[smhdw]$/.test(text.trim()))
    return new Date(Date.now() + parseDuration(text)).toISOString()
  const ms = Date.parse(text)
  if (Number.isNaN(ms))
    throw new UsageError(`${flag} expects a duration (90d, 12h) or an ISO date, got "${text}"`)
  return new Date(ms).toISOString()
}

export function out(line = ''): void {
  process.stdout.write(`${line}\n`)
}

const add = async (args: string[]): Promise<number> => {
  const { values } = parseArgs({
    args,
    options: {
      name: { type: 'string' },
      scopes: { type: 'string' },
      learn: { type: 'boolean' },
      for: { type: 'string' },
      'report-only': { type: 'boolean' },
      'immich-login': { type: 'string' },
      'immich-url': { type: 'string' },
      'upstream-key-env': { type: 'string' },
      'upstream-key-file': { type: 'string' },
      'upstream-key-stdin': { type: 'boolean' },
      expires: { type: 'string' },
      'allow-from': { type: 'string' },
      description: { type: 'string' },
      albums: { type: 'string' },
      file: { type: 'string' },
    },
  })
  const usage =
    'keys add --name NAME (--scopes a,b | --learn [--for 7d] [--scopes BASE]) [--report-only] [--upstream-key-env VAR | --immich-login EMAIL] [--expires 90d] [--allow-from cidr,..] [--albums ID,..] [--description TEXT] [--file F]'
  if (!values.name || (!values.scopes && !values.learn)) throw new UsageError(usage)
  const given = ['immich-login', 'upstream-key-env', 'upstream-key-file', 'upstream-key-stdin']
  if (given.filter((f) => values[f as keyof typeof values] !== undefined).length > 1)
    throw new UsageError(`give one of ${given.map((f) => `--${f}`).join(', ')}`)
  if (!CLIENT_NAME.test(values.name))
    throw new UsageError(
      `--name: 1–64 letters, digits, ".", "_" or "-" (it labels logs and metrics)`
    )
  const albums = list(values.albums)
  if (values.albums !== undefined && albums.length === 0)
    throw new UsageError('--albums: expected album ids, comma-separated')
  const where = setup(values.file)
  const upstreamKeyEnv = values['upstream-key-env']
  const upstreamKeyFile = values['upstream-key-file']
    ? resolve(values['upstream-key-file'])
    : undefined
  const allowFrom = list(values['allow-from'])
  const prepared = editing(() =>
    prepareClient(
      where.file,
      {
        name: values.name!,
        scopes: list(values.scopes),
        upstreamKeyEnv,
        upstreamKeyFile,
        learn: values.learn ? learnField(values.for, undefined) : undefined,
        reportOnly: values['report-only'],
        expiresAt: values.expires ? instant(values.expires, '--expires') : undefined,
        allowFrom,
        albums,
        description: values.description,
      },
      where.edit
    )
  )
  const { keys, entry, key } = prepared
  if (values['immich-login']) {
    const { permissions } = heldPermissions(entry, where.resolver)
    entry.immichKey = await immichSession(values['immich-login'], values['immich-url'], (session) =>
      mintInto(session, keys.file, entry.name, permissions)
    )
  }
  // The secret first: when the gateway sees the new client, its Immich key is already there.
  const stdinKey = values['upstream-key-stdin'] ? readUpstreamKey() : undefined
  if (stdinKey) writeMintedSecret(keys.file, entry.name, stdinKey)
  editing(() => commitClient(prepared, where.edit))
  if (entry.immichKey) {
    out(
      `minted an Immich API key for ${entry.name} with ${entry.immichKey.permissions.length} permissions (id ${entry.immichKey.id}); its secret is in ${mintedSecretsFile(keys.file)}`
    )
  } else if (upstreamKeyEnv && !where.env[upstreamKeyEnv]) {
    process.stderr.write(
      `note: ${upstreamKeyEnv} is not set in this shell; the gateway's own environment must hold it (an Immich API key), else ${entry.name} answers 503\n`
    )
  } else if (!stdinKey && !upstreamKeyEnv && !upstreamKeyFile) {
    process.stderr.write(
      `note: ${entry.name} has no Immich API key yet, so the gateway answers its requests with 503 until one is set: immich-gateway keys set-upstream ${entry.name} --upstream-key-stdin\n`
    )
  }
  out(`added client ${entry.name} to ${keys.file}`)
  if (entry.learn)
    out(
      `  learning${entry.learn.until ? ` until ${entry.learn.until}` : ''}: see \`keys usage ${entry.name}\`, then \`keys tighten ${entry.name}\``
    )
  out(
    `  scopes: ${entry.scopes.join(', ') || '(learning)'}; Immich key ${entry.immichKey ? 'minted' : stdinKey ? `in ${mintedSecretsFile(keys.file)}` : upstreamKeyEnv ? `from $${upstreamKeyEnv}` : upstreamKeyFile ? `from ${upstreamKeyFile}` : 'not set yet'}${entry.expiresAt ? `; expires ${entry.expiresAt}` : ''}${allowFrom.length ? `; from ${allowFrom.join(', ')}` : ''}${albums.length ? `; only albums ${albums.join(', ')}` : ''}`
  )
  out('The key is shown only now; give it to the client:')
  out(key)
  return 0
}

const listCommand = (args: string[]): number => {
  const { values } = parseArgs({ args, options: { file: { type: 'string' } } })
  const keys = openKeys(values.file)
  if (keys.entries.length === 0) {
    out(`no clients in ${keys.file}`)
    return 0
  }
  const secrets = readMintedSecrets(keys.file)
  const now = Date.now()
  const rows = keys.entries.map((c) => {
    const expired = c.expiresAt !== undefined && Date.parse(c.expiresAt) <= now
    const grace = (c.previous ?? []).filter((p) => Date.parse(p.validUntil) > now)
    return [
      c.name,
      (c.scopes.join(',') || '-') +
        (c.learn ? ` (learning${c.learn.base ? ` ${c.learn.base.join(',')}` : ''})` : '') +
        (c.reportOnly ? ' (report-only)' : ''),
      describeSource(c, secrets),
      c.expiresAt ? `${c.expiresAt}${expired ? ' (EXPIRED)' : ''}` : 'never',
      c.allowFrom?.join(',') ?? 'any',
      grace.length ? `old key valid until ${grace.map((p) => p.validUntil).join(', ')}` : '',
    ]
  })
  const header = ['NAME', 'SCOPES', 'IMMICH KEY', 'EXPIRES', 'ALLOW FROM', 'ROTATION']
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  for (const row of [header, ...rows])
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()
    )
  return 0
}

const revoke = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      file: { type: 'string' },
      'immich-login': { type: 'string' },
      'immich-url': { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1)
    throw new UsageError('keys revoke NAME [--immich-login EMAIL] [--file F]')
  const keys = openKeys(values.file)
  const { entry } = findClient(keys, name)
  await revokeMinted(keys, entry, values['immich-login'], values['immich-url'])
  removeClient(keys, name)
  save(keys)
  if (readMintedSecrets(keys.file).has(name)) writeMintedSecret(keys.file, name, undefined)
  out(
    `revoked ${name} (removed from ${keys.file}; a running gateway refuses the key within a second or two)`
  )
  return 0
}

const rotate = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      grace: { type: 'string' },
      file: { type: 'string' },
      'immich-login': { type: 'string' },
      'immich-url': { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1)
    throw new UsageError('keys rotate NAME [--grace 24h] [--immich-login EMAIL] [--file F]')
  let graceMs: number
  try {
    graceMs = parseDuration(values.grace ?? DEFAULT_GRACE)
  } catch (err) {
    throw new UsageError(`--grace: ${(err as Error).message}`)
  }
  const keys = openKeys(values.file)
  const { key, oldValidUntil } = rotateKey(keys, name, graceMs)
  if (values['immich-login']) {
    const { node, entry } = findClient(keys, name)
    await rotateMinted(keys, node, entry, values['immich-login'], values['immich-url'])
  }
  save(keys)
  out(
    `rotated ${name} in ${keys.file}; ${oldValidUntil ? `the old key works until ${oldValidUntil}` : 'the old key no longer works'}`
  )
  out('The new key is shown only now; give it to the client:')
  out(key)
  return 0
}

/** The Immich key typed or piped on stdin: one line, checked for shape, never echoed. */
function readUpstreamKey(): string {
  if (process.stdin.isTTY)
    process.stderr.write('Immich API key (input is not hidden; end with Enter, then Ctrl-D): ')
  const key = readFileSync(0, 'utf8').trim()
  if (!key) throw new UsageError('--upstream-key-stdin: nothing on stdin (pipe the Immich API key)')
  if (key.startsWith(GATEWAY_KEY_PREFIX))
    throw new UsageError(
      '--upstream-key-stdin: this is a gateway key; the gateway needs an Immich API key (Immich → Account settings → API keys)'
    )
  if (!/^[\x21-\x7e]+$/.test(key))
    throw new UsageError(
      '--upstream-key-stdin: expected one Immich API key (printable characters, no spaces or line breaks)'
    )
  return key
}

/** Where a client's Immich key comes from, for humans. */
function describeSource(entry: ClientEntry, secrets: ReadonlyMap<string, string>): string {
  if (entry.upstreamKeyFile) return `file ${entry.upstreamKeyFile}`
  if (entry.upstreamKeyEnv) return `env ${entry.upstreamKeyEnv}`
  if (entry.immichKey)
    return `minted ${entry.immichKey.id}${secrets.has(entry.name) ? '' : ' (MISSING)'}`
  return secrets.has(entry.name) ? 'secrets file' : 'MISSING'
}

const setUpstream = (args: string[]): number => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      'upstream-key-stdin': { type: 'boolean' },
      'upstream-key-env': { type: 'string' },
      'upstream-key-file': { type: 'string' },
      file: { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  const given = [
    values['upstream-key-stdin'],
    values['upstream-key-env'],
    values['upstream-key-file'],
  ]
  if (!name || positionals.length > 1 || given.filter((v) => v !== undefined).length !== 1)
    throw new UsageError(
      'give NAME and one of --upstream-key-stdin, --upstream-key-env, --upstream-key-file'
    )
  const env = values['upstream-key-env']
  if (env !== undefined && !ENV_NAME.test(env))
    throw new UsageError('--upstream-key-env: expected an environment variable name')
  const where = setup(values.file)
  const keys = openKeys(values.file)
  const { node } = findClient(keys, name)
  const stdinKey = values['upstream-key-stdin'] ? readUpstreamKey() : undefined
  node.delete('upstreamKeyEnv')
  node.delete('upstreamKeyFile')
  node.delete('immichKey')
  if (env) node.set('upstreamKeyEnv', env)
  const file = values['upstream-key-file'] ? resolve(values['upstream-key-file']) : undefined
  if (file) node.set('upstreamKeyFile', file)
  if (stdinKey) writeMintedSecret(keys.file, name, stdinKey)
  else if (readMintedSecrets(keys.file).has(name)) writeMintedSecret(keys.file, name, undefined)
  save(keys)
  out(
    `${name} now uses ${stdinKey ? `the Immich key stored in ${mintedSecretsFile(keys.file)}` : env ? `the Immich key in $${env}` : `the Immich key in ${file}`} (a running gateway picks it up within a second or two)`
  )
  if (env && !where.env[env])
    process.stderr.write(
      `note: ${env} is not set in this shell; the gateway's own environment must hold it, else ${name} answers 503\n`
    )
  return 0
}

const FILE =
  '--file KEYS_FILE   the keys file (default: the one the gateway uses: policies.api-key-auth.keysFile, env GATEWAY_KEYS_FILE, else config/keys.yaml)'
const UPSTREAM = `--upstream-key-stdin    read the Immich API key for this client from stdin and keep it in the
                        upstream secrets file beside the keys file (0600; never in the keys file)
--upstream-key-env VAR  or: the gateway reads the Immich key from this environment variable
--upstream-key-file P   or: from this file (Docker secrets: /run/secrets/NAME)`

const raw = (
  run: (args: string[]) => number | Promise<number>,
  spec: Omit<CommandSpec, 'run' | 'rawArgs'>
): CommandSpec => ({ ...spec, rawArgs: true, run: ({ positionals }) => run(positionals) })

registerCommand(
  'keys add',
  raw(add, {
    summary: 'Make a gateway key for a client; prints the key once',
    usage:
      '--name NAME (--scopes a,b | --learn [--for 7d]) [--upstream-key-stdin | --upstream-key-env VAR | --upstream-key-file PATH | --immich-login EMAIL] [--report-only] [--expires 90d] [--allow-from CIDR,..] [--albums ID,..] [--description TEXT] [--file KEYS_FILE]',
    details: `--name NAME             the client's name (labels logs and metrics)
--scopes a,b            Immich permissions (asset.view), wildcards (asset.*), presets
                        (photo-frame) from config/scopes.yaml, or all
--learn [--for 7d]      learn mode instead: see docs/learn-mode.md
${UPSTREAM}
--immich-login EMAIL    or: mint an Immich key with exactly these permissions
--expires 90d|DATE      the key stops working then (401)
--allow-from CIDR,..    only these addresses may use the key
--albums ID,..          only these albums (docs/album-binding.md)
--description TEXT      free text for humans
${FILE}`,
    example:
      'printf \'%s\' "$IMMICH_KEY" | immich-gateway keys add --name frame --scopes photo-frame --upstream-key-stdin',
  })
)
registerCommand(
  'keys list',
  raw(listCommand, {
    summary: 'List the clients: scopes, where their Immich key comes from, expiry',
    usage: '[--file KEYS_FILE]',
    details: FILE,
    example: 'immich-gateway keys list',
  })
)
registerCommand(
  'keys revoke',
  raw(revoke, {
    summary: 'Remove a client: its key stops working within a second or two',
    usage: 'NAME [--immich-login EMAIL] [--file KEYS_FILE]',
    details: `NAME   the client\n--immich-login EMAIL   also delete its minted Immich key\n${FILE}`,
    example: 'immich-gateway keys revoke frame',
  })
)
registerCommand(
  'keys rotate',
  raw(rotate, {
    summary: 'Give a client a new key; the old one works for a grace period',
    usage: 'NAME [--grace 24h] [--immich-login EMAIL] [--file KEYS_FILE]',
    details: `NAME          the client\n--grace 24h   how long the old key keeps working (0: not at all)\n${FILE}`,
    example: 'immich-gateway keys rotate frame --grace 1h',
  })
)
registerCommand(
  'keys set-upstream',
  raw(setUpstream, {
    summary: "Set where a client's Immich API key comes from (e.g. after renewing it in Immich)",
    usage:
      'NAME (--upstream-key-stdin | --upstream-key-env VAR | --upstream-key-file PATH) [--file KEYS_FILE]',
    details: `NAME                    the client\n${UPSTREAM}\n${FILE}`,
    example:
      'printf \'%s\' "$NEW_IMMICH_KEY" | immich-gateway keys set-upstream frame --upstream-key-stdin',
  })
)
