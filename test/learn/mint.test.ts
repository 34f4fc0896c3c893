import { readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import type { ClientEntry } from '../../src/auth/keys-file.js'
import { immichPermissions } from '../../src/auth/least-privilege.js'
import { mintedSecretsFile } from '../../src/auth/minted-secrets.js'
import { loadScopeResolver } from '../../src/auth/scopes.js'
import {
  ADMIN_EMAIL,
  ADMIN_PASSWORD,
  startFakeImmich,
  type FakeImmich,
} from '../fake-immich/server.js'
import { leakedSecrets, remember, tempDir } from '../policies/api-key-auth/support.js'
import { startStack } from '../support/stack.js'
import { cli, type Run } from './cli.js'
import { EXPECTED, FIXTURES } from './fixtures.js'
import { refusals, replay } from './replay.js'

vi.setConfig({ testTimeout: 90_000 })

const dir = tempDir('igw-mint-')
const keysFile = join(dir, 'keys.yaml')
const secretsFile = mintedSecretsFile(keysFile)
let immich: FakeImmich
remember(ADMIN_PASSWORD)

beforeAll(async () => {
  immich = await startFakeImmich({ answerEveryRoute: true })
})
afterAll(async () => {
  await immich?.close()
  rmSync(dir, { recursive: true, force: true })
})

function keys(args: string[], password = ADMIN_PASSWORD): Promise<Run> {
  return cli(['keys', ...args, '--file', keysFile], {}, `${password}\n`)
}
const login = () => ['--immich-login', ADMIN_EMAIL, '--immich-url', immich.url]

function entry(name: string): ClientEntry | undefined {
  return (parse(readFileSync(keysFile, 'utf8')) as { clients: ClientEntry[] }).clients.find(
    (c) => c.name === name
  )
}
function secrets(): Record<string, string> {
  return (JSON.parse(readFileSync(secretsFile, 'utf8')) as { clients: Record<string, string> })
    .clients
}

describe('Immich-minted upstream keys', () => {
  let gatewayKey = ''

  it('keys add --immich-login mints a key with exactly the permissions of the scopes, and logs out', async () => {
    const run = await keys(['add', '--name', 'frame', '--scopes', 'photo-frame', ...login()])
    expect(run.code, run.stderr).toBe(0)
    gatewayKey = remember(run.stdout.trimEnd().split('\n').pop()!)
    const [key] = immich.apiKeys.list()
    expect(immich.apiKeys.list()).toHaveLength(1)
    remember(key!.secret)
    expect(key!.name).toBe('immich-gateway: frame')
    expect(key!.permissions).toEqual(
      immichPermissions(loadScopeResolver().expandPreset('photo-frame'))
    )
    expect(immich.apiKeys.logouts).toBe(1)
    // The secret: 0600, beside the keys file; never in keys.yaml nor in the output.
    expect(statSync(secretsFile).mode & 0o777).toBe(0o600)
    expect(secrets().frame).toBe(key!.secret)
    expect(readFileSync(keysFile, 'utf8')).not.toContain(key!.secret)
    expect(run.stdout + run.stderr).not.toContain(key!.secret)
    expect(run.stdout + run.stderr).not.toContain(ADMIN_PASSWORD)
    expect(entry('frame')).toMatchObject({ immichKey: { id: key!.id }, scopes: ['photo-frame'] })
    expect(entry('frame')!.upstreamKeyEnv).toBeUndefined()
  })

  it('the gateway injects the minted key, and Immich refuses what it was not minted for', async () => {
    const stack = await startStack({ policies: { 'api-key-auth': { keysFile } } }, { immich })
    try {
      const res = await request(`${stack.url}/api/albums`, { headers: { 'x-api-key': gatewayKey } })
      await res.body.text()
      expect(res.statusCode).toBe(200)
      expect(immich.lastRequest().headers['x-api-key']).toBe(secrets().frame)
      expect(leakedSecrets(stack.logs)).toEqual([])
    } finally {
      await stack.close()
    }
    const direct = await request(`${immich.url}/api/albums`, {
      method: 'POST',
      headers: { 'x-api-key': secrets().frame!, 'content-type': 'application/json' },
      body: '{}',
    })
    expect(direct.statusCode).toBe(403)
    expect(await direct.body.json()).toEqual({
      message: 'Missing required permission: album.create',
    })
  })

  it('a wrong password changes nothing and is never echoed', async () => {
    const before = readFileSync(keysFile, 'utf8')
    const run = await keys(
      ['add', '--name', 'other', '--scopes', 'uploader', ...login()],
      'hunter2-wrong'
    )
    expect(run.code).toBe(1)
    expect(run.stderr).toMatch(/login: Immich answered 401 \(Incorrect email or password\)/)
    expect(run.stderr).not.toContain('hunter2-wrong')
    expect(readFileSync(keysFile, 'utf8')).toBe(before)
    expect(immich.apiKeys.list()).toHaveLength(1)
  })

  it('keys tighten re-mints with the learned (smaller) set and deletes the old Immich key', async () => {
    const learn = await keys(['learn', 'frame', '--scopes', 'photo-frame'])
    expect(learn.code, learn.stderr).toBe(0)
    const stack = await startStack(
      { policies: { 'api-key-auth': { keysFile, reloadCheckMs: 100 } } },
      { immich }
    )
    const fixture = FIXTURES.find((f) => f.name === 'photo-frame')!
    expect(refusals(await replay(stack.url, gatewayKey, fixture))).toEqual([])
    await stack.close()

    const oldId = entry('frame')!.immichKey!.id
    const refused = await keys(['tighten', 'frame'])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toMatch(/--immich-login EMAIL/)

    const run = await keys(['tighten', 'frame', ...login()])
    expect(run.code, run.stderr).toBe(0)
    expect(run.stdout).toMatch(/- 2 no longer granted:\n\s+asset\.download, map\.read/)
    const now = entry('frame')!
    expect(now.learn).toBeUndefined()
    expect(now.scopes).toEqual(EXPECTED['photo-frame'])
    expect(immich.apiKeys.get(oldId)).toBeUndefined()
    const minted = immich.apiKeys.get(now.immichKey!.id)!
    remember(minted.secret)
    expect(minted.permissions).toEqual(EXPECTED['photo-frame'])
    expect(now.immichKey!.permissions).toEqual(EXPECTED['photo-frame'])
    expect(secrets().frame).toBe(minted.secret)
    // The re-minted key still serves the frame, at Immich itself.
    expect(refusals(await replay(immich.url, minted.secret, fixture))).toEqual([])
  })

  it('keys rotate --immich-login replaces the Immich key (same permissions)', async () => {
    const old = entry('frame')!.immichKey!
    const run = await keys(['rotate', 'frame', '--grace', '0s', ...login()])
    expect(run.code, run.stderr).toBe(0)
    gatewayKey = remember(run.stdout.trimEnd().split('\n').pop()!)
    const now = entry('frame')!.immichKey!
    expect(now.id).not.toBe(old.id)
    expect(immich.apiKeys.get(old.id)).toBeUndefined()
    expect(immich.apiKeys.get(now.id)!.permissions).toEqual(old.permissions)
    remember(secrets().frame!)
  })

  it('keys revoke deletes the Immich key and its stored secret', async () => {
    const id = entry('frame')!.immichKey!.id
    const refused = await keys(['revoke', 'frame'])
    expect(refused.code).toBe(2)
    expect(entry('frame')).toBeDefined()
    const run = await keys(['revoke', 'frame', ...login()])
    expect(run.code, run.stderr).toBe(0)
    expect(entry('frame')).toBeUndefined()
    expect(immich.apiKeys.get(id)).toBeUndefined()
    expect(immich.apiKeys.list()).toHaveLength(0)
    expect(secrets().frame).toBeUndefined()
    // Every session the CLI opened was closed.
    expect(immich.apiKeys.logouts).toBe(
      immich.requestsTo('/api/auth/login', 'POST').filter((r) => r.status === 201).length
    )
  })
})
