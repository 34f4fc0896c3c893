// Load benchmark: the fake Immich (its own process), and in front of it nginx proxy_pass, a bare
// @fastify/http-proxy and the gateway (`node dist/src/main.js`), each on its own CPU; wrk or
// autocannon on the other CPU. Prints req/s, p50, p99 and the ratios the issues ask for, and writes
// the raw numbers to bench/results/<timestamp>.json.
//
//   npx tsx bench/run.ts [--duration 10] [--warmup 5] [--connections 50] [--runs 3] [--only baseline,cache]
//                        [--tool wrk|autocannon] [--upstream fake|nginx] [--no-build] [--profile] [--list]
//                        [--alt-dist DIR]   (A/B: a second gateway build, e.g. a candidate fix, as `alt-*`)
//                        [--dist DIR]       (run every gateway variant from this build instead of dist/)
import { spawnSync } from 'node:child_process'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { parseArgs } from 'node:util'
import { runLoad, type LoadResult, type Tool } from './lib/load.js'
import {
  cpuTimes,
  freePort,
  onPath,
  pin,
  processTree,
  start,
  treeCpuSeconds,
  waitForHttp,
  type Proc,
} from './lib/procs.js'
import { gatewayVariants, type GatewayVariant, type VariantOrSkip } from './scenarios.js'
import { BENCH_ASSET_ID } from './album.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const RESULTS = join(ROOT, 'bench', 'results')

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    connections: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
    warmup: { type: 'string', default: '5' },
    only: { type: 'string' },
    tool: { type: 'string' },
    upstream: { type: 'string', default: 'fake' },
    'no-build': { type: 'boolean', default: false },
    profile: { type: 'boolean', default: false },
    paired: { type: 'boolean', default: false },
    list: { type: 'boolean', default: false },
    'alt-dist': { type: 'string' },
    dist: { type: 'string' },
  },
})
const DURATION = Number(args.duration)
const CONNECTIONS = Number(args.connections)
const RUNS = Number(args.runs)
const WARMUP = Number(args.warmup)
const TOOL: Tool = (args.tool as Tool | undefined) ?? (onPath('wrk') ? 'wrk' : 'autocannon')
const UPSTREAM_MODE = args.upstream === 'nginx' ? 'nginx' : 'fake'

// Two cores: the server under test gets CPU 1 alone; the upstream and the load generator share CPU 0.
const TWO_CPUS = cpus().length >= 2
const SERVER_CPU = TWO_CPUS ? '1' : undefined
const SIDE_CPU = TWO_CPUS ? '0' : undefined

export const ASSET_ID = BENCH_ASSET_ID
const ADMIN_KEY = 'fake-admin-key'

// ---------------------------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------------------------

type RequestKind = 'thumb' | 'json' | 'thumb-legacy'

const PATHS: Record<RequestKind, string> = {
  thumb: `/api/assets/${ASSET_ID}/thumbnail?size=thumbnail`,
  json: '/api/server/ping',
  'thumb-legacy': `/api/asset/thumbnail/${ASSET_ID}?format=WEBP`,
}

interface Scenario {
  name: string
  group: string
  /** `direct`, `nginx`, `nginx-cache`, `fastify`, or a gateway variant name. */
  target: string
  request: RequestKind
  /** Client credential: the native Immich key, or the gateway key of the variant. */
  auth?: 'native' | 'gateway-key'
  /** Every request a distinct cache key (`c=` cache-buster). */
  unique?: boolean
  /** What the X-Cache header of a checked response must say. */
  expectCache?: string
  what: string
}

