// HTTPS pass-through: the gateway (no policies, LOG_LEVEL=warn, server.tls with a certificate made
// here by openssl) against nginx (1 worker, `ssl` + `http2`, the same certificate, the same
// upstream: the fake Immich in its own process), over HTTP/1.1 (wrk) and HTTP/2 (a node:http2 load
// generator in this process). A 40 KiB thumbnail is fetched through each. Every run starts fresh
// server processes; runs alternate A B / B A. Reported: req/s and the server's CPU µs per request
// (from /proc), and the gateway/nginx ratio of each per run.
//
//   npx tsx bench/tls-passthrough.ts [--runs 3] [--duration 10] [--no-build]
import { execFileSync, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import http2 from 'node:http2'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { POLICIES } from '../policies/index.js'
import { runLoad } from './lib/load.js'
import {
  freePort,
  onPath,
  pin,
  processTree,
  start,
  treeCpuSeconds,
  waitForHttp,
  type Proc,
} from './lib/procs.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const { values: args } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    duration: { type: 'string', default: '10' },
    'no-build': { type: 'boolean', default: false },
  },
})
const RUNS = Number(args.runs)
const DURATION = Number(args.duration)
const TWO_CPUS = cpus().length >= 2
const SERVER_CPU = TWO_CPUS ? '1' : undefined
const SIDE_CPU = TWO_CPUS ? '0' : undefined
const ASSET_ID = '8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f'
const PATH = `/api/assets/${ASSET_ID}/thumbnail?size=thumbnail`
const HEADERS = { 'x-api-key': 'fake-admin-key' }

interface Server {
  url: string
  pids: () => number[]
  stop: () => Promise<void>
}

const dir = mkdtempSync(join(tmpdir(), 'igw-tls-bench-'))
const certFile = join(dir, 'cert.pem')
const keyFile = join(dir, 'key.pem')
execFileSync(
  'openssl',
  [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    keyFile,
    '-out',
    certFile,
    '-days',
    '1',
    '-subj',
    '/CN=localhost',
    '-addext',
    'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ],
  { stdio: 'ignore' }
)
const CA = readFileSync(certFile, 'utf8')

async function waitForH2(url: string, proc: Proc): Promise<void> {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const status = await h2Once(url)
      if (status < 500) return
    } catch (err) {
      if (Date.now() > deadline || proc.child.exitCode !== null)
        throw new Error(`${proc.name} not up over TLS:\n${proc.tail()}`, { cause: err })
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

function h2Once(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(url, { ca: CA, servername: 'localhost' })
    session.on('error', reject)
    const req = session.request({ ':path': PATH, ...HEADERS })
    req.on('response', (h) => {
      resolve(Number(h[':status']))
      session.close()
    })
    req.on('error', reject)
    req.resume()
    req.end()
  })
}

async function startGateway(upstream: string): Promise<Server> {
  const port = await freePort()
  const config = join(dir, 'gateway.json')
  const policies = Object.fromEntries(POLICIES.map((p) => [p.name, false]))
  writeFileSync(config, JSON.stringify({ server: { tls: { certFile, keyFile } }, policies }))
  const proc = start('gateway', process.execPath, [join(ROOT, 'dist', 'src', 'main.js')], {
    cpus: SERVER_CPU,
    stdout: 'ignore',
    env: {
      IMMICH_URL: upstream,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      GATEWAY_CONFIG: config,
      REDIS_URL: undefined,
    },
  })
  const url = `https://127.0.0.1:${port}`
  await waitForH2(url, proc)
  return { url, pids: () => [proc.pid], stop: () => proc.stop() }
}

async function startNginx(upstream: string): Promise<Server> {
  const port = await freePort()
  const prefix = mkdtempSync(join(tmpdir(), 'igw-nginx-tls-'))
  const conf = join(prefix, 'nginx.conf')
  const template = readFileSync(join(ROOT, 'bench', 'nginx', 'tls-proxy.conf.tmpl'), 'utf8')
  const vars: Record<string, string> = {
    PREFIX: prefix,
    PORT: String(port),
    UPSTREAM: new URL(upstream).host,
    CERT: certFile,
    KEY: keyFile,
  }
  writeFileSync(
    conf,
    template.replace(/\{\{(\w+)\}\}/g, (_, k: string) => vars[k] ?? '')
  )
  const proc = start(
    'nginx',
    'nginx',
    ['-p', prefix, '-c', conf, '-e', join(prefix, 'error.log')],
    {
      cpus: SERVER_CPU,
    }
  )
  const url = `https://127.0.0.1:${port}`
  await waitForH2(url, proc)
  return { url, pids: () => processTree(proc.pid), stop: () => proc.stop() }
}

