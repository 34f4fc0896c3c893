/**
 * The keys file (YAML, `config/keys.yaml` by default, env GATEWAY_KEYS_FILE): one entry per client
 * with the sha-256 of its key (never the key) and its scopes. The Immich API key the gateway injects
 * for a client comes from a file it names (`upstreamKeyFile`, the Docker secrets convention), an
 * environment variable (`upstreamKeyEnv`), or else the upstream secrets file beside the keys file
 * (`keys.upstream-secrets.json`, 0600: keys minted by `--immich-login` or given to
 * `--upstream-key-stdin`). A client whose Immich key is missing is disabled, never the whole file.
 */
import { createHash, randomBytes } from 'node:crypto'
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from 'node:fs'
import { basename, dirname, isAbsolute, join, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import type { ResolvedEnvironment } from '../config/schema.js'
import type { AlbumBinding } from '../env.js'
import { AddressSet } from '../net.js'
import { credentialIdentity, KEY_HASH_PATTERN } from './hash.js'
import { GATEWAY_KEY_PATTERN } from './keygen.js'
import type { ScopeResolver } from './scopes.js'

/**
 * The keys file a config uses: the policy's `keysFile` (it must exist), else the one the environment
 * resolved (GATEWAY_KEYS_FILE or config/keys.yaml: a missing one means no keys yet), else none (a
 * config built without an environment, as in tests).
 */
export function keysFileFor(
  keysFileOption: string | undefined,
  environment: ResolvedEnvironment | undefined
): { file: string; required: boolean } | undefined {
  if (keysFileOption) return { file: resolve(keysFileOption), required: true }
  if (environment?.keysFile) return { file: environment.keysFile, required: false }
  return undefined
}

export class KeysFileError extends Error {
  override name = 'KeysFileError'
}

/** An environment variable's name. */
export const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/
/** Client names are metric labels: bounded, plain. */
export const CLIENT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/

const timestamp = z
  .string()
  .refine(
    (s) => !Number.isNaN(Date.parse(s)),
    'expected an ISO 8601 date/time such as 2026-12-31T00:00:00Z'
  )

const keyHashField = z
  .string()
  .refine(
    (s) => !GATEWAY_KEY_PATTERN.test(s),
    'this is a key, not its hash: store "sha256:<hex>" (keys add does it), and treat this key as leaked'
  )
  .refine(
    (s) => KEY_HASH_PATTERN.test(s),
    'expected "sha256:" followed by 64 lower-case hex digits'
  )

export const ALBUM_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const albumIdsField = z
  .array(z.string().regex(ALBUM_ID, 'expected an Immich album id (a UUID)'))
  .min(1)

/** The binding a client's `albums` list makes (ids lower-cased, tag = digest of the sorted set). */
export function albumBinding(ids: readonly string[]): AlbumBinding {
  const set = new Set(ids.map((id) => id.toLowerCase()))
  const tag = createHash('sha256')
    .update([...set].sort().join(','))
    .digest('base64url')
    .slice(0, 16)
  return { ids: set, tag }
}

const clientSchema = z
  .object({
    name: z
      .string()
      .regex(CLIENT_NAME, '1–64 letters, digits, ".", "_" or "-", starting with a letter or digit')
      .describe('Client name: the label in logs and metrics.'),
    keyHash: keyHashField.describe(
      'sha256 of the key, as "sha256:<hex>". The key itself is never stored.'
    ),
    scopes: z
      .array(z.string().min(1))
      .describe(
        'Immich permissions, wildcards (asset.*), all, or presets from config/scopes.yaml. May be empty only while learning.'
      ),
    upstreamKeyEnv: z
      .string()
      .regex(ENV_NAME, 'expected an environment variable name')
      .optional()
      .describe(
        "Env var holding the Immich API key injected for this client. Without it, upstreamKeyFile or immichKey, the key is the client's entry in the upstream secrets file beside the keys file (`keys add --upstream-key-stdin`)."
      ),
    upstreamKeyFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'File holding the Immich API key injected for this client (Docker secrets: /run/secrets/NAME); relative to the keys file. Surrounding whitespace is ignored.'
      ),
    learn: z
      .object({
        until: timestamp
          .optional()
          .describe(
            'Learning ends at this instant; the key then has its `scopes`. Unset: until tightened.'
          ),
        base: z
          .array(z.string().min(1))
          .min(1)
          .optional()
          .describe(
            'What the key may do while learning. Default: every permission that is not admin-only.'
          ),
      })
      .strict()
      .optional()
      .describe(
        'Learn mode (`keys learn`): the key may do what `base` allows, and each call records its permission and route (`keys usage`, `keys tighten`).'
      ),
    reportOnly: z
      .boolean()
      .optional()
      .describe(
        'Calls outside `scopes` are forwarded, logged and counted (immich_gateway_scope_would_refuse_total) instead of refused.'
      ),
    immichKey: z
      .object({
        id: z.string().min(1).describe('Id of the Immich API key minted for this client.'),
        permissions: z
          .array(z.string().min(1))
          .min(1)
          .describe('The Immich permissions it was minted with.'),
      })
      .strict()
      .optional()
      .describe(
        'An Immich API key minted by `keys add --immich-login`; its secret is in the upstream secrets file beside this one, never here.'
      ),
    expiresAt: timestamp.optional().describe('After this instant the key gets 401.'),
    allowFrom: z
      .array(z.string())
      .optional()
      .describe('Only these addresses/CIDRs may use the key.'),
    previous: z
      .array(
        z
          .object({
            keyHash: keyHashField.describe('Hash of a rotated-out key.'),
            validUntil: timestamp.describe('The rotated-out key works until then.'),
          })
          .strict()
      )
      .optional()
      .describe('Keys replaced by `keys rotate`, valid for a grace period.'),
    albums: albumIdsField
      .optional()
      .describe(
        'Album ids: the key sees only the assets of these albums, and only these albums (policies/album-binding).'
      ),
    createdAt: timestamp.optional().describe('When the key was made (informational).'),
    description: z.string().max(500).optional().describe('Free text for humans.'),
  })
  .strict()
  .refine((c) => c.scopes.length > 0 || c.learn !== undefined, {
    path: ['scopes'],
    message: 'at least one scope (an empty list is allowed only while learning)',
  })
  .refine((c) => [c.upstreamKeyEnv, c.upstreamKeyFile, c.immichKey].filter(Boolean).length <= 1, {
    path: ['upstreamKeyFile'],
    message: 'set at most one of upstreamKeyEnv, upstreamKeyFile, immichKey',
  })

