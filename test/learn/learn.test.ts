import { readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { ClientEntry } from '../../src/auth/keys-file.js'
import { FileUsageStore, usageStateFile } from '../../src/auth/usage.js'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { client, remember, tempDir, writeKeys } from '../policies/api-key-auth/support.js'
import { startStack, type Stack } from '../support/stack.js'
import { cli } from './cli.js'
import { EXPECTED, FIXTURES } from './fixtures.js'
import { refusals, replay } from './replay.js'

vi.setConfig({ testTimeout: 60_000 })

const dir = tempDir('igw-learn-')
const keysFile = join(dir, 'keys.yaml')
const learners = Object.fromEntries(
  FIXTURES.map((f) => [f.name, client({ name: f.name, scopes: [], learn: {} })])
)
let immich: FakeImmich

beforeAll(async () => {
  immich = await startFakeImmich({ answerEveryRoute: true })
  writeKeys(
    keysFile,
    Object.values(learners).map((l) => l.entry)
  )
})
afterAll(async () => {
  await immich?.close()
  rmSync(dir, { recursive: true, force: true })
})

function gateway(file = keysFile, scopes: Record<string, unknown> = {}): Promise<Stack> {
  return startStack(
    { policies: { 'api-key-auth': { keysFile: file, reloadCheckMs: 100 }, scopes } },
    { immich }
  )
}

function readEntries(file = keysFile): ClientEntry[] {
  return (parse(readFileSync(file, 'utf8')) as { clients: ClientEntry[] }).clients
}

describe('learn → usage → tighten on the call sequences of real clients', () => {
  it('learns each client: every call passes, and the learned set is its permissions', async () => {
    // Flushed only at shutdown: the state must survive the gateway stopping.
    const stack = await gateway(keysFile, { learn: { flushSeconds: 3600 } })
    for (const fixture of FIXTURES) {
      const results = await replay(stack.url, learners[fixture.name]!.key, fixture)
      expect(refusals(results), fixture.name).toEqual([])
    }
    await stack.close()
    const store = new FileUsageStore(usageStateFile(keysFile))
    for (const fixture of FIXTURES) {
      const usage = await store.read(fixture.name)
      const permissions = [...new Set([...usage.keys()].map((f) => f.split(' ')[0]))].sort()
      expect(permissions, fixture.name).toEqual(EXPECTED[fixture.name])
    }
    // Route templates, never raw paths (ids) nor queries.
    const frame = await store.read('photo-frame')
    expect([...frame.keys()]).toContain('asset.view GET /api/assets/{id}/thumbnail')
    expect([...frame.keys()].join('\n')).not.toMatch(/[0-9a-f]{8}-|\?/)
    expect(frame.get('album.read GET /api/albums')).toMatchObject({ granted: 1, refused: 0 })
  })

  it('keys usage: a table and --json with counts, last use, example routes and the unused grants', async () => {
    const json = await cli(['keys', 'usage', 'photo-frame', '--json', '--file', keysFile])
    expect(json.stderr).toBe('')
    const report = JSON.parse(json.stdout) as {
      learning: boolean
      used: { permission: string; granted: number; last: string; routes: string[] }[]
      unused: string[]
    }
    expect(report.learning).toBe(true)
    expect(report.used.map((p) => p.permission).sort()).toEqual(EXPECTED['photo-frame'])
    const assetRead = report.used.find((p) => p.permission === 'asset.read')!
    expect(assetRead.granted).toBe(3)
    expect(assetRead.routes).toEqual(
      expect.arrayContaining(['POST /api/search/random', 'GET /api/assets/{id}'])
    )
    expect(Date.parse(assetRead.last)).toBeGreaterThan(Date.now() - 120_000)
    // Learning grants every non-admin permission: the unused ones are the rest of them.
    expect(report.unused).toContain('asset.delete')
    expect(report.unused).not.toContain('asset.view')
    expect(report.unused).not.toContain('adminUser.read')

    const table = await cli(['keys', 'usage', 'photo-frame', '--file', keysFile])
    expect(table.stdout).toMatch(/^PERMISSION\s+CALLS\s+LAST USE\s+EXAMPLE ROUTES$/m)
    expect(table.stdout).toMatch(/^asset\.read\s+3\s+\d{4}-\d\d-\d\dT/m)
    expect(table.stdout).toMatch(/Held but never used \(\d+\):/)
  })

  it('keys tighten --dry-run shows the diff and changes nothing', async () => {
    const before = readFileSync(keysFile, 'utf8')
    const run = await cli(['keys', 'tighten', 'immich-cli', '--dry-run', '--file', keysFile])
    expect(run.code).toBe(0)
    // The Immich CLI's learned set is exactly the shipped `uploader` preset.
    expect(run.stdout).toContain('scopes [] → [uploader]')
    expect(run.stdout).toMatch(/- \d+ no longer granted/)
    expect(readFileSync(keysFile, 'utf8')).toBe(before)
  })

  it('keys tighten sets the used set (a preset where one matches exactly), ends learn mode, and a running gateway enforces it', async () => {
    const stack = await gateway()
    const frameKey = learners['photo-frame']!.key
    const outside = {
      name: 'x',
      source: '',
      calls: [
        {
          method: 'DELETE' as const,
          path: `/api/albums/${'1'.repeat(8)}-1111-4111-8111-111111111111`,
        },
      ],
    }
    try {
      // (No call before tightening: a learning key's calls are learned, this one too.)
      for (const fixture of FIXTURES) {
        const run = await cli(['keys', 'tighten', fixture.name, '--file', keysFile])
        expect(run.code, run.stderr).toBe(0)
      }
      await vi.waitFor(
        async () => {
          expect(refusals(await replay(stack.url, frameKey, outside))).toEqual([
            expect.stringContaining('403 Missing required permission: album.delete'),
          ])
        },
        { timeout: 5000, interval: 100 }
      )
    } finally {
      await stack.close()
    }
    const entries = readEntries()
    for (const entry of entries) {
      expect(entry.learn, entry.name).toBeUndefined()
      expect(entry.scopes, entry.name).toEqual(
        entry.name === 'immich-cli' ? ['uploader'] : EXPECTED[entry.name]
      )
    }
    expect(readFileSync(keysFile, 'utf8')).toMatch(/scopes: \[ uploader \]/)
  })

  it('the tightened keys still serve their clients', async () => {
    const stack = await gateway()
    try {
      for (const fixture of FIXTURES) {
        const results = await replay(stack.url, learners[fixture.name]!.key, fixture)
        expect(refusals(results), fixture.name).toEqual([])
      }
    } finally {
      await stack.close()
    }
  })

  it('and are minimal: without any one learned permission, the replay fails on it', async () => {
    const file = join(dir, 'minus.yaml')
    const variants: { fixture: (typeof FIXTURES)[number]; missing: string; key: string }[] = []
    const entries: ClientEntry[] = []
    for (const fixture of FIXTURES) {
      for (const missing of EXPECTED[fixture.name]!) {
        const c = client({
          name: `${fixture.name}-no-${missing}`,
          scopes: EXPECTED[fixture.name]!.filter((p) => p !== missing),
        })
        entries.push(c.entry)
        variants.push({ fixture, missing, key: c.key })
      }
    }
    writeKeys(file, entries)
    const stack = await gateway(file)
    try {
      for (const { fixture, missing, key } of variants) {
        const refused = refusals(await replay(stack.url, key, fixture))
        expect(refused.length, `${fixture.name} without ${missing}`).toBeGreaterThan(0)
        for (const line of refused)
          expect(line).toContain(`Missing required permission: ${missing}`)
      }
    } finally {
      await stack.close()
    }
    expect(variants.length).toBe(31)
  })

  it('Immich itself refuses the same: a key minted with the learned set serves, one without any permission of it does not', async () => {
    const caller = { user: { id: 'u-admin', isAdmin: true } }
    for (const fixture of FIXTURES) {
      const full = immich.apiKeys.create(caller, fixture.name, EXPECTED[fixture.name])
      if (!full.ok) throw new Error(full.message)
      expect(refusals(await replay(immich.url, full.key.secret, fixture)), fixture.name).toEqual([])
      for (const missing of EXPECTED[fixture.name]!) {
        const less = immich.apiKeys.create(
          caller,
          fixture.name,
          EXPECTED[fixture.name]!.filter((p) => p !== missing)
        )
        if (!less.ok) throw new Error(less.message)
        const refused = refusals(await replay(immich.url, less.key.secret, fixture))
        expect(refused.length, `${fixture.name} without ${missing}`).toBeGreaterThan(0)
      }
    }
    // `all` grants everything, as in Immich.
    const all = immich.apiKeys.create(caller, 'all', ['all'])
    if (!all.ok) throw new Error(all.message)
    for (const fixture of FIXTURES)
      expect(refusals(await replay(immich.url, all.key.secret, fixture))).toEqual([])
  })
})

describe('learned state across restarts, without Redis', () => {
  it('is flushed periodically to the state file and adds up over restarts', async () => {
    const file = join(dir, 'restart.yaml')
    const learner = client({ name: 'counter', scopes: [], learn: {} })
    writeKeys(file, [learner.entry])
    const store = new FileUsageStore(usageStateFile(file))
    const frame = FIXTURES.find((f) => f.name === 'photo-frame')!
    const first = await gateway(file, { learn: { flushSeconds: 0.1 } })
    await replay(first.url, learner.key, frame)
    // Written while the gateway runs, not only at shutdown.
    await vi.waitFor(async () => {
      expect((await store.read('counter')).get('album.read GET /api/albums')?.granted).toBe(1)
    })
    await first.close()
    const second = await gateway(file, { learn: { flushSeconds: 3600 } })
    await replay(second.url, learner.key, frame)
    await second.close()
    const cell = (await store.read('counter')).get('album.read GET /api/albums')!
    expect(cell.granted).toBe(2)
    expect(cell.first).toBeLessThan(cell.last)
  })

  it('keys learn --reset starts a new learning period from nothing', async () => {
    const file = join(dir, 'restart.yaml')
    const store = new FileUsageStore(usageStateFile(file))
    expect((await store.read('counter')).size).toBeGreaterThan(0)
    const run = await cli(['keys', 'learn', 'counter', '--reset', '--file', file])
    expect(run.code, run.stderr).toBe(0)
    expect((await store.read('counter')).size).toBe(0)
  })

  it('learning ends at learn.until: the key then has only its scopes', async () => {
    const file = join(dir, 'until.yaml')
    const past = client({
      name: 'past',
      scopes: ['album.read'],
      learn: { until: '2020-01-01T00:00:00Z' },
    })
    const present = client({
      name: 'present',
      scopes: ['album.read'],
      learn: { until: '2999-01-01T00:00:00Z', base: ['person.read'] },
    })
    writeKeys(file, [past.entry, present.entry])
    const stack = await gateway(file)
    try {
      const people = FIXTURES.find((f) => f.name === 'photo-frame')!.calls.filter(
        (c) => c.path === '/api/people' || c.path === '/api/albums'
      )
      const fixture = { name: 'x', source: '', calls: people }
      // Past learning: scopes only (album.read). Present: the base only (person.read).
      expect(refusals(await replay(stack.url, past.key, fixture))).toEqual([
        'GET /api/people: 403 Missing required permission: person.read',
      ])
      expect(refusals(await replay(stack.url, present.key, fixture))).toEqual([
        'GET /api/albums: 403 Missing required permission: album.read',
      ])
    } finally {
      await stack.close()
    }
    const usage = await new FileUsageStore(usageStateFile(file)).read('present')
    // A refused call while learning is recorded as refused, not as used.
    expect(usage.get('album.read GET /api/albums')).toMatchObject({ granted: 0, refused: 1 })
    expect(usage.get('person.read GET /api/people')).toMatchObject({ granted: 1, refused: 0 })
    expect((await new FileUsageStore(usageStateFile(file)).read('past')).size).toBe(0)
  })
})

describe('keys add --learn / --report-only', () => {
  it('writes the learn field (until, base) and reportOnly', async () => {
    const file = join(dir, 'add.yaml')
    const env = { IGW_TEST_LEARN_KEY: 'x' }
    const run = await cli(
      [
        'keys',
        'add',
        '--name',
        'tablet',
        '--learn',
        '--for',
        '7d',
        '--scopes',
        'read-only',
        '--report-only',
        '--upstream-key-env',
        'IGW_TEST_LEARN_KEY',
        '--file',
        file,
      ],
      env
    )
    expect(run.code, run.stderr).toBe(0)
    remember(run.stdout.trimEnd().split('\n').pop()!)
    const [entry] = readEntries(file)
    expect(entry).toMatchObject({ scopes: [], learn: { base: ['read-only'] }, reportOnly: true })
    const days = (Date.parse(entry!.learn!.until!) - Date.now()) / 86_400_000
    expect(days).toBeGreaterThan(6.9)
    expect(days).toBeLessThan(7.01)
    const bad = await cli(
      ['keys', 'add', '--name', 'y', '--learn', '--scopes', 'nope', '--file', file],
      env
    )
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/unknown scope "nope"/)
  })
})

