import { describe, expect, it } from 'vitest'
import { Doorkeeper } from '../../../policies/thumbnail-cache/admission.js'
import { Flights } from '../../../policies/thumbnail-cache/coalesce.js'
import {
  buildEntry,
  decodeEntry,
  encodeEntry,
  type CacheEntry,
} from '../../../policies/thumbnail-cache/entry.js'
import { MemoryStore } from '../../../policies/thumbnail-cache/memory-store.js'

const headers = {
  'content-type': 'image/webp',
  etag: 'W/"a"',
  'cache-control': 'private, max-age=86400',
  'x-powered-by': 'Express',
}
const plan = { ttlMs: 60_000, revalidate: false, staleMs: 0 }
const entry = (seq: number, bytes = 100, now = 1000): CacheEntry =>
  buildEntry(headers, Buffer.alloc(bytes, 7), plan, now, seq)

function store(maxBytes = 1 << 20) {
  const events = { evictions: 0, size: 0 }
  const s = new MemoryStore({
    maxBytes,
    maxEntryBytes: 64 * 1024,
    onEvict: () => events.evictions++,
    onSize: (b) => (events.size = b),
  })
  return { s, events }
}

describe('entry encoding (Redis)', () => {
  it('round-trips any bytes, headers and generations', () => {
    const body = Buffer.from([0, 255, 13, 10, 0x7b, 0x22, 0xff, 0xd8])
    const e = buildEntry(headers, body, plan, 1234, 0)
    const decoded = decodeEntry(encodeEntry(e, [5, 7]), 42)!
    expect(decoded.gens).toEqual([5, 7])
    expect(decoded.entry.body.equals(body)).toBe(true)
    expect(decoded.entry.headers).toEqual(e.headers)
    expect(decoded.entry.notModified).toEqual(e.notModified)
    expect(decoded.entry).toMatchObject({
      storedAt: 1234,
      expiresAt: 61_234,
      revalidate: false,
      seq: 42,
    })
  })

  it('refuses what is not an entry (truncated, foreign, wrong length)', () => {
    const good = encodeEntry(entry(0), [])
    expect(decodeEntry(good.subarray(0, good.length - 1), 0)).toBeUndefined()
    expect(decodeEntry(Buffer.from('hello world'), 0)).toBeUndefined()
    expect(decodeEntry(Buffer.alloc(2), 0)).toBeUndefined()
  })
})