const SCENARIOS: Scenario[] = [
  {
    name: 'direct-thumb',
    group: 'baseline',
    target: 'direct',
    request: 'thumb',
    what: 'client → fake Immich, 40 KiB thumbnail',
  },
  {
    name: 'nginx-thumb',
    group: 'baseline',
    target: 'nginx',
    request: 'thumb',
    what: 'nginx proxy_pass (1 worker, keepalive upstream)',
  },
  {
    name: 'fastify-thumb',
    group: 'baseline',
    target: 'fastify',
    request: 'thumb',
    what: 'bare @fastify/http-proxy (1 process)',
  },
  {
    name: 'gateway-thumb',
    group: 'baseline',
    target: 'gateway',
    request: 'thumb',
    what: 'gateway, no policies, LOG_LEVEL=warn',
  },
  {
    name: 'metrics-off-thumb',
    group: 'metrics',
    target: 'gateway-metrics-off',
    request: 'thumb',
    what: 'gateway with metrics switched off',
  },
  {
    name: 'direct-json',
    group: 'baseline',
    target: 'direct',
    request: 'json',
    what: 'client → fake Immich, /api/server/ping',
  },
  {
    name: 'nginx-json',
    group: 'baseline',
    target: 'nginx',
    request: 'json',
    what: 'nginx proxy_pass',
  },
  {
    name: 'fastify-json',
    group: 'baseline',
    target: 'fastify',
    request: 'json',
    what: 'bare @fastify/http-proxy',
  },
  {
    name: 'gateway-json',
    group: 'baseline',
    target: 'gateway',
    request: 'json',
    what: 'gateway, no policies, LOG_LEVEL=warn',
  },
  {
    name: 'gateway-info-thumb',
    group: 'logging',
    target: 'gateway-info',
    request: 'thumb',
    what: 'gateway, LOG_LEVEL=info (access line per request → /dev/null)',
  },
  {
    name: 'gateway-info-json',
    group: 'logging',
    target: 'gateway-info',
    request: 'json',
    what: 'gateway, LOG_LEVEL=info',
  },
  {
    name: 'auth-mem-thumb',
    group: 'limiter',
    target: 'gateway-auth-mem',
    request: 'thumb',
    auth: 'gateway-key',
    what: 'gateway key + scopes + in-memory limiter',
  },
  {
    name: 'auth-redis-thumb',
    group: 'limiter',
    target: 'gateway-auth-redis',
    request: 'thumb',
    auth: 'gateway-key',
    what: 'gateway key + scopes + Redis limiter',
  },
  {
    name: 'nginx-cache-hit',
    group: 'cache',
    target: 'nginx-cache',
    request: 'thumb',
    expectCache: 'HIT',
    what: 'nginx proxy_cache hit, same payload',
  },
  {
    name: 'cache-hit',
    group: 'cache',
    target: 'gateway-cache',
    request: 'thumb',
    auth: 'gateway-key',
    expectCache: 'HIT',
    what: 'gateway cache HIT (key + scopes + limiter + cache)',
  },
  {
    name: 'cache-hit-bound',
    group: 'cache',
    target: 'gateway-cache-bound',
    request: 'thumb',
    auth: 'gateway-key',
    expectCache: 'HIT',
    what: 'gateway cache HIT with an album-bound key (membership check before the cache)',
  },
  {
    name: 'cache-hit-albums',
    group: 'cache',
    target: 'gateway-cache-albums',
    request: 'thumb',
    auth: 'gateway-key',
    expectCache: 'HIT',
    what: 'gateway cache HIT, album-binding on, unbound key (as cache-hit-bound otherwise)',
  },
  {
    name: 'cache-miss',
    group: 'cache',
    target: 'gateway-cache',
    request: 'thumb',
    auth: 'gateway-key',
    unique: true,
    expectCache: 'MISS',
    what: 'gateway cache MISS every request (c= cache-buster)',
  },
  {
    name: 'uncached-unique',
    group: 'cache',
    target: 'gateway-auth-mem',
    request: 'thumb',
    auth: 'gateway-key',
    unique: true,
    what: 'same requests as cache-miss, cache policy off',
  },
  {
    name: 'node-floor-hit',
    group: 'floor',
    target: 'node-static',
    request: 'thumb',
    what: 'plain node:http answering the 40 KiB from memory (best case for a Node cache hit)',
  },
  {
    name: 'node-floor-thumb',
    group: 'floor',
    target: 'node-proxy',
    request: 'thumb',
    what: 'plain node:http + undici dispatch pass-through (best case for a Node proxy)',
  },
  {
    name: 'node-floor-json',
    group: 'floor',
    target: 'node-proxy',
    request: 'json',
    what: 'plain node:http + undici dispatch pass-through',
  },
  {
    name: 'legacy-off-thumb',
    group: 'legacy',
    target: 'gateway',
    request: 'thumb',
    what: 'current path, legacy translation off (= gateway-thumb)',
  },
  {
    name: 'legacy-on-thumb',
    group: 'legacy',
    target: 'gateway-legacy',
    request: 'thumb',
    what: 'current path, legacy translation on',
  },
  {
    name: 'legacy-path-thumb',
    group: 'legacy',
    target: 'gateway-legacy',
    request: 'thumb-legacy',
    what: 'old path /api/asset/thumbnail/{id}, translated',
  },
  {
    name: 'alt-thumb',
    group: 'alt',
    target: 'gateway-alt',
    request: 'thumb',
    what: 'gateway from --alt-dist, no policies',
  },
  {
    name: 'alt-json',
    group: 'alt',
    target: 'gateway-alt',
    request: 'json',
    what: 'gateway from --alt-dist, no policies',
  },
  {
    name: 'alt-auth-mem-thumb',
    group: 'alt',
    target: 'gateway-auth-mem-alt',
    request: 'thumb',
    auth: 'gateway-key',
    what: 'gateway from --alt-dist, key + scopes + in-memory limiter (as auth-mem-thumb)',
  },
  {
    name: 'alt-cache-hit',
    group: 'alt',
    target: 'gateway-cache-alt',
    request: 'thumb',
    auth: 'gateway-key',
    expectCache: 'HIT',
    what: 'gateway from --alt-dist, cache HIT (as cache-hit)',
  },
]

interface Ratio {
  name: string
  a: string
  b: string
  /** a/b must be ≥ min (or ≤ max). */
  min?: number
  max?: number
  issue: string
}

