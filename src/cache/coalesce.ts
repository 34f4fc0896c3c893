/**
 * In-flight fetches by key: the first miss leads (fetches), later ones for the same key wait for its
 * result instead of asking Immich again. The key includes the identity, so only requests Immich would
 * answer identically ever share a result. A leader that ends without a storable answer settles with
 * undefined and each waiter fetches for itself.
 */
export class Flights<T> {
  private readonly inFlight = new Map<string, Promise<T | undefined>>();

  /** The result a leader is fetching for `key`, if one is. */
  waitFor(key: string): Promise<T | undefined> | undefined {
    return this.inFlight.get(key);
  }

  /** Registers the caller as leader; call the returned function exactly once (later calls are ignored). */
  lead(key: string): (result: T | undefined) => void {
    let settle!: (result: T | undefined) => void;
    const promise = new Promise<T | undefined>((resolve) => {
      settle = resolve;
    });
    this.inFlight.set(key, promise);
    let done = false;
    return (result) => {
      if (done) return;
      done = true;
      if (this.inFlight.get(key) === promise) this.inFlight.delete(key);
      settle(result);
    };
  }

  get size(): number {
    return this.inFlight.size;
  }
}
