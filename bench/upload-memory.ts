// Streams a large multipart upload through the gateway (its own process) to the fake Immich and
// samples the gateway's RSS every 100 ms: peak RSS, throughput, and the upstream's byte count and
// sha1 against what was sent. The body is generated on the fly and never held in memory.
//
//   npx tsx bench/upload-memory.ts [--size-mib 2048] [--legacy] [--h2] [--policies default|bare] [--no-build]
//                                  [--node-arg=--max-semi-space-size=4]
//   --h2: over HTTPS + HTTP/2 (server.tls with a certificate made here by openssl; 1 GiB unless
//         --size-mib): the request body has no Content-Length, as h2 clients often send it.
//   --legacy: 1 GiB (unless --size-mib) through the old `POST /api/asset/upload` with an old minimal
//             form (assetData only); skipped when the legacy-routes policy is not registered.
import { execFileSync, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import http from 'node:http'
import http2 from 'node:http2'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { POLICIES } from '../policies/index.js'
import { ByteSource, startFakeImmich } from '../test/fake-immich/server.js'
import { freePort, pin, rssBytes, start, waitForHttp } from './lib/procs.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const { values: args } = parseArgs({
  options: {
    'size-mib': { type: 'string' },
    legacy: { type: 'boolean', default: false },
    h2: { type: 'boolean', default: false },
    'no-build': { type: 'boolean', default: false },
    'rss-limit-mb': { type: 'string', default: '150' },
    /** `default`: every registered policy with its default options (what `npm start` runs); `bare`: all off. */
    policies: { type: 'string', default: 'default' },
    /** Extra node flags for the gateway process, e.g. --node-arg=--max-semi-space-size=4 (repeatable). */
    'node-arg': { type: 'string', multiple: true, default: [] },
  },
})
const LEGACY = args.legacy
const H2 = args.h2
const SIZE = Number(args['size-mib'] ?? (LEGACY || H2 ? 1024 : 2048)) * 1024 * 1024
const RSS_LIMIT = Number(args['rss-limit-mb']) * 1e6
const TWO_CPUS = cpus().length >= 2
const CHUNK = 64 * 1024
const BOUNDARY = '----immichGatewayBench7MA4YWxkTrZu0gW'

function multipartParts(): { head: Buffer; tail: Buffer } {
  const field = (name: string, value: string) =>
    `--${BOUNDARY}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`
  const fields = LEGACY
    ? // An old bot's minimal form: the legacy translation must add what current Immich requires.
      ''
    : field('deviceAssetId', `bench-${Date.now()}`) +
      field('deviceId', 'bench') +
      field('fileCreatedAt', '2024-01-01T00:00:00.000Z') +
      field('fileModifiedAt', '2024-01-01T00:00:00.000Z')
  const head = Buffer.from(
    `${fields}--${BOUNDARY}\r\nContent-Disposition: form-data; name="assetData"; filename="bench.mp4"\r\nContent-Type: video/mp4\r\n\r\n`
  )
  return { head, tail: Buffer.from(`\r\n--${BOUNDARY}--\r\n`) }
}

