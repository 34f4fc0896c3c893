/**
 * The way in, as a new user takes it: the gateway started by the `immich-gateway` command, then
 * `keys add --upstream-key-stdin` against it while it runs — no variable exported, no restart.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { freePort } from '../support/http.js'
import { auditLog } from '../support/stack.js'
import { remember, tempDir } from '../policies/api-key-auth/support.js'
import { runCli } from '../support/cli.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const BIN = join(ROOT, 'bin/immich-gateway.js')

/** PATH only: nothing of the caller's environment, no Immich key in any variable. */
const bare = () => ({ PATH: process.env.PATH ?? '' })

const cli = (args: string[], input?: string) =>
  runCli(args, { installed: true, env: bare(), input })

describe('from `npm install` to a working client key, against a running gateway', () => {
  const dir = tempDir('igw-onboarding-')
  const keysFile = join(dir, 'keys.yaml')
  let immich: FakeImmich
  let gateway: ChildProcess
  let url = ''
  let output = ''
  let frameKey = ''

  beforeAll(async () => {
    immich = await startFakeImmich()
    const port = await freePort()
    gateway = spawn(process.execPath, [BIN, 'serve', '--keys', keysFile], {
      cwd: ROOT,
      env: { ...bare(), IMMICH_URL: immich.url, PORT: String(port), HOST: '127.0.0.1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    gateway.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    gateway.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    url = `http://127.0.0.1:${port}`
    const started = Date.now()
    while (
      (await request(`${url}/healthz`).then(
        (r) => r.statusCode,
        () => 0
      )) !== 200
    ) {
      if (Date.now() - started > 20_000) throw new Error(`the gateway did not start:\n${output}`)
      await new Promise((r) => setTimeout(r, 100))
    }
  })

  afterAll(async () => {
    if (gateway.exitCode === null) {
      gateway.kill('SIGTERM')
      await new Promise((r) => gateway.once('exit', r))
    }
    for (const line of output.split('\n')) if (line) auditLog(line)
    await immich.close()
    rmSync(dir, { recursive: true, force: true })
  })

  const get = async (key: string, path = '/api/assets/m1/thumbnail') => {
    const res = await request(`${url}${path}`, { headers: { 'x-api-key': key } })
    return { status: res.statusCode, body: await res.body.text() }
  }

  it('keys add --upstream-key-stdin: the key works within 2 s; the Immich key is only in the 0600 secrets file', async () => {
    const immichKey = remember('fake-user-key')
    const add = await cli(
      [
        'keys',
        'add',
        '--name',
        'frame',
        '--scopes',
        'photo-frame',
        '--upstream-key-stdin',
        '--file',
        keysFile,
      ],
      `${immichKey}\n`
    )
    expect(add.stderr).toBe('')
    expect(add.code).toBe(0)
    const added = Date.now()
    const key = (frameKey = remember(add.stdout.trimEnd().split('\n').pop()!))
    let last = 0
    while (Date.now() - added < 3000) {
      last = (await get(key)).status
      if (last === 200) break
      await new Promise((r) => setTimeout(r, 50))
    }
    expect(last).toBe(200)
    expect(Date.now() - added).toBeLessThan(2000)
    expect(immich.requests.at(-1)?.headers['x-api-key']).toBe(immichKey)

    const secretsFile = join(dir, 'keys.upstream-secrets.json')
    expect(readFileSync(keysFile, 'utf8')).not.toContain(immichKey)
    expect(readFileSync(secretsFile, 'utf8')).toContain(immichKey)
    expect(statSync(secretsFile).mode & 0o777).toBe(0o600)
    expect(statSync(keysFile).mode & 0o777).toBe(0o600)
    expect(add.stdout).not.toContain(immichKey)
    expect(output).not.toContain(immichKey)
  })

  it('a client whose Immich key is missing gets a 503 naming it; the other client keeps working', async () => {
    const add = await cli([
      'keys',
      'add',
      '--name',
      'bot',
      '--scopes',
      'asset.view',
      '--upstream-key-env',
      'IGW_TEST_NEVER_SET',
      '--file',
      keysFile,
    ])
    expect(add.code).toBe(0)
    expect(add.stderr).toMatch(/IGW_TEST_NEVER_SET is not set in this shell/)
    const bot = remember(add.stdout.trimEnd().split('\n').pop()!)
    await expect.poll(async () => (await get(bot)).status, { timeout: 3000 }).toBe(503)
    const refused = JSON.parse((await get(bot)).body) as Record<string, unknown>
    expect(refused).toMatchObject({
      statusCode: 503,
      error: 'Service Unavailable',
      message:
        'Gateway client "bot" is disabled: environment variable IGW_TEST_NEVER_SET is not set',
    })
    await expect
      .poll(() => output.split('\n').find((l) => l.includes('client disabled')), { timeout: 3000 })
      .toMatch(/"client":"bot".*"missing":"environment variable IGW_TEST_NEVER_SET is not set"/)
    expect((await get(frameKey)).status).toBe(200)

    // Setting its Immich key through the CLI enables it, still without a restart.
    const set = await cli(
      ['keys', 'set-upstream', 'bot', '--upstream-key-stdin', '--file', keysFile],
      'fake-user-key'
    )
    expect(set.code).toBe(0)
    await expect.poll(async () => (await get(bot)).status, { timeout: 3000 }).toBe(200)
  })

  it('SIGTERM: the gateway (node itself, no npm in between) drains and exits 0', async () => {
    gateway.kill('SIGTERM')
    const code = await new Promise((r) => gateway.once('exit', (c) => r(c)))
    expect(code).toBe(0)
  })
})
