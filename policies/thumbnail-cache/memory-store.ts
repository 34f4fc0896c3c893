import { LRUCache } from 'lru-cache'
import type { CacheEntry } from './entry.js'
import type { CacheClass } from './key.js'

/** Bookkeeping per entry beyond its bytes (key, header objects, LRU node), for the byte bound. */
const ENTRY_OVERHEAD = 512
/** Asset invalidations remembered one by one; beyond this the oldest is folded into a floor. */
const MAX_ASSET_RECORDS = 100_000

interface Invalidation {
  /** Sequence number of the invalidation: entries whose fetch started before it are void. */
  seq: number
  /** Epoch ms, for the hold-down after an invalidation. */
  at: number
}

export interface MemoryStoreOptions {
  maxBytes: number
  maxEntryBytes: number
  onEvict(): void
  onSize(bytes: number): void
}

/**
 * Bytes-bounded LRU of entries plus invalidation records. Invalidation is by sequence number, not by
 * deleting keys: an entry carries the sequence number current when its upstream fetch *started*, and
 * is void when an invalidation of its asset (or class) came later. So a fetch that was in flight
 * while the asset changed can never store the old bytes as current, and no per-asset key index is
 * needed. When the record table is full the oldest record is folded into a floor, which only ever
 * voids more entries, never fewer.
 */
export class MemoryStore {
  private seq = 0
  private readonly classes: Record<CacheClass, Invalidation> = {
    a: { seq: 0, at: 0 },
    p: { seq: 0, at: 0 },
    u: { seq: 0, at: 0 },
  }
  private assetFloor = 0
  private readonly assets: LRUCache<string, Invalidation>
  private readonly lru: LRUCache<string, CacheEntry>

  constructor(private readonly options: MemoryStoreOptions) {
    this.assets = new LRUCache<string, Invalidation>({
      max: MAX_ASSET_RECORDS,
      dispose: (record, _id, reason) => {
        if (reason === 'evict') this.assetFloor = Math.max(this.assetFloor, record.seq)
      },
    })
    this.lru = new LRUCache<string, CacheEntry>({
      maxSize: options.maxBytes,
      maxEntrySize: options.maxEntryBytes + ENTRY_OVERHEAD + 4096,
      sizeCalculation: (entry, key) => entry.body.length + key.length + ENTRY_OVERHEAD,
      dispose: (_entry, _key, reason) => {
        if (reason === 'evict') options.onEvict()
      },
    })
  }

  /** The sequence number to pass to `set` for a fetch starting now. */
  snapshot(): number {
    return this.seq
  }

  /**
   * A still valid entry: fresh, or past its TTL but within its stale-if-error window (the caller
   * tells them apart by `expiresAt`). Invalidated ones and those past both are dropped on the way.
   */
  get(key: string, cls: CacheClass, id: string, now: number): CacheEntry | undefined {
    const entry = this.lru.get(key)
    if (entry === undefined) return undefined
    if (entry.staleUntil > now && this.current(entry.seq, cls, id)) return entry
    this.delete(key)
    return undefined
  }

  /** Is a fetch that started at `seq` still current for this asset/class? */
  current(seq: number, cls: CacheClass, id: string): boolean {
    if (seq < this.classes[cls].seq) return false
    if (cls !== 'a') return true
    if (seq < this.assetFloor) return false
    const record = this.assets.peek(id)
    return record === undefined || seq >= record.seq
  }

  /** Was the asset/class invalidated less than `holdMs` ago (a regenerate job may still be running)? */
  held(cls: CacheClass, id: string, now: number, holdMs: number): boolean {
    if (this.classes[cls].at > now - holdMs) return true
    if (cls !== 'a') return false
    const record = this.assets.peek(id)
    return record !== undefined && record.at > now - holdMs
  }

  /** Stores unless an invalidation came after the fetch started. */
  set(key: string, entry: CacheEntry, cls: CacheClass, id: string): void {
    if (!this.current(entry.seq, cls, id)) return
    this.lru.set(key, entry)
    this.options.onSize(this.lru.calculatedSize)
  }

  delete(key: string): void {
    this.lru.delete(key)
    this.options.onSize(this.lru.calculatedSize)
  }

  /** Voids the given assets' entries (all of the class without ids) for every identity. */
  invalidate(cls: CacheClass, ids: readonly string[] | undefined, at: number): void {
    const record = { seq: ++this.seq, at }
    if (ids === undefined || cls !== 'a') this.classes[cls] = record
    else for (const id of ids) this.assets.set(id.toLowerCase(), record)
  }

  /** Voids everything (after missed invalidation messages). */
  clear(): void {
    const record = { seq: ++this.seq, at: 0 }
    this.classes.a = record
    this.classes.p = record
    this.classes.u = record
    this.lru.clear()
    this.options.onSize(0)
  }

  get size(): number {
    return this.lru.calculatedSize
  }
}
