import { watch, type FSWatcher } from 'node:fs'
import { stat } from 'node:fs/promises'
import { basename, dirname } from 'node:path'
import type { Logger } from 'pino'
import { sha256Hex } from './hash.js'
import { GATEWAY_KEY_PATTERN } from './keygen.js'
import {
  buildKeyTable,
  parseKeysText,
  readKeysFile,
  type GatewayClient,
  type KeyTable,
} from './keys-file.js'
import { nonAdminPermissions } from './least-privilege.js'
import { mintedSecretsFile, readMintedSecrets } from './minted-secrets.js'
import { loadScopeResolver, type PermissionCatalogue } from './scopes.js'

export interface KeysStoreOptions {
  /** Absolute path of the keys file. */
  file: string
  /** A missing file at boot is an error (the path was configured) rather than an empty table. */
  required: boolean
  /** Presets file; undefined → the shipped config/scopes.yaml. */
  presetsFile?: string
  /** The gateway's permission catalogue (Deps); undefined → the shipped route table's. */
  catalogue?: PermissionCatalogue
  /** The environment loadConfig resolved, for clients with `upstreamKeyEnv`. */
  env: Readonly<Record<string, string | undefined>>
  logger: Logger
  /** How often the file's stat is checked, as a fallback to fs.watch (ms). */
  pollMs: number
}

/** The log message of a client disabled for a missing Immich key (`config check` counts these as problems). */
export const CLIENT_DISABLED = 'client disabled: its Immich API key is missing'

export type KeyLookup =
  | { status: 'ok'; client: GatewayClient; rotated: boolean }
  | { status: 'expired'; client: GatewayClient }
  | { status: 'unknown' }

const EMPTY: KeyTable = { byHash: new Map(), clients: new Map(), files: [] }

