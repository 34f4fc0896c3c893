import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { packageFile } from '../src/paths.js'

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sources(path) : /\.tsx?$/.test(path) ? [path] : []
  })
}

describe('hot-path habits', () => {
  const files = [...sources(packageFile('src')), ...sources(packageFile('policies'))]

  it('reads the Hono context with c.get(), never c.var (which copies every variable per access)', () => {
    const offenders = files.filter((file) => /\b\w+\.var\.\w+/.test(readFileSync(file, 'utf8')))
    expect(offenders).toEqual([])
  })

  it('judges the canonical path: no policy reads c.req.path or c.req.url (the raw, unrewritten path)', () => {
    const policyFiles = sources(packageFile('policies'))
    const offenders = policyFiles.filter((file) =>
      /\bc\.req\.(path|url)\b/.test(readFileSync(file, 'utf8'))
    )
    expect(policyFiles.length).toBeGreaterThan(8)
    expect(offenders).toEqual([])
  })

  it('keeps Web Streams and hono/proxy off the forward path', () => {
    const offenders = files.filter((file) =>
      /from 'hono\/proxy'|\bReadableStream\b|\.getReader\(/.test(readFileSync(file, 'utf8'))
    )
    expect(offenders).toEqual([])
  })
})

describe('one keys-file writer', () => {
  it('only src/auth/keys-edit.ts edits the keys file (the CLI and the console both call it)', () => {
    const files = [...sources(packageFile('src')), ...sources(packageFile('policies'))]
    const editors = files.filter((file) => /\bparseDocument\b/.test(readFileSync(file, 'utf8')))
    expect(editors.map((file) => relative(packageFile('.'), file))).toEqual([
      'src/auth/keys-edit.ts',
    ])
    const cli = readFileSync(packageFile('src/cli/keys.ts'), 'utf8')
    const console = readFileSync(packageFile('src/console/app.tsx'), 'utf8')
    for (const text of [cli, console]) expect(text).toMatch(/from '\.\.\/auth\/keys-edit\.js'/)
  })
})
