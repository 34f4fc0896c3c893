// Load generators: wrk (preferred: C, one thread, leaves the most CPU to the servers) or autocannon
// (programmatic, in this process). Both return the same numbers.
import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'
import { CLK_TCK, HAS_TASKSET } from './procs.js'

export interface LoadSpec {
  url: string
  /** Request path (with query). */
  path: string
  headers: Record<string, string>
  /** Append `c=<unique>` to every request (cache-buster: every request a distinct cache key). */
  unique?: boolean
  connections: number
  durationSeconds: number
  /** CPU list for the load generator (wrk is pinned with taskset; autocannon runs in this process). */
  cpus?: string
}

export interface LoadResult {
  requests: number
  seconds: number
  rps: number
  /** Latency in milliseconds. */
  p50: number
  p90: number
  p99: number
  mean: number
  bytesPerSecond: number
  /** Non-2xx/3xx answers, socket errors and timeouts: a run with any of these is flagged. */
  non2xx: number
  errors: number
  /** CPU seconds the load generator used (wrk: exact, from its parent shell's cutime/cstime). */
  cpuSeconds: number
}

export type Tool = 'wrk' | 'autocannon'

const luaEscape = (s: string) => s.replace(/\\/g, '\\\\').replace(/"/g, '\\"')

function wrkScript(spec: LoadSpec): string {
  const lines = ['wrk.method = "GET"']
  for (const [k, v] of Object.entries(spec.headers))
    lines.push(`wrk.headers["${luaEscape(k)}"] = "${luaEscape(v)}"`)
  if (spec.unique) {
    const sep = spec.path.includes('?') ? '&' : '?'
    lines.push(
      'local counter = 0',
      'local prefix = tostring(os.time()) .. tostring(math.random(1000000))',
      'request = function()',
      '  counter = counter + 1',
      `  return wrk.format(nil, "${luaEscape(spec.path)}${sep}c=" .. prefix .. "-" .. counter)`,
      'end'
    )
  }
  lines.push(
    'done = function(summary, latency, requests)',
    '  local e = summary.errors',
    '  io.write(string.format(\'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"mean":%.1f}\\n\',',
    '    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,',
    '    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))',
    'end'
  )
  return lines.join('\n') + '\n'
}

async function runWrk(spec: LoadSpec): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), 'igw-wrk-'))
  const script = join(dir, 'script.lua')
  writeFileSync(script, wrkScript(spec))
  const args = [
    '-t1',
    `-c${spec.connections}`,
    `-d${spec.durationSeconds}s`,
    '--timeout',
    '10s',
    '-s',
    script,
    spec.url + spec.path,
  ]
  const cmd =
    spec.cpus && HAS_TASKSET ? ['taskset', '-c', spec.cpus, 'wrk', ...args] : ['wrk', ...args]
  // The shell waits for wrk, then prints its own /proc stat line, whose cutime/cstime are wrk's CPU.
  const child = spawn(
    'sh',
    ['-c', '"$@"; read -r stat < /proc/$$/stat; echo "SHSTAT $stat"', 'sh', ...cmd],
    { stdio: ['ignore', 'pipe', 'pipe'] }
  )
  let out = ''
  child.stdout.on('data', (b: Buffer) => (out += b.toString()))
  child.stderr.on('data', (b: Buffer) => (out += b.toString()))
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  const line = out.split('\n').find((l) => l.startsWith('WRKJSON '))
  if (!line) throw new Error(`wrk failed (exit ${code}):\n${out}`)
  const r = JSON.parse(line.slice(8)) as Record<string, number>
  const stat = out.split('\n').find((l) => l.startsWith('SHSTAT ')) ?? ''
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 16 and 17 of /proc/<pid>/stat: cutime, cstime (children waited for).
  const cpuSeconds = (Number(fields[13] ?? 0) + Number(fields[14] ?? 0)) / CLK_TCK
  const seconds = r.duration_us! / 1e6
  return {
    requests: r.requests!,
    seconds,
    rps: r.requests! / seconds,
    p50: r.p50! / 1000,
    p90: r.p90! / 1000,
    p99: r.p99! / 1000,
    mean: r.mean! / 1000,
    bytesPerSecond: r.bytes! / seconds,
    non2xx: r.status!,
    errors: r.connect! + r.read! + r.write! + r.timeout!,
    cpuSeconds,
  }
}

async function runAutocannon(spec: LoadSpec): Promise<LoadResult> {
  const cpu0 = process.cpuUsage()
  let counter = 0
  const prefix = `${Date.now()}${Math.floor(Math.random() * 1e6)}`
  const sep = spec.path.includes('?') ? '&' : '?'
  const result = await autocannon({
    url: spec.url,
    connections: spec.connections,
    duration: spec.durationSeconds,
    headers: spec.headers,
    requests: [
      spec.unique
        ? {
            method: 'GET',
            setupRequest: (req: Record<string, unknown>) => ({
              ...req,
              path: `${spec.path}${sep}c=${prefix}-${++counter}`,
            }),
          }
        : { method: 'GET', path: spec.path },
    ],
  })
  const seconds = result.duration
  return {
    requests: result.requests.total,
    seconds,
    rps: result.requests.total / seconds,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    mean: result.latency.mean,
    bytesPerSecond: result.throughput.total / seconds,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
    cpuSeconds: (() => {
      const d = process.cpuUsage(cpu0)
      return (d.user + d.system) / 1e6
    })(),
  }
}

export function runLoad(tool: Tool, spec: LoadSpec): Promise<LoadResult> {
  return tool === 'wrk' ? runWrk(spec) : runAutocannon(spec)
}
