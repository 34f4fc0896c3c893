/**
 * `immich-gateway keys add | list | revoke | rotate`: edits the keys file in place (comments kept),
 * atomically, so a running gateway picks the change up within a second without a restart.
 */
import { parseArgs } from 'node:util'
import { isMap, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml'
import { parseDuration } from '../auth/duration.js'
import { keyHash } from '../auth/hash.js'
import { generateKey } from '../auth/keygen.js'
import {
  CLIENT_NAME,
  parseKeysText,
  readKeysFile,
  resolveKeysFile,
  writeFileAtomic,
  type ClientEntry,
} from '../auth/keys-file.js'
import { loadScopeResolver } from '../auth/scopes.js'
import { mintedSecretsFile } from '../auth/minted-secrets.js'
import { AddressSet } from '../net.js'
import { registerCommand, UsageError } from './index.js'
import {
  heldPermissions,
  immichSession,
  learnField,
  mintInto,
  revokeMinted,
  rotateMinted,
} from './keys-learn.js'

const DEFAULT_UPSTREAM_KEY_ENV = 'IMMICH_API_KEY'
const DEFAULT_GRACE = '24h'

const HEADER = ` Gateway API keys (see config/keys.example.yaml). Written by \`immich-gateway keys\`; the gateway
 reloads this file when it changes. Only hashes of keys are stored here.`

export interface KeysDoc {
  file: string
  doc: Document
  clients: YAMLSeq
  entries: ClientEntry[]
}

/** Opens the keys file as an editable YAML document, after checking it is a valid keys file. */
export function openKeys(fileFlag: string | undefined): KeysDoc {
  const { file } = resolveKeysFile(fileFlag)
  const { text, exists } = readKeysFile(file, true)
  const { clients: entries } = parseKeysText(text, file)
  const doc = parseDocument(text)
  if (!exists || doc.contents === null) {
    doc.contents = doc.createNode({ clients: [] }) as never
    doc.commentBefore = HEADER
  }
  let clients = doc.get('clients')
  if (!isSeq(clients)) {
    doc.set('clients', doc.createNode([]))
    clients = doc.get('clients')
  }
  return { file, doc, clients: clients as YAMLSeq, entries }
}

/** Checks the edited document is still a valid keys file (scopes included), then writes it atomically. */
export function save(keys: KeysDoc): void {
  const text = keys.doc.toString({ lineWidth: 0 })
  const { clients } = parseKeysText(text, keys.file)
  const resolver = loadScopeResolver()
  for (const client of clients) {
    resolver.expand(client.scopes)
    if (client.learn?.base) resolver.expand(client.learn.base)
  }
  writeFileAtomic(keys.file, text)
}

export function findClient(keys: KeysDoc, name: string): { index: number; node: YAMLMap } {
  const index = keys.clients.items.findIndex((item) => isMap(item) && item.get('name') === name)
  if (index === -1) throw new Error(`no client named "${name}" in ${keys.file}`)
  return { index, node: keys.clients.items[index] as YAMLMap }
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
  if (values['immich-login'] && values['upstream-key-env'])
    throw new UsageError('--immich-login mints the Immich key: it replaces --upstream-key-env')
  if (!CLIENT_NAME.test(values.name))
    throw new UsageError(
      `--name: 1–64 letters, digits, ".", "_" or "-" (it labels logs and metrics)`
    )
  const scopes = list(values.scopes)
  try {
    loadScopeResolver().expand(scopes)
  } catch (err) {
    throw new Error(`--scopes ${(err as Error).message}`, { cause: err })
  }
  const allowFrom = list(values['allow-from'])
  try {
    if (allowFrom.length) new AddressSet(allowFrom)
  } catch (err) {
    throw new Error(`--allow-from: ${(err as Error).message}`, { cause: err })
  }
  const albums = list(values.albums)
  if (values.albums !== undefined && albums.length === 0)
    throw new UsageError('--albums: expected album ids, comma-separated')
  const upstreamKeyEnv = values['upstream-key-env'] ?? DEFAULT_UPSTREAM_KEY_ENV
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(upstreamKeyEnv))
    throw new UsageError('--upstream-key-env: expected an environment variable name')

  const keys = openKeys(values.file)
  if (keys.entries.some((c) => c.name === values.name))
    throw new Error(
      `a client named "${values.name}" already exists in ${keys.file} (rotate or revoke it)`
    )
  const key = generateKey()
  const learnBase = values.learn ? scopes : undefined
  const entry: ClientEntry = {
    name: values.name,
    keyHash: keyHash(key),
    scopes: values.learn ? [] : scopes,
    ...(values['immich-login'] ? {} : { upstreamKeyEnv }),
    ...(values.learn ? { learn: learnField(values.for, learnBase) } : {}),
    ...(values['report-only'] ? { reportOnly: true } : {}),
    ...(values.expires ? { expiresAt: instant(values.expires, '--expires') } : {}),
    ...(allowFrom.length ? { allowFrom } : {}),
    ...(albums.length ? { albums } : {}),
    ...(values.description ? { description: values.description } : {}),
    createdAt: new Date().toISOString(),
  }
  if (values['immich-login']) {
    const resolver = loadScopeResolver()
    const { permissions } = heldPermissions(entry, resolver)
    entry.immichKey = await immichSession(values['immich-login'], values['immich-url'], (session) =>
      mintInto(session, keys.file, entry.name, permissions)
    )
  }
  const node = keys.doc.createNode(entry) as YAMLMap
  for (const field of ['scopes', 'allowFrom', 'albums']) {
    const seq = node.get(field)
    if (isSeq(seq)) seq.flow = true
  }
  keys.clients.add(node)
  save(keys)
  if (entry.immichKey) {
    out(
      `minted an Immich API key for ${entry.name} with ${entry.immichKey.permissions.length} permissions (id ${entry.immichKey.id}); its secret is in ${mintedSecretsFile(keys.file)}`
    )
  } else if (!process.env[upstreamKeyEnv]) {
    process.stderr.write(
      `note: ${upstreamKeyEnv} is not set in this shell; the gateway must have it (an Immich API key) or it refuses the keys file\n`
    )
  }
  out(`added client ${entry.name} to ${keys.file}`)
  if (entry.learn)
    out(
      `  learning${entry.learn.until ? ` until ${entry.learn.until}` : ''}: see \`keys usage ${entry.name}\`, then \`keys tighten ${entry.name}\``
    )
  out(
    `  scopes: ${entry.scopes.join(', ') || '(learning)'}; Immich key ${entry.immichKey ? 'minted' : `from $${upstreamKeyEnv}`}${entry.expiresAt ? `; expires ${entry.expiresAt}` : ''}${allowFrom.length ? `; from ${allowFrom.join(', ')}` : ''}${albums.length ? `; only albums ${albums.join(', ')}` : ''}`
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
  const now = Date.now()
  const rows = keys.entries.map((c) => {
    const expired = c.expiresAt !== undefined && Date.parse(c.expiresAt) <= now
    const grace = (c.previous ?? []).filter((p) => Date.parse(p.validUntil) > now)
    return [
      c.name,
      (c.scopes.join(',') || '-') +
        (c.learn ? ` (learning${c.learn.base ? ` ${c.learn.base.join(',')}` : ''})` : '') +
        (c.reportOnly ? ' (report-only)' : ''),
      c.upstreamKeyEnv ?? `minted ${c.immichKey?.id ?? ''}`,
      c.expiresAt ? `${c.expiresAt}${expired ? ' (EXPIRED)' : ''}` : 'never',
      c.allowFrom?.join(',') ?? 'any',
      grace.length ? `old key valid until ${grace.map((p) => p.validUntil).join(', ')}` : '',
    ]
  })
  const header = ['NAME', 'SCOPES', 'UPSTREAM KEY ENV', 'EXPIRES', 'ALLOW FROM', 'ROTATION']
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
  const { index } = findClient(keys, name)
  await revokeMinted(
    keys,
    keys.entries.find((c) => c.name === name)!,
    values['immich-login'],
    values['immich-url']
  )
  keys.clients.delete(index)
  save(keys)
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
  const { node } = findClient(keys, name)
  const now = Date.now()
  const old = String(node.get('keyHash'))
  const previous = (keys.entries.find((c) => c.name === name)!.previous ?? []).filter(
    (p) => Date.parse(p.validUntil) > now
  )
  const validUntil = new Date(now + graceMs).toISOString()
  if (graceMs > 0) previous.push({ keyHash: old, validUntil })
  const key = generateKey()
  node.set('keyHash', keyHash(key))
  if (previous.length) node.set('previous', keys.doc.createNode(previous))
  else node.delete('previous')
  if (values['immich-login'])
    await rotateMinted(
      keys,
      node,
      keys.entries.find((c) => c.name === name)!,
      values['immich-login'],
      values['immich-url']
    )
  save(keys)
  out(
    `rotated ${name} in ${keys.file}; ${graceMs > 0 ? `the old key works until ${validUntil}` : 'the old key no longer works'}`
  )
  out('The new key is shown only now; give it to the client:')
  out(key)
  return 0
}

registerCommand('keys add', add)
registerCommand('keys list', listCommand)
registerCommand('keys revoke', revoke)
registerCommand('keys rotate', rotate)