const keysFileSchema = z
  .object({
    clients: z.array(clientSchema).nullable().default([]).describe('One entry per client key.'),
  })
  .strict()

export type KeysFile = { clients: ClientEntry[] }
export type ClientEntry = z.infer<typeof clientSchema>

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}

/** Parses keys-file text; errors name the field (`clients[1].scopes: ...`) and never echo a value. */
export function parseKeysText(text: string, source: string): KeysFile {
  let raw: unknown
  try {
    raw = parseYaml(text)
  } catch (err) {
    // Only the first line: the rest is a snippet of the file.
    throw new KeysFileError(`${source}: not valid YAML: ${firstLine((err as Error).message)}`)
  }
  const parsed = keysFileSchema.safeParse(raw ?? {})
  if (!parsed.success) {
    const lines = parsed.error.issues.map(
      (issue) => `${source}: ${fieldPath(issue.path, raw)}: ${issue.message}`
    )
    throw new KeysFileError(lines.join('\n'))
  }
  return { clients: parsed.data.clients ?? [] }
}

/** `clients[2] (photo-frame).scopes` — the index and, when readable, the client's name. */
function fieldPath(path: readonly PropertyKey[], raw: unknown): string {
  let out = ''
  path.forEach((part, i) => {
    if (typeof part === 'number') {
      out += `[${part}]`
      if (i === 1 && path[0] === 'clients') {
        const name = (raw as { clients?: { name?: unknown }[] })?.clients?.[part]?.name
        if (typeof name === 'string' && CLIENT_NAME.test(name)) out += ` (${name})`
      }
    } else out += `${out ? '.' : ''}${String(part)}`
  })
  return out || '(root)'
}

