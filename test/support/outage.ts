import { startFakeImmich, type FakeImmich, type FakeImmichOptions } from '../fake-immich/server.js'
import { freePort } from './http.js'

/**
 * A fake Immich that can be stopped and started again on the same port, as a real one goes down
 * and comes back on upgrades: while stopped, connections to its port are refused.
 */
export class RestartableImmich {
  current: FakeImmich | undefined

  private constructor(
    readonly port: number,
    private readonly options: FakeImmichOptions
  ) {}

  static async start(options: FakeImmichOptions = {}): Promise<RestartableImmich> {
    const immich = new RestartableImmich(await freePort(), options)
    await immich.start()
    return immich
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  async start(): Promise<FakeImmich> {
    this.current = await startFakeImmich({ ...this.options, port: this.port })
    return this.current
  }

  /** Closes the server and every open connection (keep-alive ones included). */
  async stop(): Promise<void> {
    const current = this.current
    this.current = undefined
    await current?.close()
  }
}

/** The value of one sample of a scraped exposition (first match), undefined when absent. */
export function sample(exposition: string, series: string): number | undefined {
  for (const line of exposition.split('\n')) {
    if (line.startsWith(series + ' ')) return Number(line.slice(series.length + 1))
  }
  return undefined
}

/** The q-quantile (0..1) of `values` (nearest rank). */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)]!
}