const RATIOS: Ratio[] = [
  { name: 'thumb gateway/nginx', a: 'gateway-thumb', b: 'nginx-thumb', min: 0.6, issue: '#2' },
  { name: 'thumb gateway/fastify', a: 'gateway-thumb', b: 'fastify-thumb', min: 1.0, issue: '#2' },
  { name: 'thumb gateway/direct', a: 'gateway-thumb', b: 'direct-thumb', issue: '#2' },
  { name: 'thumb nginx/direct', a: 'nginx-thumb', b: 'direct-thumb', issue: '#2' },
  { name: 'json gateway/nginx', a: 'gateway-json', b: 'nginx-json', issue: '#2' },
  { name: 'json gateway/fastify', a: 'gateway-json', b: 'fastify-json', issue: '#2' },
  { name: 'json gateway/direct', a: 'gateway-json', b: 'direct-json', issue: '#2' },
  { name: 'thumb log info/warn', a: 'gateway-info-thumb', b: 'gateway-thumb', issue: '#2' },
  { name: 'json log info/warn', a: 'gateway-info-json', b: 'gateway-json', issue: '#2' },
  {
    name: 'limiter redis/memory',
    a: 'auth-redis-thumb',
    b: 'auth-mem-thumb',
    min: 0.85,
    issue: '#4',
  },
  { name: 'thumb gateway/node floor', a: 'gateway-thumb', b: 'node-floor-thumb', issue: 'info' },
  { name: 'json gateway/node floor', a: 'gateway-json', b: 'node-floor-json', issue: 'info' },
  {
    name: 'node floor hit/nginx proxy_cache hit',
    a: 'node-floor-hit',
    b: 'nginx-cache-hit',
    issue: 'info',
  },
  { name: 'cache hit/node floor hit', a: 'cache-hit', b: 'node-floor-hit', issue: 'info' },
  {
    name: 'full policy chain/nginx proxy_pass',
    a: 'auth-mem-thumb',
    b: 'nginx-thumb',
    min: 0.6,
    issue: '#12',
  },
  {
    name: 'cache hit/nginx proxy_cache hit (#12)',
    a: 'cache-hit',
    b: 'nginx-cache-hit',
    min: 0.4,
    issue: '#12',
  },
  {
    name: 'engine this/alt: full chain',
    a: 'auth-mem-thumb',
    b: 'alt-auth-mem-thumb',
    issue: '#12',
  },
  { name: 'engine this/alt: cache hit', a: 'cache-hit', b: 'alt-cache-hit', issue: '#12' },
  {
    name: 'cache hit album-bound/unbound key',
    a: 'cache-hit-bound',
    b: 'cache-hit-albums',
    min: 0.9,
    issue: '#17',
  },
  {
    name: 'cache hit album-binding on/off',
    a: 'cache-hit-albums',
    b: 'cache-hit',
    issue: 'info',
  },
  {
    name: 'cache hit/nginx proxy_cache hit',
    a: 'cache-hit',
    b: 'nginx-cache-hit',
    min: 0.6,
    issue: '#5',
  },
  {
    name: 'cache hit/uncached pass-through',
    a: 'cache-hit',
    b: 'auth-mem-thumb',
    min: 3,
    issue: '#5',
  },
  {
    name: 'cache miss/uncached (same URLs)',
    a: 'cache-miss',
    b: 'uncached-unique',
    min: 0.95,
    issue: '#5',
  },
  {
    name: 'legacy on/off, current path',
    a: 'legacy-on-thumb',
    b: 'legacy-off-thumb',
    min: 0.97,
    issue: '#6',
  },
  { name: 'legacy path/current path', a: 'legacy-path-thumb', b: 'legacy-on-thumb', issue: '#6' },
  { name: 'thumb alt/gateway', a: 'alt-thumb', b: 'gateway-thumb', issue: 'A/B' },
  { name: 'json alt/gateway', a: 'alt-json', b: 'gateway-json', issue: 'A/B' },
  { name: 'cache hit alt/gateway', a: 'alt-cache-hit', b: 'cache-hit', issue: 'A/B' },
  { name: 'metrics on/off', a: 'gateway-thumb', b: 'metrics-off-thumb', min: 0.95, issue: '#7' },
]

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

interface Target {
  name: string
  url: string
  /** Processes whose CPU is the server's (nginx: master + worker). */
  pids(): number[]
  /** Headers a scenario with `auth: 'gateway-key'` sends. */
  gatewayKey?: string
  stop(): Promise<void>
}

function render(template: string, vars: Record<string, string | number>): string {
  return template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => {
    if (!(k in vars)) throw new Error(`template variable ${k} missing`)
    return String(vars[k])
  })
}

async function startNginx(
  name: string,
  templateFile: string,
  vars: Record<string, string | number>,
  cpus: string | undefined,
  probe: string
): Promise<{ proc: Proc; prefix: string }> {
  const prefix = mkdtempSync(join(tmpdir(), `igw-${name}-`))
  const conf = join(prefix, 'nginx.conf')
  writeFileSync(
    conf,
    render(readFileSync(join(ROOT, 'bench', 'nginx', templateFile), 'utf8'), {
      PREFIX: prefix,
      ...vars,
    })
  )
  const proc = start(name, 'nginx', ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')], {
    cpus,
  })
  await waitForHttp(proc, probe)
  return { proc, prefix }
}

async function startUpstream(): Promise<Target & { proc: Proc }> {
  const port = await freePort()
  if (UPSTREAM_MODE === 'nginx') {
    const root = mkdtempSync(join(tmpdir(), 'igw-static-root-'))
    // The same bytes the fake Immich serves for this thumbnail.
    const { expectedThumbnail } = await import('../test/fake-immich/bytes.js')
    writeFileSync(join(root, 'thumbnail.webp'), expectedThumbnail(ASSET_ID, 'thumbnail', 'u-admin'))
    const { proc } = await startNginx(
      'static-upstream',
      'static-upstream.conf.tmpl',
      { PORT: port, ROOT: root },
      SIDE_CPU,
      `http://127.0.0.1:${port}/api/server/ping`
    )
    return {
      name: 'direct',
      url: `http://127.0.0.1:${port}`,
      proc,
      pids: () => processTree(proc.pid),
      stop: () => proc.stop(),
    }
  }
  const proc = start(
    'fake-immich',
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'fake-upstream.ts')],
    {
      cpus: SIDE_CPU,
      env: { PORT: String(port) },
    }
  )
  const url = `http://127.0.0.1:${port}`
  await waitForHttp(proc, `${url}/api/server/ping`)
  return { name: 'direct', url, proc, pids: () => [proc.pid], stop: () => proc.stop() }
}

