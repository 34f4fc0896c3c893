/**
 * Remembers which keys missed recently, so an answer is stored only the second time its key is asked
 * for (nginx's `proxy_cache_min_uses 2`). Most thumbnails are fetched once per identity and then kept
 * by the client itself for a day (Immich sends `private, max-age=86400`): storing those one-off answers
 * only churns the cache, evicts entries that would have been hit, and makes every miss pay for memory
 * and garbage collection.
 *
 * Every miss asks, so it must be cheap: two generations of Bloom filters (two bits per key, 32 bits
 * per key of capacity, 256 KiB each at the default; ~0.5 % false positives when a generation is
 * full), typed arrays reused in turn, nothing allocated per request. A false positive only means one answer is stored a request
 * early. (Sets of 32-bit fingerprints cost ~1.3 µs a miss: numbers past 2^30 are heap objects in V8.)
 */
export class Doorkeeper {
  private current: Uint32Array
  private previous: Uint32Array
  private readonly mask: number
  private added = 0

  /** `capacity`: keys per generation; a key is remembered for one to two generations of misses. */
  constructor(private readonly capacity = 65_536) {
    const bits = Math.max(1024, 2 ** Math.ceil(Math.log2(capacity * 32)))
    this.mask = bits - 1
    this.current = new Uint32Array(bits >>> 5)
    this.previous = new Uint32Array(bits >>> 5)
  }

  /** Records a request for `key`; true when the key was seen recently. */
  seen(key: string): boolean {
    const h = fingerprint(key)
    const a = h & this.mask
    const b = (Math.imul(h, 0x9e3779b1) >>> 11) & this.mask
    if (
      (isSet(this.current, a) && isSet(this.current, b)) ||
      (isSet(this.previous, a) && isSet(this.previous, b))
    )
      return true
    this.current[a >>> 5]! |= 1 << (a & 31)
    this.current[b >>> 5]! |= 1 << (b & 31)
    if (++this.added >= this.capacity) {
      const oldest = this.previous
      oldest.fill(0)
      this.previous = this.current
      this.current = oldest
      this.added = 0
    }
    return false
  }
}

function isSet(bits: Uint32Array, i: number): boolean {
  return (bits[i >>> 5]! & (1 << (i & 31))) !== 0
}

/** FNV-1a, 32 bits. */
function fingerprint(key: string): number {
  let h = 0x811c9dc5
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}
