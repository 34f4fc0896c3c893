/**
 * Adding, rotating and revoking clients in the keys file: the one implementation behind both the
 * `immich-gateway keys` CLI and the web console, so the two never disagree. Edits keep the file's
 * comments and layout, are validated as a whole before writing, and are written atomically (a running
 * gateway's reloader never reads half a file).
 */
import { isMap, isSeq, parseDocument, type Document, type YAMLMap, type YAMLSeq } from 'yaml'
import { keyHash } from './hash.js'
import { generateKey } from './keygen.js'
import {
  buildKeyTable,
  ALBUM_ID,
  CLIENT_NAME,
  ENV_NAME,
  parseKeysText,
  readKeysFile,
  writeFileAtomic,
  type ClientEntry,
} from './keys-file.js'
import { loadScopeResolver } from './scopes.js'
import { AddressSet } from '../net.js'

/** The Immich key env var the console offers for a new client. */
export const DEFAULT_UPSTREAM_KEY_ENV = 'IMMICH_API_KEY'

const HEADER = ` Gateway API keys (see config/keys.example.yaml). Written by \`immich-gateway keys\` and the
 console; the gateway reloads this file when it changes. Only hashes of keys are stored here.`

/** Which input was wrong, so the CLI can name its flag and the console its form field. */
export type KeyEditField =
  'name' | 'scopes' | 'upstreamKeyEnv' | 'upstreamKeyFile' | 'expiresAt' | 'allowFrom' | 'albums'

/** An edit that cannot be made: bad input, a name taken, no such client. The file is left untouched. */
export class KeyEditError extends Error {
  override name = 'KeyEditError'
  constructor(
    message: string,
    readonly field?: KeyEditField
  ) {
    super(message)
  }
}

export interface KeyEditOptions {
  /** Presets file; undefined → the shipped config/scopes.yaml. */
  presetsFile?: string
  /**
   * Check the edit as the running gateway loads it, with the gateway's environment: a new client whose
   * Immich key is missing (its env var unset, its key file absent) is refused instead of being written
   * and then disabled (the console runs inside the gateway; the CLI usually does not).
   */
  asGatewayLoads?: { env: Record<string, string | undefined> }
  /** epoch ms; tests pass their own. */
  now?: number
}

export interface NewClient {
  name: string
  /** Permissions, wildcards, `all` or presets; empty only while learning. */
  scopes: string[]
  /** Where the Immich key comes from: at most one; none → the upstream secrets file. */
  upstreamKeyEnv?: string
  upstreamKeyFile?: string
  immichKey?: ClientEntry['immichKey']
  /** Learn mode (until an ISO 8601 instant, or until tightened); `scopes` is then its base. */
  learn?: { until?: string }
  reportOnly?: boolean
  /** ISO 8601 instant. */
  expiresAt?: string
  allowFrom?: string[]
  albums?: string[]
  description?: string
}

/** The keys file opened for editing: its YAML document (comments kept) and its validated entries. */
export interface KeysDoc {
  file: string
  doc: Document
  clients: YAMLSeq
  entries: ClientEntry[]
}

/** The clients of a keys file, validated (a missing file has none). */
export function readClients(file: string): ClientEntry[] {
  return parseKeysText(readKeysFile(file, true).text, file).clients
}