async function startGatewayProcess(
  variant: GatewayVariant,
  upstreamUrl: string,
  dir: string
): Promise<Target> {
  const port = await freePort()
  const configFile = join(dir, `${variant.name}.json`)
  writeFileSync(configFile, JSON.stringify(variant.config, null, 2))
  const nodeArgs = args.profile
    ? [
        '--cpu-prof',
        `--cpu-prof-dir=${join(RESULTS, 'profiles')}`,
        `--cpu-prof-name=${variant.name}-${Date.now()}.cpuprofile`,
      ]
    : []
  const dist = variant.name.endsWith('-alt') ? args['alt-dist']! : (args.dist ?? join(ROOT, 'dist'))
  const proc = start(variant.name, process.execPath, [...nodeArgs, join(dist, 'src', 'main.js')], {
    cpus: SERVER_CPU,
    // The access log goes to /dev/null: what is measured is the gateway's cost, not a terminal's.
    stdout: 'ignore',
    env: {
      IMMICH_URL: upstreamUrl,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: variant.logLevel,
      GATEWAY_CONFIG: configFile,
      REDIS_URL: variant.redisUrl,
      METRICS_PORT: undefined,
      ...variant.env,
    },
  })
  const url = `http://127.0.0.1:${port}`
  await waitForHttp(proc, `${url}/healthz`)
  return {
    name: variant.name,
    url,
    pids: () => [proc.pid],
    gatewayKey: variant.gatewayKey,
    stop: () => proc.stop(),
  }
}

async function startNodeFloor(mode: 'static' | 'proxy', upstreamUrl: string): Promise<Target> {
  const port = await freePort()
  const proc = start(
    `node-${mode}`,
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'node-floor.ts')],
    {
      cpus: SERVER_CPU,
      env: { UPSTREAM: upstreamUrl, PORT: String(port), MODE: mode },
    }
  )
  const url = `http://127.0.0.1:${port}`
  await waitForHttp(proc, `${url}/api/server/ping`)
  return { name: `node-${mode}`, url, pids: () => [proc.pid], stop: () => proc.stop() }
}

async function startFastify(upstreamUrl: string): Promise<Target> {
  const port = await freePort()
  const proc = start(
    'fastify',
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'fastify-proxy.ts')],
    {
      cpus: SERVER_CPU,
      env: { UPSTREAM: upstreamUrl, PORT: String(port) },
    }
  )
  const url = `http://127.0.0.1:${port}`
  await waitForHttp(proc, `${url}/api/server/ping`)
  return { name: 'fastify', url, pids: () => [proc.pid], stop: () => proc.stop() }
}

// ---------------------------------------------------------------------------------------------
// Measuring
// ---------------------------------------------------------------------------------------------

interface Measurement extends LoadResult {
  scenario: string
  run: number
  /** --paired: the ratio this measurement was taken for, side by side with its counterpart. */
  pair?: string
  /** Share of one core used by the server under test / the upstream, over the run. */
  serverCpu: number
  upstreamCpu: number
  loadCpu: number
  /** Per CPU: share of time charged to processes, and to irq/softirq (loopback networking). */
  cpuBusy: number[]
  cpuSoft: number[]
  /**
   * Per CPU: share of a core used by processes that are not part of the benchmark (other people's
   * builds and tests on a shared machine). Above NOISE_LIMIT the measurement is repeated.
   */
  foreign: number[]
  attempts: number
  /** Server CPU microseconds per request: the proxy's own cost, independent of who is the bottleneck. */
  serverUsPerRequest: number
}

const NOISE_LIMIT = Number(process.env.BENCH_NOISE_LIMIT ?? 0.05)
const MAX_ATTEMPTS = Number(process.env.BENCH_ATTEMPTS ?? 6)

function headersFor(s: Scenario, target: Target): Record<string, string> {
  if (s.auth === 'gateway-key') return { 'x-api-key': target.gatewayKey ?? 'missing-gateway-key' }
  return s.request === 'json' ? {} : { 'x-api-key': ADMIN_KEY }
}

/** One request by hand: the scenario must answer what it claims (200, 40 KiB, the cache state). */
async function check(s: Scenario, target: Target): Promise<void> {
  const headers = headersFor(s, target)
  const url =
    target.url +
    PATHS[s.request] +
    (s.unique ? `${PATHS[s.request].includes('?') ? '&' : '?'}c=check-${Date.now()}` : '')
  let res: Response | undefined
  let body = new ArrayBuffer(0)
  // A cache may admit an entry only on a repeat (or store it after answering): ask a few times.
  for (let i = 0; i < 5; i++) {
    res = await fetch(s.unique ? `${url}${i}` : url, { headers })
    body = await res.arrayBuffer()
    if (
      i >= 1 &&
      (!s.expectCache || res.headers.get('x-cache')?.toUpperCase().startsWith(s.expectCache))
    )
      break
    await sleep(100)
  }
  if (res!.status !== 200)
    throw new Error(
      `${s.name}: expected 200, got ${res!.status}: ${Buffer.from(body).toString().slice(0, 200)}`
    )
  if (s.request !== 'json' && body.byteLength !== 40960)
    throw new Error(`${s.name}: expected a 40960-byte thumbnail, got ${body.byteLength}`)
  if (s.expectCache && !res!.headers.get('x-cache')?.toUpperCase().startsWith(s.expectCache)) {
    throw new Error(
      `${s.name}: expected X-Cache ${s.expectCache}, got ${res!.headers.get('x-cache')}`
    )
  }
}

