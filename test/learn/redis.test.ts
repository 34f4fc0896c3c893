import { randomBytes } from 'node:crypto'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { RedisUsageStore } from '../../src/auth/usage.js'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { client, tempDir, writeKeys } from '../policies/api-key-auth/support.js'
import { startStack, type Stack } from '../support/stack.js'
import { cli } from './cli.js'
import { replay } from './replay.js'

vi.setConfig({ testTimeout: 60_000 })

const REDIS_URL = 'redis://127.0.0.1:6379'
const prefix = `igw-test-${randomBytes(4).toString('hex')}:usage:`
const dir = tempDir('igw-learn-redis-')
const keysFile = join(dir, 'keys.yaml')
const frame = client({ name: 'frame', scopes: [], learn: {} })
let immich: FakeImmich
let redis: Redis

beforeAll(async () => {
  immich = await startFakeImmich({ answerEveryRoute: true })
  redis = new Redis(REDIS_URL)
  writeKeys(keysFile, [frame.entry])
})
afterAll(async () => {
  const keys = await redis.keys(`${prefix}*`)
  if (keys.length) await redis.del(...keys)
  redis.disconnect()
  await immich?.close()
  rmSync(dir, { recursive: true, force: true })
})

function gateway(flushSeconds: number): Promise<Stack> {
  return startStack(
    {
      redis: { url: REDIS_URL },
      policies: {
        'api-key-auth': { keysFile },
        scopes: { learn: { redisKeyPrefix: prefix, flushSeconds } },
      },
    },
    { immich }
  )
}

const calls = (path: string, n: number) => ({
  name: 'x',
  source: '',
  calls: Array.from({ length: n }, () => ({ method: 'GET' as const, path })),
})

describe('learn mode with Redis', () => {
  it('two gateways sharing Redis merge what they learn; it survives their restart', async () => {
    const [a, b] = await Promise.all([gateway(0.1), gateway(3600)])
    await replay(a.url, frame.key, calls('/api/albums', 3))
    await replay(b.url, frame.key, calls('/api/albums', 2))
    await replay(b.url, frame.key, calls('/api/people', 1))
    const store = new RedisUsageStore(redis, prefix)
    // Gateway a flushes every 100 ms while it runs.
    await vi.waitFor(async () => {
      expect((await store.read('frame')).get('album.read GET /api/albums')?.granted).toBe(3)
    })
    await Promise.all([a.close(), b.close()])
    let usage = await store.read('frame')
    expect(usage.get('album.read GET /api/albums')).toMatchObject({ granted: 5, refused: 0 })
    expect(usage.get('person.read GET /api/people')).toMatchObject({ granted: 1 })
    const firstSeen = usage.get('album.read GET /api/albums')!.first

    const c = await gateway(3600)
    await replay(c.url, frame.key, calls('/api/albums', 1))
    await c.close()
    usage = await store.read('frame')
    const albums = usage.get('album.read GET /api/albums')!
    expect(albums.granted).toBe(6)
    expect(albums.first).toBe(firstSeen)
    expect(albums.last).toBeGreaterThan(firstSeen)

    // The CLI reads the same Redis (configured as the gateway is).
    const config = join(dir, 'gateway.yaml')
    writeFileSync(config, `policies:\n  scopes:\n    learn:\n      redisKeyPrefix: '${prefix}'\n`)
    const run = await cli(['keys', 'usage', 'frame', '--json', '--file', keysFile], {
      GATEWAY_CONFIG: config,
      REDIS_URL,
    })
    expect(run.stderr).toBe('')
    const report = JSON.parse(run.stdout) as { used: { permission: string; granted: number }[] }
    expect(report.used).toEqual([
      expect.objectContaining({ permission: 'album.read', granted: 6 }),
      expect.objectContaining({ permission: 'person.read', granted: 1 }),
    ])
  })

  it('concurrent merges add up exactly (HINCRBY in one script per client)', async () => {
    const store = new RedisUsageStore(redis, prefix)
    const cell = (n: number, t: number) =>
      new Map([
        [
          'asset.view GET /api/assets/{id}/thumbnail',
          { granted: n, refused: 0, first: t, last: t },
        ],
      ])
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => store.add('merge', cell(i + 1, 1000 + i)))
    )
    const got = (await store.read('merge')).get('asset.view GET /api/assets/{id}/thumbnail')
    expect(got).toEqual({ granted: 1275, refused: 0, first: 1000, last: 1049 })
  })
})
