/** Environment variables are read in one place, src/config/load.ts, so `config check` sees them all. */
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packageFile } from '../../src/paths.js'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : /\.[tj]s$/.test(path) ? [path] : []
  })
}

describe('environment variables', () => {
  it('are read only by src/config/load.ts', () => {
    const readers = ['src', 'policies', 'bin']
      .flatMap((dir) => sources(packageFile(dir)))
      .filter((file) => /process\.env\b/.test(readFileSync(file, 'utf8')))
      .map((file) => relative(packageFile('.'), file))
    expect(readers).toEqual(['src/config/load.ts'])
  })
})
