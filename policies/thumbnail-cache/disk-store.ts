import { randomBytes } from 'node:crypto'
import { mkdir, open, readFile, readdir, rename, unlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { decodeEntry, decodeHead, encodeEntry, type CacheEntry } from './entry.js'
import { hashedKey, type CacheClass } from './key.js'

/** What the store knows of a file without reading it (for invalidation and the byte bound). */
interface FileRecord {
  cls: CacheClass
  id: string
  bytes: number
  staleUntil: number
}

export interface DiskStoreOptions {
  dir: string
  maxBytes: number
  /** Is a fetch that started at memory sequence `seq` still current (MemoryStore.current)? */
  current(seq: number, cls: CacheClass, id: string): boolean
  onSize(bytes: number): void
  onError(err: unknown): void
}

/** A file name is the hashed cache key (sha256, base64url): it reveals no identity, id or query. */
const NAME = /^[A-Za-z0-9_-]{43}$/
const TEMP_PREFIX = '.tmp-'
/** Largest head read at startup (headers of one image plus bookkeeping are far below this). */
const HEAD_BYTES = 16_384
/** Writes in flight beyond this are skipped (a burst of misses must not queue unbounded buffers). */
const MAX_PENDING_WRITES = 64
const noop = (): void => {}

/**
 * The disk tier: one file per entry (encodeEntry, with the asset class and id in its head), written
 * to a temporary name and renamed, so a crash never leaves a torn entry under a real name. An index
 * in memory (name → class, id, size, end of life; in LRU order) is rebuilt at startup from the files'
 * heads; it bounds the bytes and finds the files an invalidation voids. Invalidation deletes them at
 * once, for every identity, like the memory tier voids its entries.
 */
export class DiskStore {
  private readonly files = new Map<string, FileRecord>()
  private bytes = 0
  private pendingWrites = 0

  private constructor(private readonly options: DiskStoreOptions) {}

  /** Opens (creating) the directory and indexes what a previous run left there. */
  static async open(options: DiskStoreOptions): Promise<DiskStore> {
    await mkdir(options.dir, { recursive: true, mode: 0o700 })
    const store = new DiskStore(options)
    await store.load(Date.now())
    return store
  }

  private path(name: string): string {
    return join(this.options.dir, name)
  }

  private async load(now: number): Promise<void> {
    const found: { name: string; record: FileRecord; storedAt: number }[] = []
    for (const name of await readdir(this.options.dir)) {
      if (!NAME.test(name)) {
        // A write cut short by a crash or a kill.
        if (name.startsWith(TEMP_PREFIX)) await unlink(this.path(name)).catch(noop)
        continue
      }
      const read = await this.readHead(name)
      if (read === undefined || read.record.staleUntil <= now) {
        await unlink(this.path(name)).catch(noop)
        continue
      }
      found.push({ name, ...read })
    }
    // Least recently stored first: the order the LRU evicts in.
    found.sort((a, b) => a.storedAt - b.storedAt)
    for (const { name, record } of found) this.add(name, record)
    this.evict()
  }

  private async readHead(
    name: string
  ): Promise<{ record: FileRecord; storedAt: number } | undefined> {
    let handle
    try {
      handle = await open(this.path(name), 'r')
      const size = (await handle.stat()).size
      const buf = Buffer.allocUnsafe(Math.min(HEAD_BYTES, size))
      const { bytesRead } = await handle.read(buf, 0, buf.length, 0)
      const head = decodeHead(buf.subarray(0, bytesRead))
      if (head === undefined || (head.c !== 'a' && head.c !== 'p' && head.c !== 'u')) return
      if (typeof head.i !== 'string' || typeof head.u !== 'number') return
      if (head.h['content-length'] !== String(size - head.bodyStart)) return
      return {
        record: { cls: head.c, id: head.i, bytes: size, staleUntil: head.u },
        storedAt: head.s,
      }
    } catch {
      return undefined
    } finally {
      await handle?.close()
    }
  }

  /** The entry (fresh or within stale-if-error) for `key`; `seq` is the caller's memory snapshot. */
  async get(key: string, seq: number, now: number): Promise<CacheEntry | undefined> {
    const name = hashedKey(key)
    const record = this.files.get(name)
    if (record === undefined) return undefined
    if (record.staleUntil <= now) {
      this.remove(name)
      return undefined
    }
    let buf: Buffer
    try {
      buf = await readFile(this.path(name))
    } catch (err) {
      this.options.onError(err)
      this.remove(name)
      return undefined
    }
    // Invalidated or replaced while it was being read.
    if (this.files.get(name) !== record) return undefined
    const decoded = decodeEntry(buf, seq)
    if (decoded === undefined) {
      this.remove(name)
      return undefined
    }
    this.files.delete(name)
    this.files.set(name, record)
    return decoded.entry
  }

  /** Fire and forget: a failed write only costs a later miss. */
  store(key: string, entry: CacheEntry, cls: CacheClass, id: string): void {
    if (this.pendingWrites >= MAX_PENDING_WRITES) return
    const data = encodeEntry(entry, [], { cls, id })
    if (data.length > this.options.maxBytes) return
    const name = hashedKey(key)
    const temp = this.path(`${TEMP_PREFIX}${name}-${randomBytes(4).toString('hex')}`)
    this.pendingWrites++
    writeFile(temp, data, { mode: 0o600 })
      .then(() => rename(temp, this.path(name)))
      .then(() => {
        // An invalidation came while the file was written: it must not survive it.
        if (!this.options.current(entry.seq, cls, id)) {
          this.remove(name)
          return unlink(this.path(name)).catch(noop)
        }
        this.forget(name)
        this.add(name, { cls, id, bytes: data.length, staleUntil: entry.staleUntil })
        this.evict()
      })
      .catch((err: unknown) => {
        void unlink(temp).catch(noop)
        this.options.onError(err)
      })
      .finally(() => this.pendingWrites--)
  }

  /** Deletes one key's file. */
  delete(key: string): void {
    this.remove(hashedKey(key))
  }

  /** Deletes the files of the given assets (all of the class without ids), for every identity. */
  invalidate(cls: CacheClass, ids: readonly string[] | undefined): void {
    const only =
      ids === undefined || cls !== 'a' ? undefined : new Set(ids.map((i) => i.toLowerCase()))
    for (const [name, record] of this.files)
      if (record.cls === cls && (only === undefined || only.has(record.id))) this.remove(name)
  }

  /** Deletes every file (after missed invalidation messages). */
  clear(): void {
    for (const name of [...this.files.keys()]) this.remove(name)
  }

  get size(): number {
    return this.bytes
  }

  private add(name: string, record: FileRecord): void {
    this.files.set(name, record)
    this.bytes += record.bytes
    this.options.onSize(this.bytes)
  }

  /** Drops the index record only (the file is being replaced). */
  private forget(name: string): void {
    const record = this.files.get(name)
    if (record === undefined) return
    this.files.delete(name)
    this.bytes -= record.bytes
  }

  private remove(name: string): void {
    const had = this.files.has(name)
    this.forget(name)
    if (had) {
      void unlink(this.path(name)).catch(noop)
      this.options.onSize(this.bytes)
    }
  }

  private evict(): void {
    for (const name of this.files.keys()) {
      if (this.bytes <= this.options.maxBytes) break
      this.remove(name)
    }
  }
}