/** Waits (up to `maxMs`) for a second in which no CPU is busier than 3% with somebody else's work. */
async function waitQuiet(maxMs: number): Promise<void> {
  const deadline = Date.now() + maxMs
  while (Date.now() < deadline) {
    const a = cpuTimes()
    await sleep(1000)
    const b = cpuTimes()
    if (b.every((c, i) => (c.proc - a[i]!.proc) / Math.max(1, c.total - a[i]!.total) < 0.03)) return
  }
}

async function measureOnce(
  s: Scenario,
  target: Target,
  upstream: Target,
  run: number
): Promise<Measurement> {
  const spec = {
    url: target.url,
    path: PATHS[s.request],
    headers: headersFor(s, target),
    unique: s.unique,
    connections: CONNECTIONS,
    cpus: SIDE_CPU,
  }
  if (WARMUP > 0) await runLoad(TOOL, { ...spec, durationSeconds: WARMUP })
  const serverPids = target.name === 'direct' ? [] : target.pids()
  const upstreamPids = upstream.pids()
  const cpu0 = cpuTimes()
  const self0 = process.cpuUsage()
  const s0 = treeCpuSeconds(serverPids)
  const u0 = treeCpuSeconds(upstreamPids)
  const t0 = performance.now()
  const load = await runLoad(TOOL, { ...spec, durationSeconds: DURATION })
  const wall = (performance.now() - t0) / 1000
  const serverSeconds = treeCpuSeconds(serverPids) - s0
  const upstreamSeconds = treeCpuSeconds(upstreamPids) - u0
  const selfUsage = process.cpuUsage(self0)
  const selfSeconds = TOOL === 'wrk' ? (selfUsage.user + selfUsage.system) / 1e6 : 0
  const cpu1 = cpuTimes()
  const share = (i: number, k: 'proc' | 'soft') =>
    (cpu1[i]![k] - cpu0[i]![k]) / Math.max(1, cpu1[i]!.total - cpu0[i]!.total)
  const cpuBusy = cpu1.map((_, i) => share(i, 'proc'))
  const cpuSoft = cpu1.map((_, i) => share(i, 'soft'))
  const ours = new Array<number>(cpu1.length).fill(0)
  if (TWO_CPUS) {
    ours[Number(SERVER_CPU)] = serverSeconds / wall
    ours[Number(SIDE_CPU)] = (upstreamSeconds + load.cpuSeconds + selfSeconds) / wall
  }
  const foreign = TWO_CPUS ? cpuBusy.map((b, i) => Math.max(0, b - ours[i]!)) : []
  return {
    ...load,
    scenario: s.name,
    run,
    serverCpu: serverSeconds / wall,
    upstreamCpu: upstreamSeconds / wall,
    loadCpu: load.cpuSeconds / wall,
    cpuBusy,
    cpuSoft,
    foreign,
    attempts: 1,
    serverUsPerRequest: load.requests ? (serverSeconds / load.requests) * 1e6 : 0,
  }
}

/**
 * --paired: both sides of a ratio at once, both servers on the same CPU, each with its own load
 * generator. They share whatever the machine does during those seconds (another tenant on the
 * host, frequency changes), so that drift cancels out of their CPU/request ratio; the scheduler
 * shares the CPU between them. What is compared is server CPU per request (req/s then mostly shows
 * how the CPU was shared).
 */
async function measurePair(
  r: Ratio,
  a: [Scenario, Target],
  b: [Scenario, Target],
  upstream: Target,
  run: number
): Promise<[Measurement, Measurement]> {
  await waitQuiet(30_000)
  const spec = ([s, t]: [Scenario, Target]) => ({
    url: t.url,
    path: PATHS[s.request],
    headers: headersFor(s, t),
    unique: s.unique,
    connections: CONNECTIONS,
    cpus: SIDE_CPU,
  })
  if (WARMUP > 0)
    await Promise.all([
      runLoad(TOOL, { ...spec(a), durationSeconds: WARMUP }),
      runLoad(TOOL, { ...spec(b), durationSeconds: WARMUP }),
    ])
  const pids = ([, t]: [Scenario, Target]) => (t.name === 'direct' ? [] : t.pids())
  const before = [treeCpuSeconds(pids(a)), treeCpuSeconds(pids(b)), treeCpuSeconds(upstream.pids())]
  const t0 = performance.now()
  const loads = await Promise.all([
    runLoad(TOOL, { ...spec(a), durationSeconds: DURATION }),
    runLoad(TOOL, { ...spec(b), durationSeconds: DURATION }),
  ])
  const wall = (performance.now() - t0) / 1000
  const upstreamSeconds = treeCpuSeconds(upstream.pids()) - before[2]!
  return ([a, b] as const).map(([s], i) => {
    const load = loads[i]!
    const serverSeconds = treeCpuSeconds(pids(i === 0 ? a : b)) - before[i]!
    return {
      ...load,
      scenario: s.name,
      run,
      pair: r.name,
      serverCpu: serverSeconds / wall,
      upstreamCpu: upstreamSeconds / wall,
      loadCpu: load.cpuSeconds / wall,
      cpuBusy: [],
      cpuSoft: [],
      foreign: [],
      attempts: 1,
      serverUsPerRequest: load.requests ? (serverSeconds / load.requests) * 1e6 : 0,
    }
  }) as unknown as [Measurement, Measurement]
}