describe('MemoryStore', () => {
  it('serves an entry until it expires', () => {
    const { s } = store()
    s.set('k', entry(s.snapshot()), 'a', 'id1')
    expect(s.get('k', 'a', 'id1', 2000)).toBeDefined()
    expect(s.get('k', 'a', 'id1', 61_000)).toBeUndefined()
    expect(s.get('k', 'a', 'id1', 2000)).toBeUndefined()
  })

  it('an asset invalidation voids that asset only, for every key', () => {
    const { s } = store()
    const seq = s.snapshot()
    s.set('user1', entry(seq), 'a', 'id1')
    s.set('user2', entry(seq), 'a', 'id1')
    s.set('other', entry(seq), 'a', 'id2')
    s.invalidate('a', ['ID1'], 1500)
    expect(s.get('user1', 'a', 'id1', 2000)).toBeUndefined()
    expect(s.get('user2', 'a', 'id1', 2000)).toBeUndefined()
    expect(s.get('other', 'a', 'id2', 2000)).toBeDefined()
  })

  it('a fetch that started before an invalidation is never stored as current', () => {
    const { s } = store()
    const seq = s.snapshot() // fetch starts
    s.invalidate('a', ['id1'], 1500) // the asset changes meanwhile
    s.set('k', entry(seq), 'a', 'id1') // the old bytes arrive
    expect(s.get('k', 'a', 'id1', 2000)).toBeUndefined()
    s.set('k', entry(s.snapshot()), 'a', 'id1') // a fetch started after it
    expect(s.get('k', 'a', 'id1', 2000)).toBeDefined()
  })

  it('class invalidations void the whole class', () => {
    const { s } = store()
    const seq = s.snapshot()
    s.set('p1', entry(seq), 'p', 'x')
    s.set('a1', entry(seq), 'a', 'y')
    s.invalidate('p', undefined, 1500)
    expect(s.get('p1', 'p', 'x', 2000)).toBeUndefined()
    expect(s.get('a1', 'a', 'y', 2000)).toBeDefined()
    s.invalidate('a', undefined, 1500)
    expect(s.get('a1', 'a', 'y', 2000)).toBeUndefined()
  })

  it('holds storage back for a while after an invalidation', () => {
    const { s } = store()
    s.invalidate('a', ['id1'], 10_000)
    expect(s.held('a', 'id1', 10_500, 1000)).toBe(true)
    expect(s.held('a', 'id1', 11_500, 1000)).toBe(false)
    expect(s.held('a', 'id2', 10_500, 1000)).toBe(false)
    s.invalidate('u', undefined, 10_000)
    expect(s.held('u', 'whoever', 10_500, 1000)).toBe(true)
  })

  it('when asset records overflow, the oldest are folded into a floor that voids more, never less', () => {
    const { s } = store()
    const seq = s.snapshot()
    s.set('old', entry(seq), 'a', 'first')
    s.invalidate('a', ['first'], 1)
    for (let i = 0; i < 100_000; i++) s.invalidate('a', [`filler-${i}`], 1)
    // The record of 'first' is gone from the table, yet the entry stays void.
    expect(s.get('old', 'a', 'first', 2000)).toBeUndefined()
    s.set('new', entry(s.snapshot()), 'a', 'first')
    expect(s.get('new', 'a', 'first', 2000)).toBeDefined()
  })

  it('stays within its byte bound, counting evictions', () => {
    const { s, events } = store(1 << 20)
    for (let i = 0; i < 40; i++) s.set(`k${i}`, entry(s.snapshot(), 50 * 1024), 'a', `id${i}`)
    expect(s.size).toBeLessThanOrEqual(1 << 20)
    expect(events.size).toBe(s.size)
    expect(events.evictions).toBeGreaterThan(15)
    expect(s.get('k0', 'a', 'id0', 2000)).toBeUndefined()
    expect(s.get('k39', 'a', 'id39', 2000)).toBeDefined()
  })

  it('clear voids everything', () => {
    const { s, events } = store()
    s.set('k', entry(s.snapshot()), 'a', 'id')
    s.clear()
    expect(s.get('k', 'a', 'id', 2000)).toBeUndefined()
    expect(events.size).toBe(0)
  })
})

describe('Flights', () => {
  it('waiters get the leader result; the key is free once settled; later settles are ignored', async () => {
    const f = new Flights<string>()
    expect(f.waitFor('k')).toBeUndefined()
    const flight = f.lead('k')
    expect(flight.waited).toBe(false)
    const waiting = [f.waitFor('k')!, f.waitFor('k')!]
    expect(flight.waited).toBe(true)
    flight.settle('value')
    flight.settle('other')
    expect(await Promise.all(waiting)).toEqual(['value', 'value'])
    expect(f.waitFor('k')).toBeUndefined()
    expect(f.size).toBe(0)
  })
})

describe('Doorkeeper', () => {
  it('admits a key the second time it is seen', () => {
    const d = new Doorkeeper(100)
    expect(d.seen('a')).toBe(false)
    expect(d.seen('b')).toBe(false)
    expect(d.seen('a')).toBe(true)
    expect(d.seen('a')).toBe(true)
  })

  it('forgets keys two generations old, holding at most twice its capacity', () => {
    const d = new Doorkeeper(10)
    d.seen('old')
    for (let i = 0; i < 9; i++) d.seen(`x${i}`) // fills the first generation
    for (let i = 0; i < 9; i++) d.seen(`y${i}`)
    expect(d.seen('old')).toBe(true) // still in the previous generation
    for (let i = 0; i < 30; i++) d.seen(`z${i}`)
    expect(d.seen('old')).toBe(false)
  })

  it('admits few one-off keys early (false positives) and no key it was told of is ever missed', () => {
    const d = new Doorkeeper() // the policy's default capacity
    let early = 0
    for (let i = 0; i < 200_000; i++)
      if (d.seen(`7:k:bench|a|8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f|size=thumbnail&c=${i}`)) early++
    expect(early / 200_000).toBeLessThan(0.01)
    for (let i = 0; i < 1000; i++) d.seen(`again-${i}`)
    for (let i = 0; i < 1000; i++) expect(d.seen(`again-${i}`)).toBe(true)
  })
})