/** Opens the keys file as an editable YAML document, after checking it is a valid keys file. */
export function openKeys(file: string): KeysDoc {
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

/**
 * Checks the edited document is still a valid keys file (every client's scopes resolved), then
 * writes it atomically. With `asGatewayLoads`, a client named in `added` that the gateway would
 * disable is refused.
 */
export function saveKeys(keys: KeysDoc, options: KeyEditOptions = {}, added?: string): void {
  const text = keys.doc.toString({ lineWidth: 0 })
  const parsed = parseKeysText(text, keys.file)
  const resolver = loadScopeResolver(options.presetsFile)
  if (options.asGatewayLoads) {
    const table = buildKeyTable(parsed, resolver, keys.file, { env: options.asGatewayLoads.env })
    const disabled = added === undefined ? undefined : table.clients.get(added)?.disabled
    if (disabled !== undefined) throw new KeyEditError(disabled, 'upstreamKeyEnv')
  } else
    for (const client of parsed.clients) {
      resolver.expand(client.scopes)
      if (client.learn?.base) resolver.expand(client.learn.base)
    }
  writeFileAtomic(keys.file, text)
}

/** A client's node in the document and its validated entry. */
export function findClient(keys: KeysDoc, name: string): { node: YAMLMap; entry: ClientEntry } {
  const node = keys.clients.items.find((item) => isMap(item) && item.get('name') === name)
  const entry = keys.entries.find((c) => c.name === name)
  if (node === undefined || entry === undefined)
    throw new KeyEditError(`no client named "${name}" in ${keys.file}`)
  return { node: node as YAMLMap, entry }
}

/** Writes `value` as a one-line YAML list (`[a, b]`), the way every list in the file is written. */
export function setList(keys: KeysDoc, node: YAMLMap, field: string, value: readonly string[]) {
  const seq = keys.doc.createNode([...value])
  if (isSeq(seq)) seq.flow = true
  node.set(field, seq)
}

/** Validates a new client's fields; throws KeyEditError naming the field. */
function checkNewClient(input: NewClient, options: KeyEditOptions): void {
  if (!CLIENT_NAME.test(input.name))
    throw new KeyEditError(
      '1–64 letters, digits, ".", "_" or "-", starting with a letter or digit (it labels logs and metrics)',
      'name'
    )
  if (input.scopes.length === 0 && !input.learn)
    throw new KeyEditError('at least one scope is needed', 'scopes')
  try {
    loadScopeResolver(options.presetsFile).expand(input.scopes)
  } catch (err) {
    throw new KeyEditError((err as Error).message, 'scopes')
  }
  if (input.allowFrom?.length) {
    try {
      new AddressSet(input.allowFrom)
    } catch (err) {
      throw new KeyEditError((err as Error).message, 'allowFrom')
    }
  }
  const bad = input.albums?.find((id) => !ALBUM_ID.test(id))
  if (bad !== undefined) throw new KeyEditError(`"${bad}" is not an Immich album id`, 'albums')
  if (input.expiresAt !== undefined && Number.isNaN(Date.parse(input.expiresAt)))
    throw new KeyEditError('expected an ISO 8601 date/time', 'expiresAt')
  const sources = [input.upstreamKeyEnv, input.upstreamKeyFile, input.immichKey]
  if (sources.filter((s) => s !== undefined).length > 1)
    throw new KeyEditError(
      'one source for the Immich key: an environment variable, a file or a minted key',
      'upstreamKeyFile'
    )
  if (input.upstreamKeyEnv !== undefined && !ENV_NAME.test(input.upstreamKeyEnv))
    throw new KeyEditError('expected an environment variable name', 'upstreamKeyEnv')
}

/** A new client checked against the file, its key made, nothing written yet (see commitClient). */
export interface PreparedClient {
  keys: KeysDoc
  entry: ClientEntry
  /** The gateway key, shown once, never stored: the file holds its sha-256. */
  key: string
}

/**
 * Checks a new client (its fields, its name free in the file) and makes its key without writing
 * anything, so a caller can do slow work first (the CLI mints its Immich key) and then commitClient.
 */
export function prepareClient(
  file: string,
  input: NewClient,
  options: KeyEditOptions = {}
): PreparedClient {
  checkNewClient(input, options)
  const keys = openKeys(file)
  if (keys.entries.some((c) => c.name === input.name))
    throw new KeyEditError(
      `a client named "${input.name}" already exists in ${keys.file} (rotate or revoke it)`,
      'name'
    )
  const key = generateKey()
  const at = (iso: string) => new Date(Date.parse(iso)).toISOString()
  const entry: ClientEntry = {
    name: input.name,
    keyHash: keyHash(key),
    scopes: input.learn ? [] : input.scopes,
    ...(input.upstreamKeyEnv ? { upstreamKeyEnv: input.upstreamKeyEnv } : {}),
    ...(input.upstreamKeyFile ? { upstreamKeyFile: input.upstreamKeyFile } : {}),
    ...(input.immichKey ? { immichKey: input.immichKey } : {}),
    ...(input.learn
      ? {
          learn: {
            ...(input.learn.until ? { until: at(input.learn.until) } : {}),
            ...(input.scopes.length ? { base: input.scopes } : {}),
          },
        }
      : {}),
    ...(input.reportOnly ? { reportOnly: true } : {}),
    ...(input.expiresAt ? { expiresAt: at(input.expiresAt) } : {}),
    ...(input.allowFrom?.length ? { allowFrom: input.allowFrom } : {}),
    ...(input.albums?.length ? { albums: input.albums } : {}),
    ...(input.description ? { description: input.description } : {}),
    createdAt: new Date(options.now ?? Date.now()).toISOString(),
  }
  return { keys, entry, key }
}

/** Appends a prepared client (its entry as the caller may have completed it) and saves the file. */
export function commitClient(prepared: PreparedClient, options: KeyEditOptions = {}): void {
  const { keys, entry } = prepared
  const node = keys.doc.createNode(entry) as YAMLMap
  for (const field of ['scopes', 'allowFrom', 'albums']) {
    const seq = node.get(field)
    if (isSeq(seq)) seq.flow = true
  }
  const base = (node.get('learn') as YAMLMap | undefined)?.get?.('base')
  if (isSeq(base)) base.flow = true
  keys.clients.add(node)
  saveKeys(keys, options, entry.name)
}

/** Adds a client with a new key. Returns the key (shown once) and the entry as written. */
export function addClient(
  file: string,
  input: NewClient,
  options: KeyEditOptions = {}
): { key: string; entry: ClientEntry } {
  const prepared = prepareClient(file, input, options)
  commitClient(prepared, options)
  return { key: prepared.key, entry: prepared.entry }
}

/**
 * Gives a client a new key in the opened document (saved by the caller). The old one keeps working
 * for `graceMs` (0: not at all); keys rotated out earlier stay while their own grace lasts.
 */
export function rotateKey(
  keys: KeysDoc,
  name: string,
  graceMs: number,
  now = Date.now()
): { key: string; oldValidUntil?: string } {
  const { node, entry } = findClient(keys, name)
  const previous = (entry.previous ?? []).filter((p) => Date.parse(p.validUntil) > now)
  const validUntil = new Date(now + graceMs).toISOString()
  if (graceMs > 0) previous.push({ keyHash: entry.keyHash, validUntil })
  const key = generateKey()
  node.set('keyHash', keyHash(key))
  if (previous.length) node.set('previous', keys.doc.createNode(previous))
  else node.delete('previous')
  return graceMs > 0 ? { key, oldValidUntil: validUntil } : { key }
}

/** Rotates a client's key and saves the file. Returns the new key and when the old one stops working. */
export function rotateClient(
  file: string,
  name: string,
  graceMs: number,
  options: KeyEditOptions = {}
): { key: string; oldValidUntil?: string } {
  const keys = openKeys(file)
  const rotated = rotateKey(keys, name, graceMs, options.now)
  saveKeys(keys, options)
  return rotated
}

/** Removes a client from the opened document (saved by the caller). */
export function removeClient(keys: KeysDoc, name: string): ClientEntry {
  const { node, entry } = findClient(keys, name)
  keys.clients.delete(keys.clients.items.indexOf(node))
  return entry
}

/** Removes a client and saves the file: its key (and any rotated-out one) stops working at the next reload. */
export function revokeClient(file: string, name: string, options: KeyEditOptions = {}): void {
  const keys = openKeys(file)
  removeClient(keys, name)
  saveKeys(keys, options)
}