/** Measures until a run is free of other people's CPU use (shared machine), keeping the cleanest. */
async function measure(
  s: Scenario,
  target: Target,
  upstream: Target,
  run: number
): Promise<Measurement> {
  let best: Measurement | undefined
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    await waitQuiet(30_000)
    const m = await measureOnce(s, target, upstream, run)
    m.attempts = attempt
    const noise = Math.max(0, ...m.foreign)
    if (!best || noise < Math.max(0, ...best.foreign)) best = m
    if (noise <= NOISE_LIMIT) break
    process.stderr.write(
      `  ${s.name}: ${pct(noise)} of a core used by other processes during the run; measuring again\n`
    )
  }
  return best!
}

// ---------------------------------------------------------------------------------------------
// Reporting
// ---------------------------------------------------------------------------------------------

interface Summary {
  scenario: string
  what: string
  rps: number[]
  meanRps: number
  p50: number
  p99: number
  serverCpu: number
  upstreamCpu: number
  serverUsPerRequest: number
  cpuBusy: number[]
  cpuSoft: number[]
  /** Largest share of a core other processes took during any of the runs. */
  noise: number
  flagged?: string
}

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length)
const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })
const pct = (n: number) => `${Math.round(n * 100)}%`

function summarize(measurements: Measurement[]): Summary[] {
  const out: Summary[] = []
  for (const s of SCENARIOS) {
    const ms = measurements.filter((m) => m.scenario === s.name)
    if (!ms.length) continue
    const bad = ms.reduce((a, m) => a + m.non2xx + m.errors, 0)
    out.push({
      scenario: s.name,
      what: s.what,
      rps: ms.map((m) => m.rps),
      meanRps: mean(ms.map((m) => m.rps)),
      p50: mean(ms.map((m) => m.p50)),
      p99: mean(ms.map((m) => m.p99)),
      serverCpu: mean(ms.map((m) => m.serverCpu)),
      upstreamCpu: mean(ms.map((m) => m.upstreamCpu)),
      serverUsPerRequest: mean(ms.map((m) => m.serverUsPerRequest)),
      cpuBusy: ms[0]!.cpuBusy.map((_, i) => mean(ms.map((m) => m.cpuBusy[i]!))),
      cpuSoft: ms[0]!.cpuSoft.map((_, i) => mean(ms.map((m) => m.cpuSoft[i]!))),
      noise: Math.max(0, ...ms.flatMap((m) => m.foreign)),
      ...(bad ? { flagged: `${bad} non-2xx/errors` } : {}),
    })
  }
  return out
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
  return rows
    .map((r) =>
      r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ')
    )
    .join('\n')
}