describe('report-only scopes', () => {
  it('forwards what the scopes would refuse, logs it and counts it per client and permission', async () => {
    const file = join(dir, 'report.yaml')
    const watch = client({ name: 'watch', scopes: ['photo-frame'], reportOnly: true })
    const strict = client({ name: 'strict', scopes: ['photo-frame'] })
    writeKeys(file, [watch.entry, strict.entry])
    const stack = await gateway(file)
    try {
      const create = {
        name: 'x',
        source: '',
        calls: [
          { method: 'POST' as const, path: '/api/albums', json: { albumName: 'a' } },
          { method: 'GET' as const, path: '/api/albums' },
        ],
      }
      const before = immich.requestsTo('/api/albums', 'POST').length
      const seen = await replay(stack.url, watch.key, create)
      expect(seen.map((r) => r.status)).toEqual([201, 200])
      expect(immich.requestsTo('/api/albums', 'POST').length).toBe(before + 1)
      expect(refusals(await replay(stack.url, strict.key, create))).toEqual([
        'POST /api/albums: 403 Missing required permission: album.create',
      ])
      const metrics = await stack.gateway.deps.metrics.registry.metrics()
      expect(metrics).toContain(
        'immich_gateway_scope_would_refuse_total{client="watch",permission="album.create"} 1'
      )
      expect(metrics).not.toMatch(/scope_would_refuse_total\{client="strict"/)
      const line = stack.logs.find((l) => l.includes('scope would refuse'))
      expect(JSON.parse(line!)).toMatchObject({ client: 'watch', permission: 'album.create' })
    } finally {
      await stack.close()
    }
  })
})
