import { chmodSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import pino from 'pino'
import { Writable } from 'node:stream'
import { afterAll, describe, expect, it } from 'vitest'
import { keyHash } from '../../../src/auth/hash.js'
import { generateKey } from '../../../src/auth/keygen.js'
import {
  buildKeyTable,
  keysFileFor,
  parseKeysText,
  writeFileAtomic,
} from '../../../src/auth/keys-file.js'
import { CLIENT_DISABLED, KeysStore } from '../../../src/auth/keys-store.js'
import { mintedSecretsFile as secretsFileFor } from '../../../src/auth/minted-secrets.js'
import { loadConfig } from '../../../src/config/load.js'
import { loadScopeResolver } from '../../../src/auth/scopes.js'
import { ADMIN_KEY_ENV, client, remember, tempDir, USER_KEY_ENV, writeKeys } from './support.js'

const resolver = loadScopeResolver()
const dir = tempDir()
afterAll(() => rmSync(dir, { recursive: true, force: true }))

/** The environment these tables see: the fake Immich's keys, nothing of the caller's. */
const env = { [USER_KEY_ENV]: 'fake-user-key', [ADMIN_KEY_ENV]: 'fake-admin-key' }

function table(yaml: string, vars: Record<string, string | undefined> = env) {
  return buildKeyTable(parseKeysText(yaml, 'keys.yaml'), resolver, 'keys.yaml', { env: vars })
}

function capture() {
  const lines: string[] = []
  const logger = pino(
    { level: 'info' },
    new Writable({ write: (c: Buffer, _e, done) => (lines.push(c.toString()), done()) })
  )
  return { lines, logger }
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
      env,
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
  it('picks up additions and removals, keeps the last good table on a bad edit, empties on delete', async () => {
    const a = client({ name: 'a', scopes: ['all'] })
    const b = client({ name: 'b', scopes: ['album.read'] })
    const file = join(dir, 'reload.yaml')
    writeKeys(file, [a.entry])
    const { lines, logger } = capture()
    const store = await KeysStore.open({ file, required: true, env, logger, pollMs: 60_000 })
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
      env,
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
      KeysStore.open({ file: join(dir, 'nope.yaml'), required: true, env, logger, pollMs: 1000 })
    ).rejects.toThrow(/nope\.yaml: cannot read \(ENOENT\)/)
    const store = await KeysStore.open({
      file: join(dir, 'later.yaml'),
      required: false,
      env,
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

  it('writes atomically: no temp file is left, and the file is 0600 even when it was 0644', () => {
    const file = join(dir, 'mode.yaml')
    writeFileSync(file, 'clients: []\n', { mode: 0o644 })
    chmodSync(file, 0o644)
    writeFileAtomic(file, 'clients: []\n# again\n')
    expect(statSync(file).mode & 0o777).toBe(0o600)
    expect(readFileSync(file, 'utf8')).toContain('again')
  })

  it('a write landing while the file is being read is picked up by the next check', async () => {
    const a = client({ name: 'a', scopes: ['all'] })
    const b = client({ name: 'b', scopes: ['all'] })
    const file = join(dir, 'race.yaml')
    writeKeys(file, [])
    let writeDuringRead = false
    // Reading the environment happens in the middle of a load: the CLI's next write lands right then.
    const racingEnv = new Proxy(env as Record<string, string>, {
      get(target, name: string) {
        if (writeDuringRead) {
          writeDuringRead = false
          writeKeys(file, [a.entry, b.entry])
        }
        return target[name]
      },
    })
    const { logger } = capture()
    const store = await KeysStore.open({
      file,
      required: true,
      env: racingEnv,
      logger,
      pollMs: 60_000,
    })
    try {
      writeKeys(file, [a.entry])
      writeDuringRead = true
      await store.check()
      expect(store.lookup(a.key).status).toBe('ok')
      await store.check()
      expect(store.lookup(b.key).status).toBe('ok')
    } finally {
      store.close()
    }
  })

  it('a new setup: the secrets file written before the keys file is no "keys file removed"', async () => {
    const sub = tempDir('igw-new-setup-')
    const file = join(sub, 'keys.yaml')
    const { lines, logger } = capture()
    const store = await KeysStore.open({ file, required: false, env, logger, pollMs: 60_000 })
    try {
      writeFileAtomic(secretsFileFor(file), '{"clients":{"a":"some-immich-key"}}\n')
      await store.check()
      expect(lines.some((l) => l.includes('keys file removed'))).toBe(false)
    } finally {
      store.close()
      rmSync(sub, { recursive: true, force: true })
    }
  })

  it('a keys file left at 0 bytes is ignored and warned about once', async () => {
    const a = client({ name: 'a', scopes: ['all'] })
    const file = join(dir, 'empty.yaml')
    writeKeys(file, [a.entry])
    const { lines, logger } = capture()
    const store = await KeysStore.open({ file, required: true, env, logger, pollMs: 60_000 })
    try {
      writeFileSync(file, '')
      for (let i = 0; i < 4; i++) await store.check()
      expect(store.lookup(a.key).status).toBe('ok')
      expect(lines.filter((l) => l.includes('keys file is empty (0 bytes)'))).toHaveLength(1)
    } finally {
      store.close()
    }
  })

  it('keysFileFor: the policy option (required) > the resolved environment (may be missing) > none', () => {
    expect(keysFileFor('/x/k.yaml', { vars: {}, keysFile: '/y/k.yaml' })).toEqual({
      file: '/x/k.yaml',
      required: true,
    })
    expect(keysFileFor(undefined, { vars: {}, keysFile: '/y/k.yaml' })).toEqual({
      file: '/y/k.yaml',
      required: false,
    })
    expect(keysFileFor(undefined, undefined)).toBeUndefined()
    expect(loadConfig({ GATEWAY_KEYS_FILE: '/z/k.yaml' }).environment?.keysFile).toBe('/z/k.yaml')
    expect(loadConfig({}).environment?.keysFile).toBe(join(process.cwd(), 'config/keys.yaml'))
    expect(secretsFileFor('/data/keys.yaml')).toBe('/data/keys.upstream-secrets.json')
  })
})

describe('upstream credentials: env, file, secrets file; a missing one disables its client alone', () => {
  it('a client whose env variable is unset is disabled, naming it; the others are built', () => {
    const t = table(
      `clients:\n  - name: frame\n    keyHash: "${keyHash('1')}"\n    scopes: [all]\n    upstreamKeyEnv: IGW_TEST_UNSET_VAR\n  - name: ok\n    keyHash: "${keyHash('2')}"\n    scopes: [all]\n    upstreamKeyEnv: ${USER_KEY_ENV}\n`
    )
    expect(t.clients.get('frame')).toMatchObject({
      disabled: 'environment variable IGW_TEST_UNSET_VAR is not set',
      upstreamKey: '',
      upstreamIdentity: '',
    })
    expect(t.clients.get('ok')).toMatchObject({ upstreamKey: 'fake-user-key' })
    expect(t.clients.get('ok')!.disabled).toBeUndefined()
  })

  it('upstreamKeyFile (relative to the keys file, trimmed) and the secrets file, hot-reloaded', async () => {
    const sub = tempDir('igw-secrets-')
    const file = join(sub, 'keys.yaml')
    writeFileSync(join(sub, 'immich-key'), remember('key-from-a-file') + '\n')
    const fromFile = client({ name: 'filed', scopes: ['all'] })
    delete fromFile.entry.upstreamKeyEnv
    fromFile.entry.upstreamKeyFile = 'immich-key'
    const fromSecrets = client({ name: 'stored', scopes: ['all'] })
    delete fromSecrets.entry.upstreamKeyEnv
    writeKeys(file, [fromFile.entry, fromSecrets.entry])
    const { lines, logger } = capture()
    const store = await KeysStore.open({ file, required: true, env, logger, pollMs: 60_000 })
    try {
      expect(store.lookup(fromFile.key)).toMatchObject({
        client: { upstreamKey: 'key-from-a-file' },
      })
      const stored = store.lookup(fromSecrets.key)
      expect(stored).toMatchObject({ status: 'ok' })
      expect(stored.status === 'ok' && stored.client.disabled).toMatch(
        /no Immich API key for it in .*keys\.upstream-secrets\.json/
      )
      expect(lines.filter((l) => l.includes(CLIENT_DISABLED))).toHaveLength(1)
      expect(lines.find((l) => l.includes(CLIENT_DISABLED))).toContain('"client":"stored"')

      writeFileAtomic(
        secretsFileFor(file),
        JSON.stringify({ clients: { stored: remember('key-from-secrets') } })
      )
      await store.check()
      expect(store.lookup(fromSecrets.key)).toMatchObject({
        client: { upstreamKey: 'key-from-secrets' },
      })
      writeFileAtomic(join(sub, 'immich-key'), remember('rotated-in-immich'))
      await store.check()
      expect(store.lookup(fromFile.key)).toMatchObject({
        client: { upstreamKey: 'rotated-in-immich' },
      })
      for (const secret of ['key-from-a-file', 'key-from-secrets', 'rotated-in-immich'])
        expect(lines.join('\n')).not.toContain(secret)
    } finally {
      store.close()
      rmSync(sub, { recursive: true, force: true })
    }
  })

  it('upstreamKeyEnv and upstreamKeyFile together are refused, naming the field', () => {
    expect(() =>
      parseKeysText(
        `clients:\n  - name: a\n    keyHash: "${keyHash('1')}"\n    scopes: [all]\n    upstreamKeyEnv: X\n    upstreamKeyFile: /k\n`,
        'keys.yaml'
      )
    ).toThrow(
      /clients\[0\] \(a\)\.upstreamKeyFile: set at most one of upstreamKeyEnv, upstreamKeyFile, immichKey/
    )
  })
})
