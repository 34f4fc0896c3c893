import type {
  Metric,
  MetricObjectWithValues,
  MetricValue,
  MetricValueWithName,
  Registry,
} from 'prom-client'

/**
 * Counters and histograms for the per-request hot path.
 *
 * prom-client copies, validates and hashes the label object on every `inc`/`observe` (even through
 * `labels()` children), several times per request: about 5 % of the gateway's CPU on the pass-through
 * benchmark. Here a series is resolved once per label combination (label values are bounded) and then
 * updated as plain numbers; the registry reads them at scrape time through the same `get()` contract
 * prom-client's own metrics implement, so the exposition is byte-for-byte what prom-client would
 * print (test/observability/lean-metrics.test.ts compares the two).
 */
abstract class LeanMetric<S> {
  readonly aggregator = 'sum'
  /** Every series, in creation order (what a scrape prints). */
  private readonly all: { labels: Record<string, string>; series: S }[] = []
  /** Label values → series, one Map level per label: no key string is built per update. */
  private root = new Map<string, unknown>()

  constructor(
    public name: string,
    readonly help: string,
    readonly labelNames: readonly string[],
    registers: Registry[]
  ) {
    for (const r of registers) r.registerMetric(this as unknown as Metric)
  }

  protected abstract create(): S
  protected abstract values(labels: Record<string, string>, series: S): MetricValue<string>[]
  abstract readonly type: 'counter' | 'histogram'

  /** The series for these label values, given in `labelNames` order. Keep it: updates are then free. */
  series(...values: string[]): S {
    let node = this.root
    const last = this.labelNames.length - 1
    for (let i = 0; i < last; i++) {
      let next = node.get(values[i] ?? '') as Map<string, unknown> | undefined
      if (next === undefined) node.set(values[i] ?? '', (next = new Map()))
      node = next
    }
    const leaf = values[last] ?? ''
    let found = node.get(leaf) as S | undefined
    if (found === undefined) {
      const labels: Record<string, string> = {}
      this.labelNames.forEach((name, i) => (labels[name] = values[i] ?? ''))
      found = this.create()
      this.all.push({ labels, series: found })
      node.set(leaf, found)
    }
    return found
  }

  get(): Promise<MetricObjectWithValues<MetricValue<string>>> {
    const values: MetricValue<string>[] = []
    for (const { labels, series } of this.all) values.push(...this.values(labels, series))
    const metric = {
      name: this.name,
      help: this.help,
      type: this.type,
      values,
      aggregator: this.aggregator,
    }
    return Promise.resolve(metric as unknown as MetricObjectWithValues<MetricValue<string>>)
  }

  reset(): void {
    this.all.length = 0
    this.root = new Map()
  }
}

export class CounterSeries {
  value = 0
  inc(by = 1): void {
    this.value += by
  }
}

export class LeanCounter<L extends string = string> extends LeanMetric<CounterSeries> {
  readonly type = 'counter'
  constructor(config: {
    name: string
    help: string
    labelNames: readonly L[]
    registers: Registry[]
  }) {
    super(config.name, config.help, config.labelNames, config.registers)
  }
  protected create(): CounterSeries {
    return new CounterSeries()
  }
  protected values(labels: Record<string, string>, s: CounterSeries): MetricValue<string>[] {
    return [{ labels, value: s.value }]
  }
}

export class HistogramSeries {
  /** counts[i]: observations in (bounds[i-1], bounds[i]]; the last slot is above every bound. */
  readonly counts: Float64Array
  sum = 0
  count = 0
  constructor(private readonly bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1)
  }
  observe(value: number): void {
    const bounds = this.bounds
    let i = 0
    while (i < bounds.length && value > bounds[i]!) i++
    this.counts[i]!++
    this.sum += value
    this.count++
  }
}

export class LeanHistogram<L extends string = string> extends LeanMetric<HistogramSeries> {
  readonly type = 'histogram'
  readonly buckets: readonly number[]
  constructor(config: {
    name: string
    help: string
    labelNames: readonly L[]
    buckets: readonly number[]
    registers: Registry[]
  }) {
    super(config.name, config.help, config.labelNames, config.registers)
    this.buckets = [...config.buckets].sort((a, b) => a - b)
  }
  protected create(): HistogramSeries {
    return new HistogramSeries(this.buckets)
  }
  protected values(
    labels: Record<string, string>,
    s: HistogramSeries
  ): MetricValueWithName<string>[] {
    const out: MetricValueWithName<string>[] = []
    let cumulative = 0
    this.buckets.forEach((le, i) => {
      cumulative += s.counts[i]!
      out.push({
        labels: { le, ...labels } as never,
        value: cumulative,
        metricName: `${this.name}_bucket`,
      })
    })
    out.push({
      labels: { le: '+Inf', ...labels } as never,
      value: s.count,
      metricName: `${this.name}_bucket`,
    })
    out.push({ labels, value: s.sum, metricName: `${this.name}_sum` })
    out.push({ labels, value: s.count, metricName: `${this.name}_count` })
    return out
  }
}