/** A client as the gateway holds it: scopes expanded, its upstream key read from the environment. */
export interface GatewayClient {
  name: string
  scopes: ReadonlySet<string>
  /** The Immich API key injected upstream (secret: never logged). */
  upstreamKey: string
  upstreamIdentity: string
  /** Set when the client's Immich key is missing: what is missing. Its requests get 503. */
  disabled?: string
  /** epoch ms */
  expiresAt?: number
  allowFrom?: AddressSet
  albums?: AlbumBinding
  /** Learn mode: while `until` (epoch ms) has not passed, the key holds `scopes` here instead. */
  learning?: { until?: number; scopes: ReadonlySet<string> }
  /** Calls outside `scopes` are forwarded and counted instead of refused. */
  reportOnly?: boolean
}

/** Whether the client is in learn mode at `now` (it then holds `learning.scopes`). */
export function isLearning(client: GatewayClient, now = Date.now()): boolean {
  const l = client.learning
  return l !== undefined && (l.until === undefined || now < l.until)
}

export interface KeyTableOptions {
  /** Environment variables (as resolved by loadConfig), for `upstreamKeyEnv`. */
  env?: Readonly<Record<string, string | undefined>>
  /** The upstream secrets file's path, for messages. */
  secretsFile?: string
  /** What a relative `upstreamKeyFile` is relative to: the keys file's directory. */
  baseDir?: string
  /** Immich keys by client name, minted or stored by the CLI (src/auth/minted-secrets.ts). */
  mintedSecrets?: ReadonlyMap<string, string>
  /** The learning base when `learn.base` is unset (every non-admin permission). */
  defaultLearnBase?: ReadonlySet<string>
}

interface KeyTableEntry {
  client: GatewayClient
  /** Set for a rotated-out key: epoch ms until which it still works. */
  validUntil?: number
}

export interface KeyTable {
  /** Keyed by the lower-case hex sha-256 of the key. */
  byHash: Map<string, KeyTableEntry>
  clients: Map<string, GatewayClient>
  /** Files the table was read from besides the keys and secrets files (upstreamKeyFile paths). */
  files: string[]
}

/** The client's Immich key, or what is missing (never the key itself in a message). */
function upstreamKeyOf(
  entry: ClientEntry,
  options: KeyTableOptions
): { key: string; file?: string } | { missing: string; file?: string } {
  if (entry.upstreamKeyFile) {
    const file = isAbsolute(entry.upstreamKeyFile)
      ? entry.upstreamKeyFile
      : resolve(options.baseDir ?? '.', entry.upstreamKeyFile)
    let key: string
    try {
      key = readFileSync(file, 'utf8').trim()
    } catch (err) {
      return {
        missing: `upstreamKeyFile ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`,
        file,
      }
    }
    return key ? { key, file } : { missing: `upstreamKeyFile ${file} is empty`, file }
  }
  if (entry.upstreamKeyEnv) {
    const key = options.env?.[entry.upstreamKeyEnv]
    return key ? { key } : { missing: `environment variable ${entry.upstreamKeyEnv} is not set` }
  }
  const key = options.mintedSecrets?.get(entry.name)
  if (key) return { key }
  const where = options.secretsFile ?? 'the upstream secrets file'
  return {
    missing: entry.immichKey
      ? `no secret for its minted Immich key in ${where} (mint it again with \`immich-gateway keys rotate ${entry.name} --immich-login EMAIL\`)`
      : `no Immich API key for it in ${where} (store one with \`immich-gateway keys set-upstream ${entry.name} --upstream-key-stdin\`, or set upstreamKeyEnv or upstreamKeyFile)`,
  }
}

/**
 * Validates every entry (scopes against the permission catalogue and presets, CIDRs, env vars) and
 * builds the lookup table. Throws KeysFileError naming the client and field.
 */
