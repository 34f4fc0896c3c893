// Child processes for the benchmark: spawn pinned to a CPU, wait until they answer, read their CPU
// time and RSS from /proc, stop them by pid.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'

export const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim() || 100)
export const HAS_TASKSET = existsSync('/usr/bin/taskset') || existsSync('/bin/taskset')

/** Which command exists on PATH. */
export function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0
}

/** Pins an already running process (and all its threads) to one CPU list. */
export function pin(pid: number, cpus: string): void {
  if (!HAS_TASKSET) return
  spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' })
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port
      s.close(() => resolve(port))
    })
  })
}

export interface Proc {
  name: string
  child: ChildProcess
  pid: number
  /** Last lines of stderr/stdout, for error messages. */
  tail(): string
  stop(): Promise<void>
}

export interface SpawnOptions {
  cpus?: string
  env?: Record<string, string | undefined>
  /** Where stdout goes: 'ignore' (/dev/null) or kept in a short ring for `tail()`. */
  stdout?: 'ignore' | 'tail'
  cwd?: string
}

/** Starts `cmd args` pinned to `cpus` (taskset), in its own process group. */
export function start(name: string, cmd: string, args: string[], opts: SpawnOptions = {}): Proc {
  const full =
    opts.cpus && HAS_TASKSET ? ['taskset', '-c', opts.cpus, cmd, ...args] : [cmd, ...args]
  const child = spawn(full[0]!, full.slice(1), {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', opts.stdout === 'ignore' ? 'ignore' : 'pipe', 'pipe'],
  })
  const ring: string[] = []
  const keep = (b: Buffer) => {
    ring.push(b.toString())
    if (ring.length > 40) ring.shift()
  }
  child.stdout?.on('data', keep)
  child.stderr?.on('data', keep)
  let exited = false
  const exit = new Promise<void>((resolve) =>
    child.once('exit', () => ((exited = true), resolve()))
  )
  return {
    name,
    child,
    pid: child.pid!,
    tail: () => ring.join('').split('\n').slice(-15).join('\n'),
    async stop() {
      if (exited) return
      child.kill('SIGTERM')
      const timeout = sleep(5000).then(() => 'timeout')
      if ((await Promise.race([exit, timeout])) === 'timeout') {
        child.kill('SIGKILL')
        await exit
      }
    },
  }
}

/** Polls `url` until it answers with the wanted status (or the process dies / time runs out). */
export async function waitForHttp(
  proc: Proc,
  url: string,
  headers: Record<string, string> = {},
  timeoutMs = 20_000
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let last = ''
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null)
      throw new Error(`${proc.name} exited (${proc.child.exitCode}):\n${proc.tail()}`)
    try {
      const res = await fetch(url, { headers, signal: AbortSignal.timeout(1000) })
      await res.arrayBuffer()
      if (res.status < 500) return
      last = `status ${res.status}`
    } catch (err) {
      last = (err as Error).message
    }
    await sleep(100)
  }
  throw new Error(
    `${proc.name} did not answer ${url} within ${timeoutMs} ms (${last}):\n${proc.tail()}`
  )
}

/** The pid and every descendant (nginx master + worker; taskset execs in place so no extra level). */
export function processTree(root: number): number[] {
  const parents = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = parents.get(ppid) ?? []
      list.push(Number(entry))
      parents.set(ppid, list)
    } catch {
      /* gone */
    }
  }
  const out: number[] = []
  const walk = (pid: number) => {
    out.push(pid)
    for (const child of parents.get(pid) ?? []) walk(child)
  }
  walk(root)
  return out
}

/** User+system CPU seconds of one process (all threads). */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // fields[11] = utime, fields[12] = stime (stat fields 14 and 15).
    return (Number(fields[11]) + Number(fields[12])) / CLK_TCK
  } catch {
    return 0
  }
}

export function treeCpuSeconds(pids: number[]): number {
  return pids.reduce((sum, pid) => sum + cpuSeconds(pid), 0)
}

/** Resident set size in bytes (VmRSS), or 0 when the process is gone. */
export function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

/**
 * Per-CPU jiffies from /proc/stat: `proc` = user+nice+system (time charged to processes), `soft` =
 * irq+softirq (loopback networking, charged to no process), `total` = everything.
 */
export function cpuTimes(): { proc: number; soft: number; total: number }[] {
  const out: { proc: number; soft: number; total: number }[] = []
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+)\s+(.*)$/.exec(line)
    if (!m) continue
    const v = m[2]!.trim().split(/\s+/).map(Number)
    const at = (i: number) => v[i] ?? 0
    out[Number(m[1])] = {
      proc: at(0) + at(1) + at(2),
      soft: at(5) + at(6),
      total: v.slice(0, 8).reduce((a, b) => a + b, 0),
    }
  }
  return out
}
