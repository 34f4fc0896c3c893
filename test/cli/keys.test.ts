import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { parse } from 'yaml'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { keyHash } from '../../src/auth/hash.js'
import { GATEWAY_KEY_PATTERN } from '../../src/auth/keygen.js'
import { startStack } from '../support/stack.js'
import { leakedSecrets, remember, tempDir, USER_KEY_ENV } from '../policies/api-key-auth/support.js'
import { runCli } from '../support/cli.js'

// Every CLI run is a fresh `node --import tsx` (about a second).
vi.setConfig({ testTimeout: 30_000 })

const dir = tempDir('igw-cli-')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

interface Run {
  code: number
  stdout: string
  stderr: string
  lastLine: string
}

// Nothing of the caller's environment (GATEWAY_CONFIG, GATEWAY_KEYS_FILE...) reaches the CLI.
async function cli(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const run = await runCli(args, { env })
  return { ...run, lastLine: run.stdout.trimEnd().split('\n').pop() ?? '' }
}

const file = join(dir, 'keys.yaml')

describe('immich-gateway keys', () => {
  let frameKey = ''

  it('add prints the key once, alone on the last line; the file holds only its hash', async () => {
    const run = await cli([
      'keys',
      'add',
      '--name',
      'frame',
      '--scopes',
      'photo-frame,asset.upload',
      '--upstream-key-env',
      USER_KEY_ENV,
      '--expires',
      '90d',
      '--allow-from',
      '192.168.1.0/24',
      '--file',
      file,
    ])
    expect(run.code).toBe(0)
    frameKey = remember(run.lastLine)
    expect(frameKey).toMatch(GATEWAY_KEY_PATTERN)
    expect(run.stdout.split(frameKey)).toHaveLength(2)
    const text = readFileSync(file, 'utf8')
    expect(text).not.toContain(frameKey)
    const entry = (parse(text) as { clients: Record<string, unknown>[] }).clients[0]!
    expect(entry).toMatchObject({
      name: 'frame',
      keyHash: keyHash(frameKey),
      scopes: ['photo-frame', 'asset.upload'],
      upstreamKeyEnv: USER_KEY_ENV,
      allowFrom: ['192.168.1.0/24'],
    })
    const days = (Date.parse(String(entry.expiresAt)) - Date.now()) / 86_400_000
    expect(days).toBeGreaterThan(89.9)
    expect(days).toBeLessThan(90.1)
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([])
  })

  it('GATEWAY_KEYS_FILE chooses the file; an unset upstream env var is a note on stderr', async () => {
    const run = await cli(
      [
        'keys',
        'add',
        '--name',
        'bot',
        '--scopes',
        'asset.view',
        '--upstream-key-env',
        'IGW_TEST_NOT_SET_ANYWHERE',
      ],
      { GATEWAY_KEYS_FILE: file }
    )
    expect(run.code).toBe(0)
    remember(run.lastLine)
    expect(run.stderr).toMatch(/IGW_TEST_NOT_SET_ANYWHERE is not set/)
    expect(readFileSync(file, 'utf8')).toContain('name: bot')
  })

  it('refuses an unknown scope, a duplicate name, a bad CIDR, a bad name — without touching the file', async () => {
    const before = readFileSync(file, 'utf8')
    const [unknown, dup, cidr, name, missing] = await Promise.all([
      cli(['keys', 'add', '--name', 'x', '--scopes', 'asset.veiw', '--file', file]),
      cli(['keys', 'add', '--name', 'frame', '--scopes', 'all', '--file', file]),
      cli([
        'keys',
        'add',
        '--name',
        'y',
        '--scopes',
        'all',
        '--allow-from',
        '10.0.0.0/99',
        '--file',
        file,
      ]),
      cli(['keys', 'add', '--name', 'a b', '--scopes', 'all', '--file', file]),
      cli(['keys', 'add', '--name', 'z', '--file', file]),
    ])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/--scopes: \[0\]: unknown scope "asset\.veiw"/)
    expect(dup.stderr).toMatch(/a client named "frame" already exists/)
    expect(cidr.stderr).toMatch(/--allow-from: .*bad prefix length/)
    expect(name.code).toBe(2)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/usage: immich-gateway keys add --name NAME \(--scopes/)
    expect(readFileSync(file, 'utf8')).toBe(before)
  })

  it('list shows clients without keys or hashes', async () => {
    const run = await cli(['keys', 'list', '--file', file])
    expect(run.code).toBe(0)
    expect(run.stdout).toMatch(/^NAME\s+SCOPES\s+IMMICH KEY\s+EXPIRES\s+ALLOW FROM/)
    expect(run.stdout).toMatch(/frame\s+photo-frame,asset.upload\s+env IGW_TEST_UPSTREAM_USER_KEY/)
    expect(run.stdout).toContain('bot')
    expect(run.stdout).not.toContain('igw_')
    expect(run.stdout).not.toContain('sha256')
  })

  it('rotate issues a new key and keeps the old one for the grace period; comments survive', async () => {
    writeFileSync(file, `# my own note\n${readFileSync(file, 'utf8')}`)
    const run = await cli(['keys', 'rotate', 'frame', '--grace', '7d', '--file', file])
    expect(run.code).toBe(0)
    const newKey = remember(run.lastLine)
    expect(newKey).toMatch(GATEWAY_KEY_PATTERN)
    expect(newKey).not.toBe(frameKey)
    const text = readFileSync(file, 'utf8')
    expect(text).toContain('# my own note')
    const entry = (
      parse(text) as {
        clients: {
          name: string
          keyHash: string
          previous: { keyHash: string; validUntil: string }[]
        }[]
      }
    ).clients.find((c) => c.name === 'frame')!
    expect(entry.keyHash).toBe(keyHash(newKey))
    expect(entry.previous).toHaveLength(1)
    expect(entry.previous[0]!.keyHash).toBe(keyHash(frameKey))
    expect((Date.parse(entry.previous[0]!.validUntil) - Date.now()) / 86_400_000).toBeCloseTo(7, 1)
    frameKey = newKey
  })

  it('revoke removes the client; revoking an unknown one fails', async () => {
    expect((await cli(['keys', 'revoke', 'bot', '--file', file])).code).toBe(0)
    expect(readFileSync(file, 'utf8')).not.toContain('name: bot')
    const again = await cli(['keys', 'revoke', 'bot', '--file', file])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/no client named "bot"/)
  })

  it('a running gateway honours add and revoke from the CLI without a restart', async () => {
    const live = join(dir, 'live.yaml')
    const add = await cli([
      'keys',
      'add',
      '--name',
      'live',
      '--scopes',
      'album.read',
      '--upstream-key-env',
      USER_KEY_ENV,
      '--file',
      live,
    ])
    const key = remember(add.lastLine)
    const stack = await startStack({ policies: { 'api-key-auth': { keysFile: live } } })
    try {
      const status = async () => {
        const res = await request(`${stack.url}/api/albums`, { headers: { 'x-api-key': key } })
        await res.body.dump()
        return res.statusCode
      }
      expect(await status()).toBe(200)
      expect((await cli(['keys', 'revoke', 'live', '--file', live])).code).toBe(0)
      const started = Date.now()
      let last = 200
      while (last !== 401 && Date.now() - started < 3000) {
        last = await status()
        if (last !== 401) await new Promise((r) => setTimeout(r, 50))
      }
      expect(last).toBe(401)
      expect(Date.now() - started).toBeLessThan(2000)
    } finally {
      await stack.close()
    }
  })
})

