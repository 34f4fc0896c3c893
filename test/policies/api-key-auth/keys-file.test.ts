import { readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { Writable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { keyHash } from '../../../src/auth/hash.js'
import { generateKey } from '../../../src/auth/keygen.js'
import {
  buildKeyTable,
  parseKeysText,
  resolveKeysFile,
  writeFileAtomic,
} from '../../../src/auth/keys-file.js'
import { KeysStore } from '../../../src/auth/keys-store.js'
import { loadScopeResolver } from '../../../src/auth/scopes.js'
import { ADMIN_KEY_ENV, client, remember, tempDir, USER_KEY_ENV, writeKeys } from './support.js'

const resolver = loadScopeResolver()
const dir = tempDir()
afterAll(() => rmSync(dir, { recursive: true, force: true }))

function table(yaml: string, env: Record<string, string | undefined> = process.env) {
  return buildKeyTable(parseKeysText(yaml, 'keys.yaml'), resolver, 'keys.yaml', { env })
}

describe('keys file: validation names the field and never echoes a secret', () => {
  const hash = keyHash('x')
  const cases: [string, string, RegExp][] = [
    [
      'unknown top-level field',
      'clients: []\nclient: []\n',
      /keys\.yaml: \(root\): Unrecognized key: "client"/,
    ],
    [
      'unknown client field',
      `clients:\n  - name: a\n    keyHash: "${hash}"\n    scopes: [all]\n    upstreamKeyEnv: X\n    scope: [all]\n`,
      /clients\[0\] \(a\): Unrecognized key: "scope"/,
    ],
    [
      'bad hash',
      'clients:\n  - name: a\n    keyHash: "abc"\n    scopes: [all]\n    upstreamKeyEnv: X\n',
      /clients\[0\] \(a\)\.keyHash: expected "sha256:"/,
    ],
    [
      'no scopes',
      `clients:\n  - name: a\n    keyHash: "${hash}"\n    scopes: []\n    upstreamKeyEnv: X\n`,
      /clients\[0\] \(a\)\.scopes: /,
    ],
    [
      'bad name',
      `clients:\n  - name: "a b"\n    keyHash: "${hash}"\n    scopes: [all]\n    upstreamKeyEnv: X\n`,
      /clients\[0\]\.name: 1–64 letters/,
    ],
    [
      'bad date',
      `clients:\n  - name: a\n    keyHash: "${hash}"\n    scopes: [all]\n    upstreamKeyEnv: X\n    expiresAt: soon\n`,
      /clients\[0\] \(a\)\.expiresAt: expected an ISO 8601/,
    ],
    ['not YAML', 'clients: [\n', /keys\.yaml: not valid YAML: /],
  ]
  it.each(cases)('%s', (_label, yaml, message) => {
    expect(() => parseKeysText(yaml, 'keys.yaml')).toThrow(message)
  })

  it('a raw key pasted as keyHash is called out, and not repeated in the error', () => {
    const key = remember(generateKey())
    let message = ''
    try {
      parseKeysText(
        `clients:\n  - name: a\n    keyHash: "${key}"\n    scopes: [all]\n    upstreamKeyEnv: X\n`,
        'keys.yaml'
      )
    } catch (err) {
      message = (err as Error).message
    }
    expect(message).toMatch(/this is a key, not its hash/)
    expect(message).not.toContain(key)
  })

  it('an empty file is no clients', () => {
    expect(parseKeysText('', 'f').clients).toEqual([])
    expect(parseKeysText('clients:\n', 'f').clients).toEqual([])
  })

  const base = (extra = '', name = 'a', h = hash) =>
    `  - name: ${name}\n    keyHash: "${h}"\n    scopes: [photo-frame, asset.*]\n    upstreamKeyEnv: ${USER_KEY_ENV}\n${extra}`

  it('builds: presets and wildcards expanded, upstream identity from the injected key', () => {
    const t = table(`clients:\n${base()}`)
    const a = t.clients.get('a')!
    expect(a.scopes.has('album.read')).toBe(true)
    expect(a.scopes.has('asset.*')).toBe(true)
    expect(a.scopes.has('photo-frame')).toBe(false)
    expect(a.upstreamKey).toBe('fake-user-key')
    expect(a.upstreamIdentity).toMatch(/^u:[0-9a-f]{32}$/)
  })

  it('two clients injecting the same Immich key share an identity; different keys do not', () => {
    const t = table(
      `clients:\n${base('', 'a', keyHash('1'))}${base('', 'b', keyHash('2'))}  - name: c\n    keyHash: "${keyHash('3')}"\n    scopes: [all]\n    upstreamKeyEnv: ${ADMIN_KEY_ENV}\n`
    )
    expect(t.clients.get('a')!.upstreamIdentity).toBe(t.clients.get('b')!.upstreamIdentity)
    expect(t.clients.get('a')!.upstreamIdentity).not.toBe(t.clients.get('c')!.upstreamIdentity)
  })

  const semantic: [string, string, RegExp][] = [
    [
      'unknown scope',
      `clients:\n  - name: a\n    keyHash: "${hash}"\n    scopes: [all, asset.veiw]\n    upstreamKeyEnv: X\n`,
      /clients\[0\] \(a\)\.scopes\[1\]: unknown scope "asset\.veiw"/,
    ],
    [
      'wildcard of no prefix',
      `clients:\n  - name: a\n    keyHash: "${hash}"\n    scopes: [assets.*]\n    upstreamKeyEnv: X\n`,
      /unknown scope "assets\.\*"/,
    ],
    [
      'bad CIDR',
      `clients:\n${base('    allowFrom: [10.0.0.0/33]\n')}`,
      /clients\[0\] \(a\)\.allowFrom: "10\.0\.0\.0\/33" has a bad prefix length/,
    ],
    [
      'missing env var',
      `clients:\n  - name: frame\n    keyHash: "${hash}"\n    scopes: [all]\n    upstreamKeyEnv: IGW_TEST_UNSET_VAR\n`,
      /clients\[0\] \(frame\)\.upstreamKeyEnv: environment variable IGW_TEST_UNSET_VAR is not set/,
    ],
    [
      'duplicate name',
      `clients:\n${base('', 'a', keyHash('1'))}${base('', 'a', keyHash('2'))}`,
      /clients\[1\] \(a\)\.name: duplicate client name/,
    ],
    [
      'duplicate hash',
      `clients:\n${base('', 'a')}${base('', 'b')}`,
      /clients\[1\] \(b\)\.keyHash: the same key hash appears twice/,
    ],
  ]
  it.each(semantic)('%s', (_label, yaml, message) => {
    expect(() => table(yaml)).toThrow(message)
  })
})

describe('key lookup', () => {
  it('current key, rotated key in grace, rotated key after grace, expiry', async () => {
    const current = client({ name: 'a', scopes: ['all'], previous: [] })
    const old = remember(generateKey())
    const older = remember(generateKey())
    current.entry.previous = [
      { keyHash: keyHash(old), validUntil: new Date(Date.now() + 60_000).toISOString() },
      { keyHash: keyHash(older), validUntil: new Date(Date.now() - 1).toISOString() },
    ]
    const expired = client({
      name: 'b',
      scopes: ['all'],
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    })
    const file = join(dir, 'lookup.yaml')
    writeKeys(file, [current.entry, expired.entry])
    const store = await KeysStore.open({
      file,
      required: true,
      logger: pino({ level: 'silent' }),
      pollMs: 60_000,
    })
    try {
      expect(store.lookup(current.key)).toMatchObject({
        status: 'ok',
        rotated: false,
        client: { name: 'a' },
      })
      expect(store.lookup(old)).toMatchObject({
        status: 'ok',
        rotated: true,
        client: { name: 'a' },
      })
      expect(store.lookup(older)).toEqual({ status: 'unknown' })
      expect(store.lookup(expired.key)).toMatchObject({ status: 'expired' })
      expect(store.lookup(generateKey())).toEqual({ status: 'unknown' })
      expect(store.lookup('igw_short')).toEqual({ status: 'unknown' })
    } finally {
      store.close()
    }
  })
})

describe('KeysStore hot reload', () => {
  function capture() {
    const lines: string[] = []
    const logger = pino(
      { level: 'info' },
      new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) })
    )
    return { lines, logger }
  }

  it('picks up additions and removals, keeps the last good table on a bad edit, empties on delete', async () => {
    const a = client({ name: 'a', scopes: ['all'] })
    const b = client({ name: 'b', scopes: ['album.read'] })
    const file = join(dir, 'reload.yaml')
    writeKeys(file, [a.entry])
    const { lines, logger } = capture()
    const store = await KeysStore.open({ file, required: true, logger, pollMs: 60_000 })
    try {
      expect(store.lookup(b.key).status).toBe('unknown')
      writeKeys(file, [a.entry, b.entry])
      await store.check()
      expect(store.lookup(b.key).status).toBe('ok')

      // A typo: the previous table stays, and the log names the field.
      writeFileAtomic(file, readFileSync(file, 'utf8').replace('album.read', 'album.raed'))
      await store.check()
      expect(store.lookup(a.key).status).toBe('ok')
      expect(store.lookup(b.key).status).toBe('ok')
      const error = lines.find((l) => l.includes('keys file reload failed'))
      expect(error).toMatch(/clients\[1\] \(b\)\.scopes\[0\]: unknown scope \\"album\.raed\\"/)

      // A zero-byte file (an editor mid-save) changes nothing.
      writeFileSync(file, '')
      await store.check()
      expect(store.lookup(a.key).status).toBe('ok')

      writeKeys(file, [b.entry])
      await store.check()
      expect(store.lookup(a.key).status).toBe('unknown')

      unlinkSync(file)
      await store.check()
      expect(store.lookup(b.key).status).toBe('unknown')
      expect(lines.some((l) => l.includes('keys file removed'))).toBe(true)
      expect(lines.join('\n')).not.toContain('igw_')
    } finally {
      store.close()
    }
  })

  it('notices a change by itself (fs.watch or the stat poll) within a second', async () => {
    const a = client({ name: 'a', scopes: ['all'] })
    const file = join(dir, 'watch.yaml')
    writeKeys(file, [])
    const store = await KeysStore.open({
      file,
      required: true,
      logger: pino({ level: 'silent' }),
      pollMs: 200,
    })
    try {
      writeKeys(file, [a.entry])
      const started = Date.now()
      while (store.lookup(a.key).status !== 'ok' && Date.now() - started < 2000)
        await new Promise((r) => setTimeout(r, 20))
      expect(Date.now() - started).toBeLessThan(1000)
    } finally {
      store.close()
    }
  })

  it('a missing configured file stops the boot; a missing default file is an empty table', async () => {
    const logger = pino({ level: 'silent' })
    await expect(
      KeysStore.open({ file: join(dir, 'nope.yaml'), required: true, logger, pollMs: 1000 })
    ).rejects.toThrow(/nope\.yaml: cannot read \(ENOENT\)/)
    const store = await KeysStore.open({
      file: join(dir, 'later.yaml'),
      required: false,
      logger,
      pollMs: 1000,
    })
    expect(store.clientCount).toBe(0)
    const a = client({ name: 'a', scopes: ['all'] })
    writeKeys(join(dir, 'later.yaml'), [a.entry])
    await store.check()
    expect(store.lookup(a.key).status).toBe('ok')
    store.close()
  })

  it('the CLI writes atomically: no temp file is left, the mode of an existing file is kept', () => {
    const file = join(dir, 'mode.yaml')
    writeFileAtomic(file, 'clients: []\n')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    writeFileAtomic(file, 'clients: []\n# again\n')
    expect(readFileSync(file, 'utf8')).toContain('again')
  })

  it('resolveKeysFile: explicit > GATEWAY_KEYS_FILE > config/keys.yaml', () => {
    expect(resolveKeysFile('/x/k.yaml', {})).toEqual({ file: '/x/k.yaml', explicit: true })
    expect(resolveKeysFile(undefined, { GATEWAY_KEYS_FILE: '/y/k.yaml' })).toEqual({
      file: '/y/k.yaml',
      explicit: true,
    })
    expect(resolveKeysFile(undefined, {})).toEqual({
      file: join(process.cwd(), 'config/keys.yaml'),
      explicit: false,
    })
  })
})
