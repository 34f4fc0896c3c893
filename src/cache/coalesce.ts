/** A fetch in flight, held by its leader. */
export interface Flight<T> {
  /** Ends the flight (later calls are ignored). */
  settle(result: T | undefined): void;
  /** Did anyone wait for it? (Concurrent demand: the answer is worth storing.) */
  readonly waited: boolean;
}

/**
 * In-flight fetches by key: the first miss leads (fetches), later ones for the same key wait for its
 * result instead of asking Immich again. The key includes the identity, so only requests Immich would
 * answer identically ever share a result. A leader that ends without a storable answer settles with
 * undefined and each waiter fetches for itself.
 */
export class Flights<T> {
  private readonly inFlight = new Map<string, { promise: Promise<T | undefined>; flight: { waited: boolean } }>();

  /** The result a leader is fetching for `key`, if one is. */
  waitFor(key: string): Promise<T | undefined> | undefined {
    const found = this.inFlight.get(key);
    if (found === undefined) return undefined;
    found.flight.waited = true;
    return found.promise;
  }

  /** Registers the caller as leader of the fetch for `key`. */
  lead(key: string): Flight<T> {
    let resolve!: (result: T | undefined) => void;
    const promise = new Promise<T | undefined>((r) => {
      resolve = r;
    });
    let done = false;
    const flight = {
      waited: false,
      settle: (result: T | undefined) => {
        if (done) return;
        done = true;
        if (this.inFlight.get(key)?.promise === promise) this.inFlight.delete(key);
        resolve(result);
      },
    };
    this.inFlight.set(key, { promise, flight });
    return flight;
  }

  get size(): number {
    return this.inFlight.size;
  }
}
