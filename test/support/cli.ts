// The `immich-gateway` CLI run as an admin runs it on the host: a process of its own, an environment
// the test gives (nothing of the caller's unless passed), stdin written and closed.
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface Run {
  code: number
  stdout: string
  stderr: string
}

export interface CliOptions {
  /** The run's whole environment; PATH is added when missing. Default: PATH only. */
  env?: Record<string, string | undefined>
  /** Written to stdin, which is then closed. */
  input?: string
  /**
   * Run `bin/immich-gateway.js`, the installed entry point (it runs the build when there is one);
   * else the sources through tsx (a fresh `node --import tsx`, about a second).
   */
  installed?: boolean
}

export function runCli(args: string[], options: CliOptions = {}): Promise<Run> {
  const entry = options.installed
    ? [join(ROOT, 'bin/immich-gateway.js')]
    : ['--import', 'tsx', join(ROOT, 'src/cli/index.ts')]
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...entry, ...args], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', ...options.env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }))
    child.stdin.end(options.input ?? '')
  })
}
