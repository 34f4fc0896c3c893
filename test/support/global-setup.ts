import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestProject } from 'vitest/node'
import { secretsIn } from './secret-spellings.js'

declare module 'vitest' {
  export interface ProvidedContext {
    /** Where every test file appends the gateway log lines it captured and the secrets it made. */
    secretsAuditDir: string
  }
}

/**
 * A suite-wide audit: every gateway log line written in any test file, checked at the end against
 * every key, token and secret any test file made, in every spelling (plain, percent-encoded in any
 * mix, base64, hex). One secret in one line fails the run.
 */
export default function setup(project: TestProject) {
  const dir = mkdtempSync(join(tmpdir(), 'igw-audit-'))
  project.provide('secretsAuditDir', dir)
  return () => {
    const read = (prefix: string) =>
      readdirSync(dir)
        .filter((f) => f.startsWith(prefix))
        .flatMap((f) => readFileSync(join(dir, f), 'utf8').split('\n'))
        .filter(Boolean)
    const secrets = new Set(read('secrets-'))
    const lines = read('logs-')
    rmSync(dir, { recursive: true, force: true })
    const leaked = secretsIn(lines, secrets)
    if (leaked.length > 0)
      throw new Error(`${leaked.length} secret(s) appeared in gateway log lines across the suite`)
    if (secrets.size === 0 || lines.length === 0) {
      process.stdout.write('secrets audit: nothing to audit in the files that ran\n')
      return
    }
    process.stdout.write(
      `secrets audit: ${secrets.size} secrets, none in ${lines.length} gateway log lines\n`
    )
  }
}
