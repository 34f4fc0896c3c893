/** `albums:` in the keys file and `keys add --albums`: parsed, validated, hot-reloaded. */
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { parseKeysText } from '../../../src/auth/keys-file.js'
import type { Stack } from '../../support/stack.js'
import { client, remember, tempDir, USER_KEY_ENV, writeKeys } from '../api-key-auth/support.js'
import { waitFor } from '../rate-limit/support.js'
import { call, gateway, makeWorld, type World } from './support.js'
import { runCli } from '../../support/cli.js'

vi.setConfig({ testTimeout: 30_000 })

const cli = (args: string[]) =>
  runCli(args, { env: { ...process.env, [USER_KEY_ENV]: 'fake-user-key' } })

const ALBUM = '0b9e8c3e-5a1d-4c2b-9f3e-7d6a5b4c3d2e'

describe('keys file `albums`', () => {
  it('takes album ids; anything else is an error naming the field', () => {
    const ok = parseKeysText(
      `clients:\n  - name: frame\n    keyHash: "sha256:${'a'.repeat(64)}"\n    scopes: [photo-frame]\n    upstreamKeyEnv: X\n    albums: [${ALBUM}]\n`,
      'keys.yaml'
    )
    expect(ok.clients[0]!.albums).toEqual([ALBUM])
    for (const bad of ['[hallway]', '[]'])
      expect(() =>
        parseKeysText(
          `clients:\n  - name: frame\n    keyHash: "sha256:${'a'.repeat(64)}"\n    scopes: [photo-frame]\n    upstreamKeyEnv: X\n    albums: ${bad}\n`,
          'keys.yaml'
        )
      ).toThrow(/clients\[0\] \(frame\)\.albums/)
  })

  it('keys add --albums writes them; a bad id leaves the file untouched', async () => {
    const file = join(tempDir('igw-albums-cli-'), 'keys.yaml')
    const bad = await cli([
      'keys',
      'add',
      '--name',
      'x',
      '--scopes',
      'photo-frame',
      '--albums',
      'hallway',
      '--file',
      file,
    ])
    expect(bad.code).not.toBe(0)
    expect(existsSync(file)).toBe(false)
    const run = await cli([
      'keys',
      'add',
      '--name',
      'hallway-frame',
      '--scopes',
      'photo-frame',
      '--upstream-key-env',
      USER_KEY_ENV,
      '--albums',
      `${ALBUM}, ${ALBUM.replace('0b9e', '1c9e')}`,
      '--file',
      file,
    ])
    expect(run.code, run.stderr).toBe(0)
    remember(run.stdout.trimEnd().split('\n').pop()!)
    expect(run.stdout).toContain(`only albums ${ALBUM}`)
    const text = readFileSync(file, 'utf8')
    expect(text).toContain(`albums: [ ${ALBUM}`)
    const written = parse(text) as { clients: { albums: string[] }[] }
    expect(written.clients[0]!.albums).toEqual([ALBUM, ALBUM.replace('0b9e', '1c9e')])
  })
})

describe('binding a running key', () => {
  let world: World
  let stack: Stack
  beforeAll(async () => {
    world = await makeWorld()
    stack = await gateway(world)
  })
  afterAll(async () => {
    await stack?.close()
    await world?.immich.close()
  })

  it('adding albums to a key in the file binds it without a restart', async () => {
    const spec = client({ name: 'kiosk', scopes: ['all'] })
    writeKeys(world.keysFile, [spec.entry])
    const outside = `/api/assets/${world.outside[0]}`
    await waitFor(
      async () => (await call(stack.url, spec.key, 'GET', outside)).status === 200,
      5000,
      'the new key'
    )
    writeKeys(world.keysFile, [{ ...spec.entry, albums: [world.hallway.id] }])
    await waitFor(
      async () => (await call(stack.url, spec.key, 'GET', outside)).status === 404,
      5000,
      'the binding'
    )
    const inside = `/api/assets/${[...world.hallway.assetIds][0]}`
    expect((await call(stack.url, spec.key, 'GET', inside)).status).toBe(200)
  })
})
