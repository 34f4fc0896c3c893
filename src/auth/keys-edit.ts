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
  CLIENT_NAME,
  parseKeysText,
  readKeysFile,
  writeFileAtomic,
  type ClientEntry,
} from './keys-file.js'
import { loadScopeResolver } from './scopes.js'
import { AddressSet } from '../net.js'

/** The Immich key env var a new client uses when none is given. */
export const DEFAULT_UPSTREAM_KEY_ENV = 'IMMICH_API_KEY'

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/

const HEADER = ` Gateway API keys (see config/keys.example.yaml). Written by \`immich-gateway keys\` and the
 console; the gateway reloads this file when it changes. Only hashes of keys are stored here.`

/** Which input was wrong, so the CLI can name its flag and the console its form field. */
export type KeyEditField = 'name' | 'scopes' | 'upstreamKeyEnv' | 'expiresAt' | 'allowFrom'

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
  /** Permissions, wildcards, `all` or presets. */
  scopes: string[]
  upstreamKeyEnv?: string
  /** ISO 8601 instant. */
  expiresAt?: string
  allowFrom?: string[]
  description?: string
}

interface KeysDoc {
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
function openKeys(file: string): KeysDoc {
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
function save(keys: KeysDoc, options: KeyEditOptions, added?: string): void {
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

function findClient(keys: KeysDoc, name: string): YAMLMap {
  const node = keys.clients.items.find((item) => isMap(item) && item.get('name') === name)
  if (node === undefined) throw new KeyEditError(`no client named "${name}" in ${keys.file}`)
  return node as YAMLMap
}

/** Validates a new client's fields; throws KeyEditError naming the field. */
function checkNewClient(
  input: NewClient,
  options: KeyEditOptions
): Required<Pick<NewClient, 'upstreamKeyEnv'>> {
  if (!CLIENT_NAME.test(input.name))
    throw new KeyEditError(
      '1–64 letters, digits, ".", "_" or "-", starting with a letter or digit (it labels logs and metrics)',
      'name'
    )
  if (input.scopes.length === 0) throw new KeyEditError('at least one scope is needed', 'scopes')
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
  if (input.expiresAt !== undefined && Number.isNaN(Date.parse(input.expiresAt)))
    throw new KeyEditError('expected an ISO 8601 date/time', 'expiresAt')
  const upstreamKeyEnv = input.upstreamKeyEnv ?? DEFAULT_UPSTREAM_KEY_ENV
  if (!ENV_NAME.test(upstreamKeyEnv))
    throw new KeyEditError('expected an environment variable name', 'upstreamKeyEnv')
  return { upstreamKeyEnv }
}

/**
 * Adds a client with a new key. Returns the key (shown once, never stored: the file holds its
 * sha-256) and the entry as written.
 */
export function addClient(
  file: string,
  input: NewClient,
  options: KeyEditOptions = {}
): { key: string; entry: ClientEntry } {
  const { upstreamKeyEnv } = checkNewClient(input, options)
  const keys = openKeys(file)
  if (keys.entries.some((c) => c.name === input.name))
    throw new KeyEditError(
      `a client named "${input.name}" already exists in ${keys.file} (rotate or revoke it)`
    )
  const key = generateKey()
  const entry: ClientEntry = {
    name: input.name,
    keyHash: keyHash(key),
    scopes: input.scopes,
    upstreamKeyEnv,
    ...(input.expiresAt ? { expiresAt: new Date(Date.parse(input.expiresAt)).toISOString() } : {}),
    ...(input.allowFrom?.length ? { allowFrom: input.allowFrom } : {}),
    ...(input.description ? { description: input.description } : {}),
    createdAt: new Date(options.now ?? Date.now()).toISOString(),
  }
  const node = keys.doc.createNode(entry) as YAMLMap
  for (const field of ['scopes', 'allowFrom']) {
    const seq = node.get(field)
    if (isSeq(seq)) seq.flow = true
  }
  keys.clients.add(node)
  save(keys, options, input.name)
  return { key, entry }
}

/**
 * Gives a client a new key. The old one keeps working for `graceMs` (0: not at all); keys rotated out
 * earlier stay while their own grace lasts. Returns the new key and when the old one stops working.
 */
export function rotateClient(
  file: string,
  name: string,
  graceMs: number,
  options: KeyEditOptions = {}
): { key: string; oldValidUntil?: string } {
  const keys = openKeys(file)
  const node = findClient(keys, name)
  const now = options.now ?? Date.now()
  const previous = (keys.entries.find((c) => c.name === name)!.previous ?? []).filter(
    (p) => Date.parse(p.validUntil) > now
  )
  const validUntil = new Date(now + graceMs).toISOString()
  if (graceMs > 0) previous.push({ keyHash: String(node.get('keyHash')), validUntil })
  const key = generateKey()
  node.set('keyHash', keyHash(key))
  if (previous.length) node.set('previous', keys.doc.createNode(previous))
  else node.delete('previous')
  save(keys, options)
  return graceMs > 0 ? { key, oldValidUntil: validUntil } : { key }
}

/** Removes a client: its key (and any rotated-out one) stops working at the next reload. */
export function revokeClient(file: string, name: string, options: KeyEditOptions = {}): void {
  const keys = openKeys(file)
  keys.clients.delete(keys.clients.items.indexOf(findClient(keys, name)))
  save(keys, options)
}
