/**
 * Least privilege from observation: `keys learn | usage | tighten | enforce`, and the Immich key
 * minting that `keys add | revoke | rotate` use with `--immich-login`.
 */
import { parseArgs } from 'node:util'
import type { YAMLMap } from 'yaml'
import { withImmichSession, type ImmichSession, type MintedImmichKey } from '../auth/immich-mint.js'
import { findClient, setList, type KeysDoc } from '../auth/keys-edit.js'
import type { ClientEntry } from '../auth/keys-file.js'
import {
  immichPermissions,
  nonAdminPermissions,
  tightenPlan,
  usageReport,
  type UsageReport,
} from '../auth/least-privilege.js'
import { writeMintedSecret } from '../auth/minted-secrets.js'
import { loadScopeResolver, type ScopeResolver } from '../auth/scopes.js'
import type { UsageStore } from '../auth/usage.js'
import { loadConfig } from '../config/load.js'
import { usageStoreFor } from '../../policies/scopes/learn.js'
import { registerCommand, UsageError } from './index.js'
import { instant, list, openKeys, out, save } from './keys.js'
import { readSecretInput } from './secret-input.js'

/** The concrete Immich permissions a client holds now: its learning base while learning, else its scopes. */
export function heldPermissions(
  entry: ClientEntry,
  resolver: ScopeResolver,
  now = Date.now()
): { permissions: string[]; learning: boolean } {
  const { learn } = entry
  const learning = learn !== undefined && (!learn.until || now < Date.parse(learn.until))
  const active = !learning
    ? resolver.expand(entry.scopes)
    : learn.base
      ? resolver.expand(learn.base)
      : nonAdminPermissions()
  return { permissions: immichPermissions(active), learning }
}

/** The `learn:` mapping for `--learn [--for 7d] [--scopes BASE]`. */
export function learnField(forFlag: string | undefined, base: string[] | undefined) {
  return {
    ...(forFlag ? { until: instant(forFlag, '--for') } : {}),
    ...(base?.length ? { base } : {}),
  }
}

/** The Immich the CLI mints keys on: `--immich-url`, else the gateway's upstream (config, env IMMICH_URL). */
function immichUrl(flag: string | undefined): string {
  return flag ?? loadConfig().upstream.url
}

/** Logs in as `email` (password from stdin or a prompt), runs `fn`, logs out. */
export async function immichSession<T>(
  email: string,
  urlFlag: string | undefined,
  fn: (session: ImmichSession) => Promise<T>
): Promise<T> {
  const url = immichUrl(urlFlag)
  const password = await readSecretInput(`Immich password for ${email}: `)
  return withImmichSession(url, email, password, fn)
}

/**
 * Mints the client's Immich key with `permissions`, stores its secret (0600, beside the keys file)
 * and returns the `immichKey` field for the keys file. The old key, if any, is deleted afterwards.
 */
export async function mintInto(
  session: ImmichSession,
  keysFile: string,
  client: string,
  permissions: readonly string[],
  oldId?: string
): Promise<{ id: string; permissions: string[] }> {
  const key: MintedImmichKey = await session.createKey(`immich-gateway: ${client}`, permissions)
  writeMintedSecret(keysFile, client, key.secret)
  if (oldId) await session.deleteKey(oldId)
  return { id: key.id, permissions: key.permissions }
}

function needsLogin(command: string, name: string): UsageError {
  return new UsageError(
    `${command} ${name}: this client has an Immich key minted by the gateway; pass --immich-login EMAIL (password on stdin or at the prompt) so it is changed too`
  )
}