/** What identifies a version of a file without reading it. */
async function signature(path: string): Promise<string> {
  try {
    const s = await stat(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`
  } catch {
    return 'missing'
  }
}

async function fileSignatures(files: readonly string[]): Promise<string> {
  return (await Promise.all(files.map(signature))).join('|')
}

/**
 * The client table, reloaded without a restart when the keys file, its secrets file, a client's
 * upstreamKeyFile or the presets file changes: fs.watch on the directory (it sees the rename of an
 * atomic write) plus a cheap stat every `pollMs` (where fs.watch is unreliable: network and container
 * bind mounts). A bad edit keeps the previous table and logs an error naming the field; a deleted
 * keys file empties the table (fail closed); a client whose Immich key is missing is disabled alone.
 */
export class KeysStore {
  private table: KeyTable = EMPTY
  private signatures = ''
  /** Signature of a zero-byte keys file seen once, and of the one already warned about. */
  private emptySeen: string | undefined
  private emptyWarned: string | undefined
  private readonly secretsFile: string
  private checking: Promise<void> | undefined
  private queued: Promise<void> | undefined
  private watcher: FSWatcher | undefined
  private timer: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined

  private constructor(private readonly options: KeysStoreOptions) {
    this.secretsFile = mintedSecretsFile(options.file)
  }

  /** Loads the file once (an error here stops the boot) and starts watching it. */
  static async open(options: KeysStoreOptions): Promise<KeysStore> {
    const store = new KeysStore(options)
    const fixed = await store.fixedSignatures()
    const { table, exists } = store.load()
    store.table = table
    store.signatures = `${fixed}#${await fileSignatures(table.files)}`
    if (!exists)
      options.logger.warn(
        { file: options.file },
        'keys file not found: no gateway keys until it is created'
      )
    store.warnDisabled()
    store.watch()
    return store
  }

  get clientCount(): number {
    return this.table.clients.size
  }

  /** `key` must already match GATEWAY_KEY_PATTERN. One hash and one Map lookup: no secret is compared. */
  lookup(key: string, now = Date.now()): KeyLookup {
    if (!GATEWAY_KEY_PATTERN.test(key)) return { status: 'unknown' }
    const entry = this.table.byHash.get(sha256Hex(key))
    if (entry === undefined) return { status: 'unknown' }
    if (entry.validUntil !== undefined && now >= entry.validUntil) return { status: 'unknown' }
    if (entry.client.expiresAt !== undefined && now >= entry.client.expiresAt)
      return { status: 'expired', client: entry.client }
    return { status: 'ok', client: entry.client, rotated: entry.validUntil !== undefined }
  }

  /** Re-reads the files if their stat changed. Exposed for tests; the watcher and timer call it. */
  check(): Promise<void> {
    if (this.checking === undefined) {
      this.checking = this.doCheck().finally(() => {
        this.checking = undefined
      })
      return this.checking
    }
    // One is running and may have read the files before the caller's change: queue one more after it.
    this.queued ??= this.checking
      .catch(() => {})
      .then(() => {
        this.queued = undefined
        return this.check()
      })
    return this.queued
  }

  close(): void {
    this.watcher?.close()
    clearInterval(this.timer)
    clearTimeout(this.debounce)
  }

  /** Clients disabled for a missing Immich key, with what is missing. */
  get disabledClients(): { client: string; missing: string }[] {
    return [...this.table.clients.values()]
      .filter((c) => c.disabled !== undefined)
      .map((c) => ({ client: c.name, missing: c.disabled! }))
  }

  private warnDisabled(): void {
    for (const { client, missing } of this.disabledClients)
      this.options.logger.warn({ file: this.options.file, client, missing }, CLIENT_DISABLED)
  }

  /** The keys file first, the secrets and presets files: what every load reads. */
  private fixedSignatures(): Promise<string> {
    const { file, presetsFile } = this.options
    return fileSignatures([file, this.secretsFile, ...(presetsFile ? [presetsFile] : [])])
  }

  private load(): { table: KeyTable; exists: boolean } {
    const { file, required, env, presetsFile, catalogue } = this.options
    const { text, exists } = readKeysFile(file, !required)
    const resolver = loadScopeResolver(presetsFile, catalogue)
    const table = buildKeyTable(parseKeysText(text, file), resolver, file, {
      env,
      mintedSecrets: readMintedSecrets(file),
      secretsFile: this.secretsFile,
      baseDir: dirname(file),
      defaultLearnBase: nonAdminPermissions(),
    })
    return { table, exists }
  }

  private async doCheck(): Promise<void> {
    // Taken before reading: a write that lands while the files are read is seen by the next check.
    const fixed = await this.fixedSignatures()
    const current = `${fixed}#${await fileSignatures(this.table.files)}`
    if (current === this.signatures) return
    const { logger, file } = this.options
    if (current.startsWith('missing|')) {
      // Only a file that was there is "removed" (the CLI writes the secrets file first on a new setup).
      if (!this.signatures.startsWith('missing|'))
        logger.warn({ file }, 'keys file removed: every gateway key is refused until it is back')
      this.signatures = current
      this.table = EMPTY
      return
    }
    // A zero-byte file is usually an editor in the middle of a save (truncate, then write): wait for
    // the content, and say so once if it stays empty.
    if (/^\d+:0:/.test(current)) {
      if (this.emptySeen === current && this.emptyWarned !== current) {
        this.emptyWarned = current
        logger.warn(
          { file, clients: this.table.clients.size },
          'keys file is empty (0 bytes): ignored, keeping the previous keys until it has content'
        )
      }
      this.emptySeen = current
      return
    }
    try {
      const { table } = this.load()
      this.table = table
      // The table may name other upstreamKeyFile paths than the previous one.
      this.signatures = `${fixed}#${await fileSignatures(table.files)}`
      logger.info({ file, clients: table.clients.size }, 'keys file reloaded')
      this.warnDisabled()
    } catch (err) {
      this.signatures = current
      logger.error(
        { file, error: (err as Error).message },
        'keys file reload failed: keeping the previous keys'
      )
    }
  }

  private watch(): void {
    const { file, pollMs } = this.options
    const schedule = () => {
      clearTimeout(this.debounce)
      this.debounce = setTimeout(() => void this.check(), 25)
      this.debounce.unref()
    }
    try {
      const names = new Set([basename(file), basename(this.secretsFile)])
      this.watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === null || names.has(changed)) schedule()
      })
      this.watcher.on('error', () => {
        this.watcher?.close()
        this.watcher = undefined
      })
    } catch {
      // No watchable directory (yet): the poll below still sees the file appear.
    }
    this.timer = setInterval(() => void this.check(), pollMs)
    this.timer.unref()
  }
}
