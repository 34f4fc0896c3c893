import { runCli, type Run } from '../support/cli.js'

export type { Run }

/**
 * One `immich-gateway` run with `input` on stdin: the caller's environment, except REDIS_URL,
 * GATEWAY_CONFIG and IMMICH_URL, which are cleared unless given, so the run sees only what the test sets.
 */
export function cli(args: string[], env: Record<string, string> = {}, input = ''): Promise<Run> {
  return runCli(args, {
    env: { ...process.env, REDIS_URL: '', GATEWAY_CONFIG: '', IMMICH_URL: '', ...env },
    input,
  })
}