/** Opens the usage store the gateway writes (Redis when configured, else the state file). */
async function withUsageStore<T>(
  keysFile: string,
  fn: (store: UsageStore) => Promise<T>
): Promise<T> {
  const config = loadConfig()
  let redis
  if (config.redis.url) {
    const { Redis } = await import('ioredis')
    redis = new Redis(config.redis.url, { maxRetriesPerRequest: 1, enableOfflineQueue: true })
  }
  const store = usageStoreFor(config, redis, { keysFile, ownsRedis: true })
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

async function reportFor(
  keys: KeysDoc,
  name: string
): Promise<{ report: UsageReport; entry: ClientEntry; learning: boolean }> {
  const entry = keys.entries.find((c) => c.name === name)
  if (!entry) throw new Error(`no client named "${name}" in ${keys.file}`)
  const held = heldPermissions(entry, loadScopeResolver())
  const usage = await withUsageStore(keys.file, (store) => store.read(name))
  return { report: usageReport(name, usage, held.permissions), entry, learning: held.learning }
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

function table(rows: string[][]): void {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  for (const row of rows)
    out(
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd()
    )
}

function wrapped(words: readonly string[], indent = '  ', width = 100): void {
  let line = indent
  for (const w of words) {
    if (line.length + w.length + 2 > width && line.trim()) {
      out(line.trimEnd())
      line = indent
    }
    line += `${w}, `
  }
  if (line.trim()) out(line.replace(/, $/, ''))
}

const learn = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      for: { type: 'string' },
      scopes: { type: 'string' },
      reset: { type: 'boolean' },
      file: { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1)
    throw new UsageError('keys learn NAME [--for 7d] [--scopes BASE] [--reset] [--file F]')
  const base = list(values.scopes)
  if (base.length) loadScopeResolver().expand(base)
  const keys = openKeys(values.file)
  const { node } = findClient(keys, name)
  const field = learnField(values.for, base)
  node.set('learn', keys.doc.createNode(field))
  if (base.length) setList(keys, node.get('learn') as YAMLMap, 'base', base)
  // Forget what earlier learning periods saw (a new app version may need less).
  if (values.reset) await withUsageStore(keys.file, (store) => store.clear(name))
  save(keys)
  out(
    `${name} is learning${field.until ? ` until ${field.until}` : ' until `keys tighten`'}: it may do ${base.length ? base.join(', ') : 'everything but admin routes'}, and each call is recorded (see \`keys usage ${name}\`)`
  )
  return 0
}

const usage = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: { json: { type: 'boolean' }, file: { type: 'string' } },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1) throw new UsageError('keys usage NAME [--json] [--file F]')
  const keys = openKeys(values.file)
  const { report, entry, learning } = await reportFor(keys, name)
  if (values.json) {
    const dated = (p: UsageReport['used'][number]) => ({
      ...p,
      first: iso(p.first),
      last: iso(p.last),
    })
    process.stdout.write(
      `${JSON.stringify({ ...report, learning, used: report.used.map(dated), refused: report.refused.map(dated) }, null, 2)}\n`
    )
    return 0
  }
  out(
    `${name}: ${learning ? `learning${entry.learn?.until ? ` until ${entry.learn.until}` : ''}` : 'not learning'}; scopes ${entry.scopes.join(', ') || '(none)'}`
  )
  if (report.used.length === 0 && report.refused.length === 0) {
    out('no calls recorded yet (the gateway writes what it learned every few seconds)')
    return 0
  }
  out()
  table([
    ['PERMISSION', 'CALLS', 'LAST USE', 'EXAMPLE ROUTES'],
    ...report.used.map((p) => [
      p.permission,
      String(p.granted),
      iso(p.last),
      p.routes.slice(0, 2).join(', ') + (p.routes.length > 2 ? ` (+${p.routes.length - 2})` : ''),
    ]),
  ])
  if (report.refused.length) {
    out()
    out('Refused (outside what the key may do):')
    for (const p of report.refused)
      out(`  ${p.permission}  ${p.refused}×  ${p.routes.slice(0, 2).join(', ')}`)
  }
  out()
  out(`Held but never used (${report.unused.length}):`)
  if (report.unused.length) wrapped(report.unused)
  return 0
}

const tighten = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      'dry-run': { type: 'boolean' },
      'report-only': { type: 'boolean' },
      'immich-login': { type: 'string' },
      'immich-url': { type: 'string' },
      file: { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1)
    throw new UsageError(
      'keys tighten NAME [--dry-run] [--report-only] [--immich-login EMAIL] [--file F]'
    )
  const keys = openKeys(values.file)
  const { report, entry } = await reportFor(keys, name)
  if (report.used.length === 0)
    throw new Error(
      `nothing learned for ${name} yet: let the client run in learn mode first (keys learn ${name})`
    )
  const resolver = loadScopeResolver()
  const current = heldPermissions(entry, resolver)
  const plan = tightenPlan(report, new Set(current.permissions), resolver)
  out(`${name}: scopes [${entry.scopes.join(', ')}] → [${plan.scopes.join(', ')}]`)
  out(`  permissions: ${plan.permissions.join(', ')}`)
  out(`  - ${plan.removed.length} no longer granted${plan.removed.length ? ':' : ''}`)
  if (plan.removed.length) wrapped(plan.removed, '      ')
  if (plan.added.length) out(`  + ${plan.added.join(', ')}`)
  const remint = entry.immichKey !== undefined && !values['report-only']
  if (values['dry-run']) {
    out('(dry run: nothing changed)')
    return 0
  }
  if (remint && !values['immich-login']) throw needsLogin('keys tighten', name)
  const { node } = findClient(keys, name)
  if (remint) {
    const immichKey = await immichSession(
      values['immich-login']!,
      values['immich-url'],
      (session) => mintInto(session, keys.file, name, plan.permissions, entry.immichKey!.id)
    )
    node.set('immichKey', keys.doc.createNode(immichKey))
    out(`  Immich key re-minted with exactly these permissions (id ${immichKey.id})`)
  }
  setList(keys, node, 'scopes', plan.scopes)
  node.delete('learn')
  if (values['report-only']) node.set('reportOnly', true)
  save(keys)
  out(
    values['report-only']
      ? `learn mode ended; report-only: calls outside these scopes are forwarded and counted until \`keys enforce ${name}\``
      : 'learn mode ended; the gateway enforces the new scopes within a second or two'
  )
  return 0
}