/** HTTP/2 load: `sessions` connections with `streams` requests in flight on each, for `seconds`. */
async function h2Load(
  url: string,
  sessions: number,
  streams: number,
  seconds: number
): Promise<{ requests: number; errors: number; non2xx: number }> {
  let requests = 0
  let errors = 0
  let non2xx = 0
  const until = Date.now() + seconds * 1000
  const one = (session: http2.ClientHttp2Session): Promise<void> =>
    new Promise((resolve) => {
      const req = session.request({ ':path': PATH, ...HEADERS })
      req.on('response', (h) => {
        if (Number(h[':status']) >= 400) non2xx += 1
      })
      req.on('data', () => {})
      req.on('end', () => {
        requests += 1
        resolve()
      })
      req.on('error', () => {
        errors += 1
        resolve()
      })
      req.end()
    })
  await Promise.all(
    Array.from({ length: sessions }, async () => {
      const session = http2.connect(url, { ca: CA, servername: 'localhost' })
      session.on('error', () => {})
      await Promise.all(
        Array.from({ length: streams }, async () => {
          while (Date.now() < until) await one(session)
        })
      )
      session.close()
    })
  )
  return { requests, errors, non2xx }
}

interface Sample {
  target: string
  protocol: 'h1' | 'h2'
  run: number
  rps: number
  cpuUsPerRequest: number
  errors: number
}

async function measure(
  target: string,
  server: Server,
  protocol: 'h1' | 'h2',
  run: number
): Promise<Sample> {
  // Warm-up: JIT, TLS session setup, upstream keep-alive pool.
  if (protocol === 'h1')
    await runLoad('wrk', {
      url: server.url,
      path: PATH,
      headers: HEADERS,
      connections: 50,
      durationSeconds: 3,
      cpus: SIDE_CPU,
    })
  else await h2Load(server.url, 4, 16, 3)
  const cpuBefore = treeCpuSeconds(server.pids())
  const started = performance.now()
  let requests: number
  let errors: number
  if (protocol === 'h1') {
    const r = await runLoad('wrk', {
      url: server.url,
      path: PATH,
      headers: HEADERS,
      connections: 50,
      durationSeconds: DURATION,
      cpus: SIDE_CPU,
    })
    requests = r.requests
    errors = r.errors + r.non2xx
  } else {
    const r = await h2Load(server.url, 4, 16, DURATION)
    requests = r.requests
    errors = r.errors + r.non2xx
  }
  const seconds = (performance.now() - started) / 1000
  const cpu = treeCpuSeconds(server.pids()) - cpuBefore
  return {
    target,
    protocol,
    run,
    rps: requests / seconds,
    cpuUsPerRequest: (cpu / requests) * 1e6,
    errors,
  }
}

async function main(): Promise<void> {
  if (!onPath('nginx') || !onPath('wrk')) {
    process.stdout.write('skip: needs nginx and wrk on PATH\n')
    return
  }
  if (TWO_CPUS) pin(process.pid, '0')
  if (!args['no-build']) spawnSync('npm', ['run', '--silent', 'build'], { cwd: ROOT })
  const upstreamPort = await freePort()
  const upstream = start(
    'fake-immich',
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'bench', 'fake-upstream.ts')],
    { cpus: SIDE_CPU, env: { PORT: String(upstreamPort) } }
  )
  const upstreamUrl = `http://127.0.0.1:${upstreamPort}`
  await waitForHttp(upstream, `${upstreamUrl}/api/server/ping`)
  const samples: Sample[] = []
  try {
    for (let run = 0; run < RUNS; run++) {
      const order = run % 2 === 0 ? ['gateway', 'nginx'] : ['nginx', 'gateway']
      for (const protocol of ['h1', 'h2'] as const) {
        for (const target of order) {
          const server =
            target === 'gateway' ? await startGateway(upstreamUrl) : await startNginx(upstreamUrl)
          try {
            const s = await measure(target, server, protocol, run)
            samples.push(s)
            process.stdout.write(
              `run ${run + 1} ${protocol} ${target}: ${s.rps.toFixed(0)} req/s, ${s.cpuUsPerRequest.toFixed(0)} µs CPU/req${s.errors ? `, ${s.errors} errors` : ''}\n`
            )
          } finally {
            await server.stop()
          }
        }
      }
    }
  } finally {
    await upstream.stop()
  }
  const lines: string[] = [
    '',
    '| protocol | per-run req/s ratio gateway/nginx | median | per-run CPU/req ratio nginx/gateway | median |',
    '|---|---|---|---|---|',
  ]
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0
  for (const protocol of ['h1', 'h2'] as const) {
    const rps: number[] = []
    const cpu: number[] = []
    for (let run = 0; run < RUNS; run++) {
      const g = samples.find(
        (s) => s.run === run && s.protocol === protocol && s.target === 'gateway'
      )
      const n = samples.find(
        (s) => s.run === run && s.protocol === protocol && s.target === 'nginx'
      )
      if (!g || !n) continue
      rps.push(g.rps / n.rps)
      cpu.push(n.cpuUsPerRequest / g.cpuUsPerRequest)
    }
    lines.push(
      `| ${protocol} | ${rps.map((r) => r.toFixed(2)).join(' ')} | ${median(rps).toFixed(2)} | ${cpu.map((r) => r.toFixed(2)).join(' ')} | ${median(cpu).toFixed(2)} |`
    )
  }
  process.stdout.write(`${lines.join('\n')}\n`)
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
  const file = join(
    ROOT,
    'bench',
    'results',
    `tls-${new Date().toISOString().replace(/[:.]/g, '-')}.json`
  )
  writeFileSync(
    file,
    JSON.stringify(
      { date: new Date().toISOString(), node: process.version, duration: DURATION, samples },
      null,
      2
    )
  )
  process.stdout.write(`raw result: ${file}\n`)
}

await main()
