// Markdown tables from a bench/run.ts result file, for bench/README.md.
//
//   npx tsx bench/report.ts bench/results/<timestamp>.json
import { readFileSync } from 'node:fs'

interface Summary {
  scenario: string
  rps: number[]
  meanRps: number
  p50: number
  p99: number
  serverCpu: number
  serverUsPerRequest: number
  upstreamCpu: number
  cpuBusy: number[]
  cpuSoft: number[]
  noise: number
  flagged?: string
}
interface RatioResult {
  name: string
  issue: string
  value: number
  perRun?: number[]
  cpuValue?: number
  target?: string
  pass?: boolean
}
interface Measurement {
  scenario: string
  serverUsPerRequest: number
}

const file = process.argv[2]
if (!file) throw new Error('usage: npx tsx bench/report.ts bench/results/<file>.json')
const r = JSON.parse(readFileSync(file, 'utf8')) as {
  env: Record<string, unknown>
  summaries: Summary[]
  ratios: RatioResult[]
  measurements: Measurement[]
}
const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
const pct = (n: number) => `${Math.round(n * 100)} %`
const e = r.env
const out: string[] = []
out.push(
  `${String(e.date).slice(0, 16).replace('T', ' ')} UTC · Node ${e.node} · ${e.cpus} × ${e.cpuModel} · ${e.nginx} · ${e.tool} -c${e.connections}, ` +
    `${e.warmup} s warm-up + ${e.duration} s × ${e.runs} runs · upstream: ${e.upstream} · gateway build ${e.commit}`,
  '',
  '| scenario | req/s (mean) | req/s per run | p50 ms | p99 ms | server CPU | µs CPU/req (per run) | CPU 0 busy | noise |',
  '|---|--:|--:|--:|--:|--:|--:|--:|--:|'
)
for (const s of r.summaries) {
  const direct = s.scenario.startsWith('direct')
  const perRun = r.measurements
    .filter((m) => m.scenario === s.scenario)
    .map((m) => fmt(m.serverUsPerRequest))
  out.push(
    `| ${s.scenario} | ${fmt(s.meanRps)} | ${s.rps.map((x) => fmt(x)).join(' / ')} | ${s.p50.toFixed(2)} | ${s.p99.toFixed(2)} | ` +
      `${direct ? '–' : pct(s.serverCpu)} | ${direct ? '–' : `${fmt(s.serverUsPerRequest)} (${perRun.join(' / ')})`} | ` +
      `${pct((s.cpuBusy[0] ?? 0) + (s.cpuSoft[0] ?? 0))} | ${pct(s.noise)}${s.flagged ? ` ⚠ ${s.flagged}` : ''} |`
  )
}
out.push(
  '',
  '| ratio (median of per-run ratios) | req/s | per run | CPU/req | target | | issue |',
  '|---|--:|--:|--:|--:|---|---|'
)
for (const x of r.ratios) {
  out.push(
    `| ${x.name} | ${x.value.toFixed(2)} | ${(x.perRun ?? []).map((v) => v.toFixed(2)).join(' · ')} | ${x.cpuValue === undefined ? '–' : x.cpuValue.toFixed(2)} | ${x.target ?? ''} | ${x.pass === undefined ? '' : x.pass ? 'met' : '**below**'} | ${x.issue} |`
  )
}
process.stdout.write(out.join('\n') + '\n')