const enforce = async (args: string[]): Promise<number> => {
  const { values, positionals } = parseArgs({
    args,
    options: {
      'immich-login': { type: 'string' },
      'immich-url': { type: 'string' },
      file: { type: 'string' },
    },
    allowPositionals: true,
  })
  const name = positionals[0]
  if (!name || positionals.length > 1)
    throw new UsageError('keys enforce NAME [--immich-login EMAIL] [--file F]')
  const keys = openKeys(values.file)
  const entry = keys.entries.find((c) => c.name === name)
  const { node } = findClient(keys, name)
  const wanted = immichPermissions(loadScopeResolver().expand(entry!.scopes))
  const minted = entry!.immichKey
  if (minted && minted.permissions.join(',') !== wanted.join(',')) {
    if (!values['immich-login']) throw needsLogin('keys enforce', name)
    const immichKey = await immichSession(values['immich-login'], values['immich-url'], (session) =>
      mintInto(session, keys.file, name, wanted, minted.id)
    )
    node.set('immichKey', keys.doc.createNode(immichKey))
  }
  node.delete('reportOnly')
  save(keys)
  out(`${name}: calls outside [${entry!.scopes.join(', ')}] are refused again`)
  return 0
}

/** For `keys revoke`: deletes the client's minted Immich key (and its stored secret). */
export async function revokeMinted(
  keys: KeysDoc,
  entry: ClientEntry,
  login: string | undefined,
  urlFlag: string | undefined
): Promise<void> {
  if (!entry.immichKey) return
  if (!login) throw needsLogin('keys revoke', entry.name)
  await immichSession(login, urlFlag, (session) => session.deleteKey(entry.immichKey!.id))
  writeMintedSecret(keys.file, entry.name, undefined)
  out(`deleted its Immich key ${entry.immichKey.id}`)
}

/** For `keys rotate --immich-login`: replaces the client's minted Immich key by a new one, same permissions. */
export async function rotateMinted(
  keys: KeysDoc,
  node: YAMLMap,
  entry: ClientEntry,
  login: string,
  urlFlag: string | undefined
): Promise<void> {
  if (!entry.immichKey)
    throw new UsageError(`--immich-login: ${entry.name} has no minted Immich key`)
  const immichKey = await immichSession(login, urlFlag, (session) =>
    mintInto(session, keys.file, entry.name, entry.immichKey!.permissions, entry.immichKey!.id)
  )
  node.set('immichKey', keys.doc.createNode(immichKey))
  out(`replaced its Immich key (new id ${immichKey.id})`)
}

const FILE = '--file KEYS_FILE   the keys file (default: the one the gateway uses)'

registerCommand('keys learn', {
  summary: 'Put a client in learn mode: its calls are recorded to find its minimal scopes',
  usage: 'NAME [--for 7d] [--scopes BASE] [--reset] [--file KEYS_FILE]',
  details: `NAME           the client\n--for 7d       how long to learn (default: until tightened)\n--scopes BASE  what it may do meanwhile (default: every non-admin permission)\n--reset        forget what was learned so far\n${FILE}`,
  example: 'immich-gateway keys learn frame --for 7d',
  rawArgs: true,
  run: ({ positionals }) => learn(positionals),
})
registerCommand('keys usage', {
  summary: 'What a learning client called, and the scopes that would cover it',
  usage: 'NAME [--json] [--file KEYS_FILE]',
  details: `NAME     the client\n--json   machine-readable\n${FILE}`,
  example: 'immich-gateway keys usage frame',
  rawArgs: true,
  run: ({ positionals }) => usage(positionals),
})
registerCommand('keys tighten', {
  summary: 'Give a client exactly the scopes it used while learning',
  usage: 'NAME [--report-only] [--immich-login EMAIL] [--file KEYS_FILE]',
  details: `NAME   the client (see docs/learn-mode.md for every flag)\n${FILE}`,
  example: 'immich-gateway keys tighten frame',
  rawArgs: true,
  run: ({ positionals }) => tighten(positionals),
})
registerCommand('keys enforce', {
  summary: 'End report-only: calls outside the scopes are refused again',
  usage: 'NAME [--immich-login EMAIL] [--file KEYS_FILE]',
  details: `NAME   the client\n${FILE}`,
  example: 'immich-gateway keys enforce frame',
  rawArgs: true,
  run: ({ positionals }) => enforce(positionals),
})