export function buildKeyTable(
  file: KeysFile,
  scopes: ScopeResolver,
  source: string,
  options: KeyTableOptions = {}
): KeyTable {
  const byHash = new Map<string, KeyTableEntry>()
  const clients = new Map<string, GatewayClient>()
  const files = new Set<string>()
  const problems: string[] = []
  file.clients.forEach((entry, i) => {
    try {
      addClient(entry, i)
    } catch (err) {
      if (!(err instanceof KeysFileError)) throw err
      problems.push(err.message)
    }
  })
  if (problems.length) {
    // Said along with the errors, so one run (`config check`) shows everything to fix.
    for (const client of clients.values())
      if (client.disabled !== undefined)
        problems.push(`${source}: client ${client.name} is disabled: ${client.disabled}`)
    throw new KeysFileError(problems.join('\n'))
  }
  return { byHash, clients, files: [...files] }

  function addClient(entry: ClientEntry, i: number): void {
    const where = `${source}: clients[${i}] (${entry.name})`
    if (clients.has(entry.name)) throw new KeysFileError(`${where}.name: duplicate client name`)
    const expand = (list: readonly string[], field: string): Set<string> => {
      try {
        return scopes.expand(list)
      } catch (err) {
        throw new KeysFileError(
          `${where}.${field}${(err as Error).message.startsWith('[') ? '' : ': '}${(err as Error).message}`
        )
      }
    }
    const expanded = expand(entry.scopes, 'scopes')
    let learning: GatewayClient['learning']
    if (entry.learn) {
      const base = entry.learn.base
        ? expand(entry.learn.base, 'learn.base')
        : (options.defaultLearnBase ?? new Set<string>())
      learning = {
        scopes: base,
        ...(entry.learn.until ? { until: Date.parse(entry.learn.until) } : {}),
      }
    }
    let allowFrom: AddressSet | undefined
    if (entry.allowFrom) {
      try {
        allowFrom = new AddressSet(entry.allowFrom)
      } catch (err) {
        throw new KeysFileError(`${where}.allowFrom: ${(err as Error).message}`)
      }
    }
    const upstream = upstreamKeyOf(entry, options)
    if (upstream.file) files.add(upstream.file)
    const client: GatewayClient = {
      name: entry.name,
      scopes: expanded,
      ...('key' in upstream
        ? { upstreamKey: upstream.key, upstreamIdentity: credentialIdentity('u:', upstream.key) }
        : { upstreamKey: '', upstreamIdentity: '', disabled: upstream.missing }),
      ...(entry.expiresAt ? { expiresAt: Date.parse(entry.expiresAt) } : {}),
      ...(allowFrom ? { allowFrom } : {}),
      ...(entry.albums ? { albums: albumBinding(entry.albums) } : {}),
      ...(learning ? { learning } : {}),
      ...(entry.reportOnly ? { reportOnly: true } : {}),
    }
    clients.set(entry.name, client)
    const add = (hash: string, field: string, validUntil?: number) => {
      const hex = hash.slice('sha256:'.length)
      if (byHash.has(hex))
        throw new KeysFileError(`${where}.${field}: the same key hash appears twice in the file`)
      byHash.set(hex, validUntil === undefined ? { client } : { client, validUntil })
    }
    add(entry.keyHash, 'keyHash')
    entry.previous?.forEach((prev, j) =>
      add(prev.keyHash, `previous[${j}].keyHash`, Date.parse(prev.validUntil))
    )
  }
}

/** Reads a keys file; a missing file is an empty one when `missingOk`. */
export function readKeysFile(path: string, missingOk: boolean): { text: string; exists: boolean } {
  try {
    return { text: readFileSync(path, 'utf8'), exists: true }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && missingOk)
      return { text: '', exists: false }
    throw new KeysFileError(
      `${path}: cannot read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`
    )
  }
}

/**
 * Replaces `path` atomically: the new content goes to a temporary file in the same directory, is
 * flushed, then renamed over the old one, so the gateway's reloader never reads half a file.
 * The file is always left readable by its owner only (0600), an existing 0644 one included.
 */
export function writeFileAtomic(path: string, text: string): void {
  mkdirSync(dirname(path), { recursive: true })
  const mode = 0o600
  const temp = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`
  )
  const fd = openSync(temp, 'wx', mode)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  try {
    renameSync(temp, path)
  } catch (err) {
    unlinkSync(temp)
    throw err
  }
}