function build(): void {
  if (args['no-build']) return
  const r = spawnSync('npm', ['run', '--silent', 'build'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (r.status !== 0 && !existsSync(join(ROOT, 'dist', 'src', 'main.js')))
    throw new Error(`npm run build failed:\n${r.stdout}${r.stderr}`)
}

async function main(): Promise<void> {
  const registered = POLICIES.map((p) => p.name)
  if (LEGACY && !registered.includes('legacy-routes')) {
    process.stdout.write('skip: the legacy-routes policy is not registered in policies/index.ts\n')
    return
  }
  if (TWO_CPUS) pin(process.pid, '0')
  build()

  // The fake runs in this process (its memory is not what is measured); the gateway is its own.
  const immich = await startFakeImmich({ maxRecordedRequests: 4 })
  const dir = mkdtempSync(join(tmpdir(), 'igw-upload-'))
  const config = join(dir, 'gateway.json')
  const bare = args.policies === 'bare'
  const policies = bare
    ? Object.fromEntries(registered.map((n) => [n, n === 'legacy-routes' && LEGACY ? {} : false]))
    : {}
  let ca = ''
  let server = {}
  if (H2) {
    // A throw-away certificate for 127.0.0.1, made with openssl like the TLS tests do.
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
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-addext',
        'subjectAltName=DNS:localhost,IP:127.0.0.1',
      ],
      { stdio: 'ignore' }
    )
    ca = readFileSync(join(dir, 'cert.pem'), 'utf8')
    server = { tls: { certFile: join(dir, 'cert.pem'), keyFile: join(dir, 'key.pem') } }
  }
  writeFileSync(config, JSON.stringify({ server, policies }))
  const port = await freePort()
  const gateway = start(
    'gateway',
    process.execPath,
    [...args['node-arg'], join(ROOT, 'dist', 'src', 'main.js')],
    {
      cpus: TWO_CPUS ? '1' : undefined,
      stdout: 'ignore',
      env: {
        IMMICH_URL: immich.url,
        PORT: String(port),
        HOST: '127.0.0.1',
        LOG_LEVEL: 'warn',
        GATEWAY_CONFIG: config,
        REDIS_URL: undefined,
      },
    }
  )
  try {
    const session = H2 ? await h2Session(`https://127.0.0.1:${port}`, ca, gateway.tail) : undefined
    if (!H2) await waitForHttp(gateway, `http://127.0.0.1:${port}/healthz`)
    const idleRss = rssBytes(gateway.pid)
    let peak = idleRss
    const samples: number[] = []
    const sampler = setInterval(() => {
      const rss = rssBytes(gateway.pid)
      samples.push(rss)
      if (rss > peak) peak = rss
    }, 100)

    const { head, tail } = multipartParts()
    const fileHash = createHash('sha1')
    const started = performance.now()
    const path = LEGACY ? '/api/asset/upload' : '/api/assets'
    const headers = {
      'x-api-key': 'fake-admin-key',
      'content-type': `multipart/form-data; boundary=${BOUNDARY}`,
    }
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      let body = ''
      let status = 0
      const req = session
        ? session.request({ ':method': 'POST', ':path': path, ...headers })
        : http.request(
            {
              host: '127.0.0.1',
              port,
              method: 'POST',
              path,
              headers: { ...headers, 'content-length': head.length + SIZE + tail.length },
            },
            (res) => {
              status = res.statusCode ?? 0
              res.setEncoding('utf8')
              res.on('data', (d: string) => (body += d))
              res.on('end', () => resolve({ status, body }))
            }
          )
      if (req instanceof http.ClientRequest) req.on('error', reject)
      else {
        req.on('response', (h) => (status = Number(h[':status'])))
        req.setEncoding('utf8')
        req.on('data', (d: string) => (body += d))
        req.on('end', () => resolve({ status, body }))
        req.on('error', reject)
      }
      // Deterministic bytes, one 64 KiB chunk at a time, written only when the socket drains.
      const chunks = new ByteSource(`bench-upload-${SIZE}`).chunks(0, SIZE, CHUNK)
      req.write(head)
      const pump = () => {
        for (;;) {
          const next = chunks.next()
          if (next.done) {
            req.end(tail)
            return
          }
          fileHash.update(next.value)
          if (!req.write(next.value)) {
            req.once('drain', pump)
            return
          }
        }
      }
      pump()
    })
    session?.close()
    const seconds = (performance.now() - started) / 1000
    clearInterval(sampler)

    const upload = immich.requestsTo('/api/assets', 'POST').at(-1)?.upload
    const sent = fileHash.digest('hex')
    const bodyBytes = head.length + SIZE + tail.length
    const ok =
      answer.status === 201 &&
      upload !== undefined &&
      upload.fileBytes === SIZE &&
      upload.fileSha1 === sent &&
      (LEGACY || upload.bytes === bodyBytes)
    const sorted = [...samples].sort((a, b) => a - b)
    const result = {
      date: new Date().toISOString(),
      node: process.version,
      gatewayNodeArgs: args['node-arg'],
      mode: `${LEGACY ? 'legacy POST /api/asset/upload' : 'POST /api/assets'}${H2 ? ' over HTTP/2 + TLS' : ''}, policies: ${bare ? 'all off' : `defaults (${registered.join(', ')})`}`,
      fileBytes: SIZE,
      seconds,
      mibPerSecond: SIZE / 1024 / 1024 / seconds,
      status: answer.status,
      answer: answer.body.slice(0, 200),
      upstream: upload && {
        status: upload.status,
        bytes: upload.bytes,
        fileBytes: upload.fileBytes,
        fileSha1: upload.fileSha1,
        fields: upload.fields,
      },
      sentSha1: sent,
      verified: ok,
      rss: {
        idleMB: idleRss / 1e6,
        peakMB: peak / 1e6,
        p50MB: (sorted[Math.floor(sorted.length / 2)] ?? 0) / 1e6,
        samples: samples.length,
        /** Highest RSS of each second of the upload (MB): flat means no growth with bytes sent. */
        perSecondMB: Array.from(
          { length: Math.ceil(samples.length / 10) },
          (_, i) => Math.round(Math.max(...samples.slice(i * 10, i * 10 + 10)) / 1e5) / 10
        ),
      },
      rssLimitMB: RSS_LIMIT / 1e6,
      pass: ok && peak < RSS_LIMIT,
    }
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true })
    const file = join(
      ROOT,
      'bench',
      'results',
      `upload-${LEGACY ? 'legacy-' : ''}${H2 ? 'h2-' : ''}${result.date.replace(/[:.]/g, '-')}.json`
    )
    writeFileSync(file, JSON.stringify(result, null, 2))
    process.stdout.write(
      [
        `${result.mode}: ${(SIZE / 1024 ** 3).toFixed(2)} GiB in ${seconds.toFixed(1)} s = ${result.mibPerSecond.toFixed(0)} MiB/s`,
        `gateway RSS: idle ${result.rss.idleMB.toFixed(1)} MB, peak ${result.rss.peakMB.toFixed(1)} MB, median ${result.rss.p50MB.toFixed(1)} MB (${samples.length} samples, every 100 ms; limit ${result.rssLimitMB} MB)`,
        `RSS per second (MB): ${result.rss.perSecondMB.join(' ')}`,
        `answer ${answer.status}; upstream received ${upload?.fileBytes ?? '?'} file bytes, sha1 ${upload?.fileSha1 ?? '?'} (sent ${sent}): ${ok ? 'identical' : 'MISMATCH'}`,
        result.pass ? 'PASS' : 'FAIL',
        `raw result: ${file}`,
      ].join('\n') + '\n'
    )
    if (!result.pass) process.exitCode = 1
  } finally {
    await gateway.stop()
    await immich.close()
  }
}

/** An HTTP/2 session to the gateway once it answers /healthz over TLS. */
async function h2Session(
  url: string,
  ca: string,
  tail: () => string
): Promise<http2.ClientHttp2Session> {
  const deadline = Date.now() + 20_000
  for (;;) {
    try {
      const session = await new Promise<http2.ClientHttp2Session>((resolve, reject) => {
        const s = http2.connect(url, { ca, servername: 'localhost' })
        s.once('connect', () => resolve(s))
        s.once('error', reject)
      })
      const status = await new Promise<number>((resolve, reject) => {
        const r = session.request({ ':path': '/healthz' })
        r.on('response', (h) => resolve(Number(h[':status'])))
        r.on('error', reject)
        r.resume()
        r.end()
      })
      if (status < 500) return session
      session.close()
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`gateway not up over h2:\n${tail()}`, { cause: err })
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}

await main()
