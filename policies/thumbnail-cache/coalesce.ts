/** A fetch in flight, held by its leader. */
export interface Flight<T> {
  /** Ends the flight (later calls are ignored). */
  settle(result: T | undefined): void
  /** Did anyone wait for it? (Concurrent demand: the answer is worth storing.) */
  readonly waited: boolean
}

/**
 * In-flight fetches by key: the first miss leads (fetches), later ones for the same key wait for its
 * result instead of asking Immich again. The key includes the identity, so only requests Immich would
 * answer identically ever share a result. A leader that ends without a storable answer settles with
 * undefined and each waiter fetches for itself.
 */
export class Flights<T> {
  private readonly inFlight = new Map<string, Lead<T>>()

  /** The result a leader is fetching for `key`, if one is. */
  waitFor(key: string): Promise<T | undefined> | undefined {
    return this.inFlight.get(key)?.follow()
  }

  /** Registers the caller as leader of the fetch for `key`. */
  lead(key: string): Flight<T> {
    const lead = new Lead<T>(this.inFlight, key)
    this.inFlight.set(key, lead)
    return lead
  }

  get size(): number {
    return this.inFlight.size
  }
}

/**
 * One fetch in flight. Every miss leads one, so it allocates nothing beyond itself; and most misses
 * are never followed (one-off thumbnails): the promise followers wait on is made only when the first
 * one arrives.
 */
class Lead<T> implements Flight<T> {
  waited = false
  private done = false
  private promise: Promise<T | undefined> | undefined
  private resolve: ((result: T | undefined) => void) | undefined

  constructor(
    private readonly inFlight: Map<string, Lead<T>>,
    private readonly key: string
  ) {}

  /** Only ever called while the lead is in flight (a settled lead has left the map). */
  follow(): Promise<T | undefined> {
    this.waited = true
    this.promise ??= new Promise((r) => (this.resolve = r))
    return this.promise
  }

  settle(result: T | undefined): void {
    if (this.done) return
    this.done = true
    if (this.inFlight.get(this.key) === this) this.inFlight.delete(this.key)
    this.resolve?.(result)
  }
}