interface RatioResult {
  name: string
  issue: string
  /**
   * Median over runs of a/b within the same run (a and b measured minutes apart at most, so a
   * drift of the machine's speed over the whole benchmark does not enter the ratio).
   */
  value: number
  /** The per-run ratios the median is taken from. */
  perRun: number[]
  /** The same on server CPU per request (b's µs/req over a's): capacity when the server is the bottleneck. */
  cpuValue?: number
  target?: string
  pass?: boolean
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

function ratios(measurements: Measurement[]): RatioResult[] {
  const out: RatioResult[] = []
  for (const r of RATIOS) {
    const pairs: [Measurement, Measurement][] = []
    for (const a of measurements.filter(
      (m) => m.scenario === r.a && (m.pair === undefined || m.pair === r.name)
    )) {
      const b = measurements.find((m) => m.scenario === r.b && m.run === a.run && m.pair === a.pair)
      if (b) pairs.push([a, b])
    }
    if (!pairs.length) continue
    // Measured side by side (--paired): the two shared the CPU, so the ratio is the CPU cost per request.
    const paired = pairs[0]![0].pair !== undefined
    const perRun = pairs.map(([a, b]) =>
      paired ? b.serverUsPerRequest / a.serverUsPerRequest : a.rps / b.rps
    )
    const value = median(perRun)
    const result: RatioResult = { name: r.name, issue: r.issue, value, perRun }
    const cpu = pairs
      .filter(([a, b]) => a.serverUsPerRequest > 0 && b.serverUsPerRequest > 0)
      .map(([a, b]) => b.serverUsPerRequest / a.serverUsPerRequest)
    if (cpu.length) result.cpuValue = median(cpu)
    if (r.min !== undefined) {
      result.target = `≥ ${r.min}`
      result.pass = value >= r.min
    } else if (r.max !== undefined) {
      result.target = `≤ ${r.max}`
      result.pass = value <= r.max
    }
    out.push(result)
  }
  return out
}

// ---------------------------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------------------------

function selected(): Scenario[] {
  if (!args.only) return SCENARIOS
  const wanted = new Set(args.only.split(',').map((s) => s.trim()))
  return SCENARIOS.filter((s) => wanted.has(s.name) || wanted.has(s.group) || wanted.has(s.target))
}

/** `<variant>-alt`: that variant's config, run from the build in --alt-dist. */
function altVariant(variants: Map<string, VariantOrSkip>, name: string): VariantOrSkip {
  const base = variants.get(name.slice(0, -'-alt'.length))!
  if (!args['alt-dist']) return { name, skip: 'no --alt-dist given' }
  if (!existsSync(join(args['alt-dist'], 'src', 'main.js')))
    return { name, skip: `no src/main.js under ${args['alt-dist']}` }
  if ('skip' in base) return { name, skip: base.skip }
  // An older build refuses policies it does not know: those switched off are left out (it has none
  // of them to switch off); one switched on makes the comparison meaningless.
  const known = new Set(
    readdirSync(join(args['alt-dist'], 'policies'), { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
  )
  const policies: Record<string, unknown> = {}
  for (const [policy, options] of Object.entries(
    (base.config.policies ?? {}) as Record<string, unknown>
  )) {
    if (known.has(policy)) policies[policy] = options
    else if (options !== false) return { name, skip: `the --alt-dist build has no ${policy}` }
  }
  return { ...base, name, config: { ...base.config, policies } }
}

/** The gateway variant a target names: `<variant>-alt` runs that variant's config from --alt-dist. */
function variantFor(variants: Map<string, VariantOrSkip>, name: string): VariantOrSkip | undefined {
  return name.endsWith('-alt') ? altVariant(variants, name) : variants.get(name)
}

function build(): void {
  if (args['no-build']) return
  const r = spawnSync('npm', ['run', '--silent', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (r.status !== 0) {
    // tsc emits despite type errors in files other engineers are still writing; go on if it did.
    if (!existsSync(join(ROOT, 'dist', 'src', 'main.js')))
      throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`)
    process.stderr.write(
      `warning: npm run build reported errors (running the emitted dist/ anyway):\n${String(r.stdout).split('\n').slice(0, 5).join('\n')}\n`
    )
  }
}

async function main(): Promise<void> {
  const variants = await gatewayVariants()
  if (args.list) {
    for (const s of SCENARIOS) {
      const v = variantFor(variants, s.target)
      const skip = v && 'skip' in v ? `  [skipped: ${v.skip}]` : ''
      process.stdout.write(`${s.group.padEnd(9)} ${s.name.padEnd(20)} ${s.what}${skip}\n`)
    }
    return
  }
  // The orchestrator (and autocannon, if used) stays on the side CPU with the upstream.
  if (SIDE_CPU) pin(process.pid, SIDE_CPU)
  build()
  mkdirSync(RESULTS, { recursive: true })
  const dir = mkdtempSync(join(tmpdir(), 'igw-bench-'))

  const scenarios = selected()
  const upstream = await startUpstream()
  const nginxAvailable = onPath('nginx')
  const skips = new Map<string, string>()
  const skip = (scenario: string, err: unknown) => {
    if (!skips.has(scenario)) skips.set(scenario, (err as Error).message.split('\n')[0]!)
  }

  /** Starts every server the scenarios need, each a fresh process (nginx serves two targets). */
  async function startTargets(): Promise<{
    targets: Map<string, Target>
    stop: () => Promise<void>
  }> {
    const targets = new Map<string, Target>([['direct', upstream]])
    const stoppers: (() => Promise<void>)[] = []
    for (const name of new Set(scenarios.map((s) => s.target))) {
      if (targets.has(name)) continue
      try {
        if (name === 'nginx' || name === 'nginx-cache') {
          if (!nginxAvailable) throw new Error('nginx is not on PATH')
          const [port, cachePort] = [await freePort(), await freePort()]
          const up = new URL(upstream.url)
          const { proc } = await startNginx(
            'nginx',
            'proxy.conf.tmpl',
            { UPSTREAM: up.host, PORT: port, CACHE_PORT: cachePort, ACCESS_LOG: 'off' },
            SERVER_CPU,
            `http://127.0.0.1:${port}/api/server/ping`
          )
          stoppers.push(() => proc.stop())
          const pids = () => processTree(proc.pid)
          targets.set('nginx', {
            name: 'nginx',
            url: `http://127.0.0.1:${port}`,
            pids,
            stop: () => proc.stop(),
          })
          targets.set('nginx-cache', {
            name: 'nginx-cache',
            url: `http://127.0.0.1:${cachePort}`,
            pids,
            stop: () => proc.stop(),
          })
        } else {
          let t: Target
          if (name === 'node-static' || name === 'node-proxy')
            t = await startNodeFloor(name === 'node-static' ? 'static' : 'proxy', upstream.url)
          else if (name === 'fastify') t = await startFastify(upstream.url)
          else {
            const v = variantFor(variants, name)
            if (!v) throw new Error(`unknown target ${name}`)
            if ('skip' in v) throw new Error(v.skip)
            t = await startGatewayProcess(v, upstream.url, dir)
          }
          stoppers.push(() => t.stop())
          targets.set(name, t)
        }
      } catch (err) {
        for (const s of scenarios.filter((x) => x.target === name)) skip(s.name, err)
      }
    }
    return {
      targets,
      stop: async () => void (await Promise.all(stoppers.map((fn) => fn().catch(() => {})))),
    }
  }

  try {
    const measurements: Measurement[] = []
    for (let run = 1; run <= RUNS; run++) {
      // Fresh server processes every run: one process can be a few % faster or slower than the
      // next of the same build (JIT, memory layout), so the mean over runs also averages instances.
      const { targets, stop } = await startTargets()
      try {
        const runnable: Scenario[] = []
        for (const s of scenarios) {
          const t = targets.get(s.target)
          if (!t || skips.has(s.name)) continue
          try {
            await check(s, t)
            runnable.push(s)
          } catch (err) {
            skip(s.name, err)
          }
        }
        if (run === 1)
          for (const [name, reason] of skips) process.stderr.write(`skip ${name}: ${reason}\n`)
        if (args.paired) {
          for (const r of RATIOS) {
            const a = runnable.find((s) => s.name === r.a)
            const b = runnable.find((s) => s.name === r.b)
            if (!a || !b) continue
            const pair = await measurePair(
              r,
              [a, targets.get(a.target)!],
              [b, targets.get(b.target)!],
              upstream,
              run
            )
            measurements.push(...pair)
            const [ma, mb] = pair
            process.stderr.write(
              `run ${run} ${r.name.padEnd(34)} ${fmt(ma.rps).padStart(6)} | ${fmt(mb.rps).padStart(6)} req/s  CPU/req ${ma.serverUsPerRequest.toFixed(0)} | ${mb.serverUsPerRequest.toFixed(0)} µs  → ${(mb.serverUsPerRequest / ma.serverUsPerRequest).toFixed(2)}${ma.non2xx + ma.errors + mb.non2xx + mb.errors ? '  !! non-2xx/errors' : ''}\n`
            )
          }
          continue
        }
        // Every other run goes backwards: a pair of neighbours is measured A B, then B A, so a slow
        // drift of the machine's speed cancels out of their ratio.
        for (const s of run % 2 ? runnable : [...runnable].reverse()) {
          const m = await measure(s, targets.get(s.target)!, upstream, run)
          measurements.push(m)
          process.stderr.write(
            `run ${run} ${s.name.padEnd(20)} ${fmt(m.rps).padStart(7)} req/s  p50 ${m.p50.toFixed(2)} ms  p99 ${m.p99.toFixed(2)} ms  server ${pct(m.serverCpu)} upstream ${pct(m.upstreamCpu)} load ${pct(m.loadCpu)} soft ${m.cpuSoft.map(pct).join('/')} noise ${m.foreign.map(pct).join('/')}${m.non2xx + m.errors ? `  !! ${m.non2xx} non-2xx ${m.errors} errors` : ''}\n`
          )
        }
      } finally {
        await stop()
      }
    }
    const skipped = [...skips].map(([scenario, reason]) => ({ scenario, reason }))

    const summaries = summarize(measurements)
    const ratioResults = ratios(measurements)
    const env = {
      date: new Date().toISOString(),
      node: process.version,
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model,
      nginx: nginxAvailable ? spawnSync('nginx', ['-v']).stderr.toString().trim() : undefined,
      tool: TOOL,
      upstream: UPSTREAM_MODE,
      duration: DURATION,
      warmup: WARMUP,
      connections: CONNECTIONS,
      runs: RUNS,
      pinning: TWO_CPUS
        ? 'server under test on CPU 1; upstream + load generator on CPU 0'
        : 'none (1 CPU)',
      profile: args.profile,
      // `-dirty`: the tree had uncommitted changes (other engineers' work in progress) when built.
      commit: spawnSync('git', ['describe', '--always', '--dirty'], { cwd: ROOT })
        .stdout?.toString()
        .trim(),
    }
    const file = join(RESULTS, `${env.date.replace(/[:.]/g, '-')}.json`)
    writeFileSync(
      file,
      JSON.stringify({ env, summaries, ratios: ratioResults, skipped, measurements }, null, 2)
    )

    const out: string[] = []
    out.push(
      `\n${env.date}  node ${env.node}  ${env.cpus} CPUs  ${TOOL} -c${CONNECTIONS} ${DURATION}s ×${RUNS}  upstream: ${UPSTREAM_MODE}  (${env.pinning})\n`
    )
    out.push(
      table([
        [
          'scenario',
          'req/s',
          'runs',
          'p50 ms',
          'p99 ms',
          'server CPU',
          'µs CPU/req',
          'upstream CPU',
          'CPU0 proc+irq',
          'CPU1 proc+irq',
          'noise',
          '',
        ],
        ...summaries.map((s) => [
          s.scenario,
          fmt(s.meanRps),
          s.rps.map((r) => fmt(r)).join(' / '),
          s.p50.toFixed(2),
          s.p99.toFixed(2),
          s.scenario.startsWith('direct') ? '-' : pct(s.serverCpu),
          s.scenario.startsWith('direct') ? '-' : fmt(s.serverUsPerRequest, 1),
          pct(s.upstreamCpu),
          `${pct(s.cpuBusy[0] ?? 0)}+${pct(s.cpuSoft[0] ?? 0)}`,
          `${pct(s.cpuBusy[1] ?? 0)}+${pct(s.cpuSoft[1] ?? 0)}`,
          pct(s.noise),
          s.flagged ? `!! ${s.flagged}` : '',
        ]),
      ])
    )
    if (ratioResults.length) {
      out.push('\n')
      out.push(
        table([
          ['ratio (median of runs)', 'req/s', 'per run', 'CPU/req', 'target', '', 'issue'],
          ...ratioResults.map((r) => [
            r.name,
            r.value.toFixed(2),
            r.perRun.map((x) => x.toFixed(2)).join(' '),
            r.cpuValue === undefined ? '-' : r.cpuValue.toFixed(2),
            r.target ?? '',
            r.pass === undefined ? '' : r.pass ? 'ok' : 'BELOW',
            r.issue,
          ]),
        ])
      )
    }
    if (skipped.length)
      out.push(`\n\nskipped:\n${skipped.map((k) => `  ${k.scenario}: ${k.reason}`).join('\n')}`)
    out.push(`\n\nraw results: ${file}\n`)
    process.stdout.write(out.join('\n'))
  } finally {
    await upstream.stop().catch(() => {})
  }
}

await main()
