import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const CLI = join(ROOT, 'src/cli/index.ts')

export interface Run {
  code: number
  stdout: string
  stderr: string
}

/**
 * One `immich-gateway` run (a fresh `node --import tsx`, about a second), with `input` on stdin.
 * REDIS_URL and GATEWAY_CONFIG are cleared unless given, so the run sees only what the test sets.
 */
export function cli(args: string[], env: Record<string, string> = {}, input = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL: '', GATEWAY_CONFIG: '', IMMICH_URL: '', ...env },
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr }))
    child.stdin.end(input)
  })
}
