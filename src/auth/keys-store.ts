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
import { readMintedSecrets } from './minted-secrets.js'
import { loadScopeResolver } from './scopes.js'

export interface KeysStoreOptions {
  /** Absolute path of the keys file. */
  file: string
  /** A missing file at boot is an error (the path was configured) rather than an empty table. */
  required: boolean
  /** Presets file; undefined → env GATEWAY_SCOPES_FILE or the shipped config/scopes.yaml. */
  presetsFile?: string
  logger: Logger
  /** How often the file's stat is checked, as a fallback to fs.watch (ms). */
  pollMs: number
}

export type KeyLookup =
  | { status: 'ok'; client: GatewayClient; rotated: boolean }
  | { status: 'expired'; client: GatewayClient }
  | { status: 'unknown' }

const EMPTY: KeyTable = { byHash: new Map(), clients: new Map() }

/** What identifies a version of a file without reading it. */
async function signature(path: string): Promise<string> {
  try {
    const s = await stat(path)
    return `${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`
  } catch {
    return 'missing'
  }
}

/**
 * The client table, reloaded without a restart when the keys file (or the presets file) changes:
 * fs.watch on the directory (it sees the rename of an atomic write) plus a cheap stat every `pollMs`
 * (where fs.watch is unreliable: network and container bind mounts). A bad edit keeps the previous
 * table and logs an error naming the field; a deleted file empties the table (fail closed).
 */
export class KeysStore {
  private table: KeyTable = EMPTY
  private signatures = ''
  private checking: Promise<void> | undefined
  private queued: Promise<void> | undefined
  private watcher: FSWatcher | undefined
  private timer: NodeJS.Timeout | undefined
  private debounce: NodeJS.Timeout | undefined

  private constructor(private readonly options: KeysStoreOptions) {}

  /** Loads the file once (an error here stops the boot) and starts watching it. */
  static async open(options: KeysStoreOptions): Promise<KeysStore> {
    const store = new KeysStore(options)
    store.signatures = await store.currentSignatures()
    const { table, exists } = store.load()
    store.table = table
    if (!exists)
      options.logger.warn(
        { file: options.file },
        'keys file not found: no gateway keys until it is created'
      )
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

  private presetsPath(): string | undefined {
    return this.options.presetsFile ?? process.env.GATEWAY_SCOPES_FILE
  }

  private async currentSignatures(): Promise<string> {
    const presets = this.presetsPath()
    return `${await signature(this.options.file)}|${presets ? await signature(presets) : ''}`
  }

  private load(): { table: KeyTable; exists: boolean } {
    const { file, required } = this.options
    const { text, exists } = readKeysFile(file, !required)
    const resolver = loadScopeResolver(this.presetsPath())
    const table = buildKeyTable(parseKeysText(text, file), resolver, file, {
      mintedSecrets: readMintedSecrets(file),
      defaultLearnBase: nonAdminPermissions(),
    })
    return { table, exists }
  }

  private async doCheck(): Promise<void> {
    const current = await this.currentSignatures()
    if (current === this.signatures) return
    const { logger, file } = this.options
    if (current.startsWith('missing|')) {
      this.signatures = current
      this.table = EMPTY
      logger.warn({ file }, 'keys file removed: every gateway key is refused until it is back')
      return
    }
    // A zero-byte file is an editor in the middle of a save (truncate, then write): wait for the content.
    if (/^\d+:0:/.test(current)) return
    try {
      const { table } = this.load()
      this.table = table
      this.signatures = current
      logger.info({ file, clients: table.clients.size }, 'keys file reloaded')
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
      const name = basename(file)
      this.watcher = watch(dirname(file), { persistent: false }, (_event, changed) => {
        if (changed === null || changed === name) schedule()
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