describe('immich-gateway routes explain', () => {
  it('explains a route and whether a client may call it', async () => {
    const allowed = await cli([
      'routes',
      'explain',
      'GET',
      '/api/assets/abc/thumbnail',
      '--client',
      'frame',
      '--file',
      file,
    ])
    expect(allowed.code).toBe(0)
    expect(allowed.stdout).toMatch(/route\s+GET \/api\/assets\/\{id\}\/thumbnail \(viewAsset\)/)
    expect(allowed.stdout).toMatch(/permission\s+asset\.view/)
    expect(allowed.stdout).toMatch(/shared-link\s+yes/)
    expect(allowed.stdout).toMatch(
      /client frame: ALLOWED — asset\.view granted by preset photo-frame/
    )
    expect(allowed.stdout).toMatch(/note: only from 192\.168\.1\.0\/24/)

    const denied = await cli([
      'routes',
      'explain',
      'get',
      '/API/Admin/Users/',
      '--client',
      'frame',
      '--file',
      file,
    ])
    expect(denied.stdout).toMatch(/admin-only\s+yes/)
    expect(denied.stdout).toMatch(
      /client frame: DENIED \(403 Missing required permission: adminUser\.read\)/
    )

    const upload = await cli([
      'routes',
      'explain',
      'POST',
      '/api/assets',
      '--client',
      'frame',
      '--file',
      file,
    ])
    expect(upload.stdout).toMatch(/ALLOWED — asset\.upload granted by scope asset\.upload/)
  })

  it('paths refused before routing, web paths, unknown routes, public routes', async () => {
    const [dots, matrix, web, unknown, ping, ws] = await Promise.all([
      cli(['routes', 'explain', 'GET', '/api/albums/%2e%2e/admin/users']),
      cli(['routes', 'explain', 'GET', '/api/admin;x=1/users']),
      cli(['routes', 'explain', 'GET', '/photos/1']),
      cli(['routes', 'explain', 'GET', '/api/nope']),
      cli(['routes', 'explain', 'GET', '/api/server/ping']),
      cli(['routes', 'explain', 'GET', '/api/socket.io/', '--client', 'frame', '--file', file]),
    ])
    expect(dots.stdout).toMatch(/refused before routing: 400/)
    expect(matrix.stdout).toMatch(/refused before routing: 400/)
    expect(web.stdout).toMatch(/web UI path/)
    expect(unknown.stdout).toMatch(/no Immich route/)
    expect(ping.stdout).toMatch(/public\s+yes[\s\S]*passes \(public route\)/)
    expect(ws.stdout).toMatch(/DENIED \(403 Missing required permission: all\)/)
  })
})

describe('secrets', () => {
  it('no key made in this file appears in any captured log line', () => {
    expect(leakedSecrets()).toEqual([])
  })
})
