/** The README stays a user's page: short, self-contained, and its commands and paths are real. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { loadScopeResolver } from '../../src/auth/scopes.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
/** Pages other work adds (the README points at them already). */
const ANNOUNCED = ['console'].map((topic) => `docs/${topic}.md`)
/** The user's own files, which the README tells where they live. */
const USER_FILES = ['config/keys.yaml']

describe('README.md', () => {
  it('is at most 12 KB and links nothing outside the repository', () => {
    expect(Buffer.byteLength(readme)).toBeLessThanOrEqual(12 * 1024)
    expect(readme).not.toMatch(/\]\((?!#)[^)]*\)/)
    expect(readme).not.toMatch(/\.\.\//)
  })

  it('names only files that exist', () => {
    const paths = new Set(
      [...readme.matchAll(/\b((?:docs|config|test)\/[\w./-]*\w)/g)].map((m) => m[1]!)
    )
    for (const path of paths)
      if (!ANNOUNCED.includes(path) && !USER_FILES.includes(path))
        expect(existsSync(join(ROOT, path)), path).toBe(true)
  })

  it('uses only commands the CLI has, and scopes that exist', async () => {
    const { registeredCommands } = await import('../../src/cli/index.js')
    await import('../../src/cli/commands.js')
    const known = registeredCommands()
    for (const m of readme.matchAll(/immich-gateway ([a-z]+)(?![\w-])(?: ([a-z][a-z-]*))?/g)) {
      const [first, second] = [m[1]!, m[2]]
      const name = known.includes(`${first} ${second}`) ? `${first} ${second}` : first!
      expect(known, m[0]).toContain(name)
    }
    const resolver = loadScopeResolver()
    for (const m of readme.matchAll(/--scopes ([\w.,-]+)|^\| [^|]+ \| `([\w.,-]+)`/gm))
      if (!(m[1] ?? m[2])!.startsWith('-'))
        expect(() => resolver.expand((m[1] ?? m[2])!.split(','))).not.toThrow()
  })
})
