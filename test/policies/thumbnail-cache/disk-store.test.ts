import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DiskStore } from '../../../policies/thumbnail-cache/disk-store.js'
import { buildEntry, type CacheEntry } from '../../../policies/thumbnail-cache/entry.js'
import { cacheKey } from '../../../policies/thumbnail-cache/key.js'
import { waitFor } from '../rate-limit/support.js'

const dirs: string[] = []
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true })
})

async function dir(): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'igw-disk-store-'))
  dirs.push(d)
  return d
}

const KiB = 1024
function entry(size: number, ttlMs = 60_000, staleMs = 600_000, seq = 0): CacheEntry {
  return buildEntry(
    { 'content-type': 'image/webp', etag: '"x"' },
    Buffer.alloc(size, 7),
    { ttlMs, revalidate: false, staleMs },
    Date.now(),
    seq
  )
}
const key = (id: string, who = 'key:alice') => cacheKey('a', id, who, 'size=preview')!
const files = async (d: string) => (await readdir(d)).filter((n) => !n.startsWith('.'))

async function open(d: string, maxBytes = 1024 * KiB, current = () => true) {
  const errors: unknown[] = []
  const store = await DiskStore.open({
    dir: d,
    maxBytes,
    current,
    onSize: () => {},
    onError: (e) => errors.push(e),
  })
  return { store, errors }
}

describe('DiskStore', () => {
  it('stores under a hashed name, reads it back, and a new store finds it after a restart', async () => {
    const d = await dir()
    const { store } = await open(d)
    store.store(key('asset-1'), entry(10 * KiB), 'a', 'asset-1')
    await waitFor(async () => (await files(d)).length === 1)
    const [name] = await files(d)
    expect(name).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect((await stat(join(d, name!))).mode & 0o777).toBe(0o600)
    expect((await store.get(key('asset-1'), 0, Date.now()))?.body.length).toBe(10 * KiB)
    expect(await store.get(key('asset-1', 'key:bob'), 0, Date.now())).toBeUndefined()

    const { store: again } = await open(d)
    expect(again.size).toBe(store.size)
    const found = await again.get(key('asset-1'), 5, Date.now())
    expect(found?.body.equals(Buffer.alloc(10 * KiB, 7))).toBe(true)
    expect(found?.seq).toBe(5)
  })

  it('drops leftovers of a cut write, foreign files and entries past their stale window at startup', async () => {
    const d = await dir()
    const { store } = await open(d)
    store.store(key('old'), entry(KiB, 1, 1), 'a', 'old')
    store.store(key('kept'), entry(KiB), 'a', 'kept')
    await waitFor(async () => (await files(d)).length === 2)
    await writeFile(join(d, '.tmp-cut-short'), 'partial')
    await writeFile(join(d, 'A'.repeat(43)), 'not an entry')
    await new Promise((r) => setTimeout(r, 10))
    const { store: again } = await open(d)
    expect(await readdir(d)).toHaveLength(1)
    expect(await again.get(key('kept'), 0, Date.now())).toBeDefined()
  })

  it('stays within its byte bound, evicting the least recently used', async () => {
    const d = await dir()
    const { store } = await open(d, 100 * KiB)
    for (const id of ['a1', 'a2', 'a3']) {
      store.store(key(id), entry(30 * KiB), 'a', id)
      await waitFor(async () => (await files(d)).length >= 1 && store.size > 0)
      await new Promise((r) => setTimeout(r, 20))
    }
    await store.get(key('a1'), 0, Date.now()) // a1 used: a2 is now the least recent
    store.store(key('a4'), entry(30 * KiB), 'a', 'a4')
    await waitFor(async () => (await store.get(key('a4'), 0, Date.now())) !== undefined)
    expect(store.size).toBeLessThanOrEqual(100 * KiB)
    expect(await store.get(key('a2'), 0, Date.now())).toBeUndefined()
    expect(await store.get(key('a1'), 0, Date.now())).toBeDefined()
    await waitFor(async () => (await files(d)).length === 3)
  })

  it('invalidation deletes the files of an asset for every identity, or of a whole class', async () => {
    const d = await dir()
    const { store } = await open(d)
    store.store(key('x', 'key:alice'), entry(KiB), 'a', 'x')
    store.store(key('x', 'key:bob'), entry(KiB), 'a', 'x')
    store.store(key('y', 'key:bob'), entry(KiB), 'a', 'y')
    store.store(cacheKey('p', 'person', 'key:bob', '')!, entry(KiB), 'p', 'person')
    await waitFor(async () => (await files(d)).length === 4)
    store.invalidate('a', ['X'])
    await waitFor(async () => (await files(d)).length === 2)
    expect(await store.get(key('y', 'key:bob'), 0, Date.now())).toBeDefined()
    store.invalidate('p', undefined)
    await waitFor(async () => (await files(d)).length === 1)
    store.clear()
    await waitFor(async () => (await files(d)).length === 0)
  })

  it('a write that an invalidation overtook does not survive it', async () => {
    const d = await dir()
    let valid = true
    const { store } = await open(d, 1024 * KiB, () => valid)
    store.store(key('z'), entry(KiB), 'a', 'z')
    valid = false // the invalidation lands while the file is being written
    await new Promise((r) => setTimeout(r, 100))
    expect(await store.get(key('z'), 0, Date.now())).toBeUndefined()
    expect(await readdir(d)).toHaveLength(0)
  })
})
