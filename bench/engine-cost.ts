// The gateway's own JavaScript per request, in process: the real Node server's request listener driven
// with synthetic requests and a response socket that discards what it is given, so neither the
// kernel nor a load generator is measured, only the engine, the policies and the answer writer. A
// cache hit (gateway key + scopes + in-memory limiter + thumbnail cache) and a refused request (401),
// each N times after a warm-up. Run it for this tree and for another checkout to compare engines:
//
//   taskset -c 1 npx tsx bench/engine-cost.ts [--tree .exp/alt] [--requests 20000] [--rounds 5]
import { createHash, randomBytes } from 'node:crypto'
import type { Server } from 'node:http'
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { pathToFileURL } from 'node:url'
import { parseArgs } from 'node:util'
import pino from 'pino'
import { Registry } from 'prom-client'
import { startFakeImmich } from '../test/fake-immich/server.js'
import { syntheticGet } from './lib/in-process.js'

const { values: args } = parseArgs({
  options: {
    tree: { type: 'string', default: '.' },
    requests: { type: 'string', default: '20000' },
    rounds: { type: 'string', default: '5' },
    only: { type: 'string' },
  },
})
const tree = resolve(args.tree!)
// A source tree (run through tsx) or a build (`dist/`, plain JavaScript: profiles show real lines).
const ext = existsSync(join(tree, 'src/gateway.ts')) ? 'ts' : 'js'
const N = Number(args.requests)

const gatewayKey = `igw_${randomBytes(32).toString('base64url')}`
const keysFile = join(mkdtempSync(join(tmpdir(), 'igw-engine-cost-')), 'keys.yaml')
writeFileSync(
  keysFile,
  `clients:\n  - name: bench\n    keyHash: "sha256:${createHash('sha256').update(gatewayKey).digest('hex')}"\n` +
    `    scopes: [asset.view, asset.read, server.about]\n    upstreamKeyEnv: BENCH_IMMICH_KEY\n`
)
process.env.BENCH_IMMICH_KEY = 'fake-admin-key'
process.env.GATEWAY_KEYS_FILE = keysFile

const { configSchema } = (await import(
  pathToFileURL(join(tree, `src/config/schema.${ext}`)).href
)) as {
  configSchema: { parse(v: unknown): unknown }
}
const { startGateway } = (await import(pathToFileURL(join(tree, `src/gateway.${ext}`)).href)) as {
  startGateway(
    config: unknown,
    o: { logger: unknown; registry: Registry }
  ): Promise<{ server: Server; close(): Promise<void> }>
}

const immich = await startFakeImmich({ thumbnailSize: 40 * 1024 })
const unlimited = { points: 1_000_000_000, durationSeconds: 60 }
const config = configSchema.parse({
  server: { host: '127.0.0.1', port: 0 },
  upstream: { url: immich.url },
  logging: { level: 'warn' },
  policies: {
    'legacy-routes': false,
    'jwt-auth': false,
    'native-auth': false,
    'login-guard': false,
    'api-key-auth': {},
    scopes: {},
    'rate-limit': { classes: { thumbnails: unlimited, api: unlimited } },
    'thumbnail-cache': {},
  },
})
// Trees whose environment is resolved in config loading (GATEWAY_KEYS_FILE, the Immich key's env var).
const load = (await import(pathToFileURL(join(tree, `src/config/load.${ext}`)).href)) as {
  resolveEnvironment?: (config: unknown, env: NodeJS.ProcessEnv) => unknown
}
const gateway = await startGateway(load.resolveEnvironment?.(config, process.env) ?? config, {
  logger: pino({ level: 'warn' }),
  registry: new Registry(),
})

const THUMB = '/api/assets/8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f/thumbnail?size=thumbnail'

function once(path: string, key: string): Promise<number> {
  return syntheticGet((req, res) => gateway.server.emit('request', req, res), path, {
    host: 'gateway',
    'x-api-key': key,
    accept: 'image/webp,*/*',
  })
}

async function cost(path: string, key: string, want: number): Promise<number> {
  for (let i = 0; i < 2000; i++) {
    const status = await once(path, key)
    if (i > 10 && status !== want) throw new Error(`${path}: status ${status}, expected ${want}`)
  }
  const before = process.cpuUsage()
  for (let i = 0; i < N; i++) await once(path, key)
  const used = process.cpuUsage(before)
  return (used.user + used.system) / N
}

const rounds = Number(args.rounds)
const hit: number[] = []
const refused: number[] = []
for (let r = 0; r < rounds; r++) {
  if (args.only !== 'refused') hit.push(await cost(THUMB, gatewayKey, 200))
  if (args.only !== 'hit') refused.push(await cost(THUMB, 'igw_not-a-key', 401))
}
const fmt = (xs: number[]) =>
  xs.length === 0
    ? '-'
    : `median ${[...xs].sort((a, b) => a - b)[xs.length >> 1]!.toFixed(1)} µs (${xs.map((x) => x.toFixed(1)).join(', ')})`
process.stdout.write(`${tree}\n  cache hit: ${fmt(hit)}\n  401:       ${fmt(refused)}\n`)
await gateway.close()
await immich.close()
