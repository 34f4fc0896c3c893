/**
 * Remembers which keys missed recently, so an answer is stored only the second time its key is asked
 * for (nginx's `proxy_cache_min_uses 2`). Most thumbnails are fetched once per identity and then kept
 * by the client itself for a day (Immich sends `private, max-age=86400`): storing those one-off answers
 * only churns the cache, evicts entries that would have been hit, and makes every miss pay for memory
 * and garbage collection. Two generations of 32-bit fingerprints bound the memory; a fingerprint
 * collision only means one answer is stored a request early.
 */
export class Doorkeeper {
  private current = new Set<number>();
  private previous = new Set<number>();

  constructor(private readonly capacity = 65_536) {}

  /** Records a request for `key`; true when the key was seen recently. */
  seen(key: string): boolean {
    const h = fingerprint(key);
    if (this.current.has(h) || this.previous.has(h)) return true;
    this.current.add(h);
    if (this.current.size >= this.capacity) {
      this.previous = this.current;
      this.current = new Set();
    }
    return false;
  }
}

/** FNV-1a, 32 bits. */
function fingerprint(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
