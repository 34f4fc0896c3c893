/**
 * The Dockerfile without a Docker daemon: its runtime stage's steps run in a temp dir standing for the
 * image's filesystem (/app, /data, /usr/local/bin mapped into it), as an unprivileged user (uid 65534
 * standing for `node`, via setpriv, when the suite runs as root). Then the image's own start command
 * serves, the keys CLI on the PATH writes the data volume, and SIGTERM ends node with exit 0.
 *
 * Kept fast on purpose: the build stage's `npm ci` is replaced by a symlink to this checkout's
 * node_modules, and its `npm run build` (tsc, about a minute on a busy machine) by TypeScript's
 * per-file transpile of the same sources with the same compiler options (the type check is
 * `tsc --noEmit` in `npm test`).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startFakeImmich, type FakeImmich } from '../fake-immich/server.js'
import { freePort } from '../support/http.js'
import { parseDockerfile } from './dockerfile.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

/** `A=1 B=2` → { A: '1', B: '2' } (the forms this Dockerfile uses). */
function envPairs(args: string): Record<string, string> {
  return Object.fromEntries(args.split(' ').map((pair) => pair.split('=') as [string, string]))
}

const dockerfile = parseDockerfile(readFileSync(join(ROOT, 'Dockerfile'), 'utf8'))
const runtime = dockerfile.at(-1)!
const all = (op: string) => runtime.filter((i) => i.op === op).map((i) => i.args)
const image = Object.assign({}, ...all('ENV').map(envPairs)) as Record<string, string>

/** Transpiles src/ and policies/ to <out>/dist as tsconfig.build.json would lay them out. */
function transpile(out: string): void {
  const { config } = ts.readConfigFile(join(ROOT, 'tsconfig.json'), ts.sys.readFile)
  const { options } = ts.parseJsonConfigFileContent(config, ts.sys, ROOT)
  const walk = (dir: string): string[] =>
    readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
      e.isDirectory() ? walk(join(dir, e.name)) : /\.tsx?$/.test(e.name) ? [join(dir, e.name)] : []
    )
  for (const file of [...walk(join(ROOT, 'src')), ...walk(join(ROOT, 'policies'))]) {
    const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
      // One file at a time TypeScript cannot see package.json's "type": say ESM, as NodeNext emits here.
      compilerOptions: { ...options, module: ts.ModuleKind.ESNext, sourceMap: false },
      fileName: file,
    })
    const target = join(out, 'dist', relative(ROOT, file)).replace(/\.tsx?$/, '.js')
    mkdirSync(dirname(target), { recursive: true })
    writeFileSync(target, outputText)
  }
}

const root = process.getuid?.() === 0
const UID = 65534

describe('Dockerfile', () => {
  it('runtime: current Node LTS slim base, exec-form node entrypoint, non-root user, /data volume as the keys path', () => {
    expect(dockerfile.map((stage) => stage[0]!.args.split(' ')[0])).toEqual([
      'node:24-bookworm-slim',
      'node:24-bookworm-slim',
    ])
    expect(JSON.parse(all('ENTRYPOINT')[0]!)[0]).toBe('node')
    expect(all('USER')).toEqual(['node'])
    expect(all('VOLUME')).toEqual(['/data'])
    expect(image.GATEWAY_KEYS_FILE).toBe('/data/keys.yaml')
    expect(image.METRICS_HOST).toBe('0.0.0.0')
    expect(all('EXPOSE')[0]!.split(' ')).toContain(image.PORT)
    // No npm in front of node: it would swallow SIGTERM.
    expect(runtime.some((i) => /\bnpm\b/.test(i.args) && i.op !== 'RUN')).toBe(false)
  })

  it('.dockerignore keeps node_modules, .git, tests and local keys out of the build context', () => {
    const lines = readFileSync(join(ROOT, '.dockerignore'), 'utf8').split('\n')
    expect(lines).toContain('*')
    const included = lines
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''))
    // Everything a COPY of the build stage names from the context is let in.
    for (const copy of dockerfile
      .flat()
      .filter((i) => i.op === 'COPY' && !i.args.includes('--from'))) {
      for (const source of copy.args.split(' ').slice(0, -1)) expect(included).toContain(source)
    }
    expect(lines).toContain('config/keys.yaml')
  })
})

describe('the image, emulated: install and start steps as an unprivileged user', () => {
  let fs: string
  let immich: FakeImmich
  const children: ChildProcess[] = []
  const map = (path: string) =>
    path
      .replace(/\/usr\/local\/bin/g, `${fs}/usr/local/bin`)
      .replace(/(^|[\s=])\/(app|data)\b/g, `$1${fs}/$2`)
  const env = () => ({
    PATH: `${fs}/usr/local/bin:${process.env.PATH ?? ''}`,
    ...Object.fromEntries(Object.entries(image).map(([k, v]) => [k, map(v)])),
  })
  const asUser = (argv: string[]) =>
    root ? ['setpriv', `--reuid=${UID}`, `--regid=${UID}`, '--clear-groups', ...argv] : argv

  beforeAll(() => {
    fs = mkdtempSync(join(tmpdir(), 'igw-image-'))
    chmodSync(fs, 0o755)
    mkdirSync(join(fs, 'usr/local/bin'), { recursive: true })
    const app = join(fs, 'app')
    mkdirSync(app)
    // COPY --from=build: node_modules (reused, see the top), dist (transpiled), then the context files.
    for (const copy of all('COPY')) {
      const parts = copy.split(' ').filter((p) => !p.startsWith('--'))
      const [source, target] = [parts[0]!, join(app, parts[1]!)]
      if (source === '/app/node_modules') symlinkSync(join(ROOT, 'node_modules'), target)
      else if (source === '/app/dist') transpile(app)
      else
        cpSync(join(ROOT, source), target.endsWith('/') ? join(target, source) : target, {
          recursive: true,
        })
    }
    // RUN, with the image's paths mapped into the temp dir and `node` standing for the unprivileged uid.
    for (const run of all('RUN')) {
      const script = map(run).replace(/chown node:node/g, root ? `chown ${UID}:${UID}` : 'true')
      const result = spawnSync('sh', ['-c', script], { encoding: 'utf8' })
      expect(result.status, result.stderr).toBe(0)
    }
  }, 120_000)

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null) child.kill('SIGKILL')
    await immich?.close()
    rmSync(fs, { recursive: true, force: true })
  })

  it('the CLI on the PATH writes the keys and secrets files into the data volume (0600, owned by the user)', () => {
    const argv = asUser([
      'immich-gateway',
      'keys',
      'add',
      '--name',
      'frame',
      '--scopes',
      'photo-frame',
      '--upstream-key-stdin',
    ])
    const result = spawnSync(argv[0]!, argv.slice(1), {
      cwd: join(fs, 'app'),
      env: env(),
      input: 'fake-user-key\n',
      encoding: 'utf8',
    })
    expect(result.stderr).toBe('')
    expect(result.status).toBe(0)
    for (const file of ['keys.yaml', 'keys.upstream-secrets.json']) {
      const stat = statSync(join(fs, 'data', file))
      expect(stat.mode & 0o777).toBe(0o600)
      if (root) expect(stat.uid).toBe(UID)
    }
    // The build's dist ran, not the TypeScript source: no src/ in the image.
    expect(readdirSync(join(fs, 'app')).sort()).toEqual([
      'bin',
      'config',
      'dist',
      'node_modules',
      'package.json',
    ])
  })

  it('ENTRYPOINT + CMD serve; metrics reachable on METRICS_HOST; SIGTERM exits 0', async () => {
    immich = await startFakeImmich()
    const [port, metricsPort] = [await freePort(), await freePort()]
    const command = [...JSON.parse(all('ENTRYPOINT')[0]!), ...JSON.parse(all('CMD')[0]!)].map(map)
    const argv = asUser(command)
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: join(fs, 'app'),
      env: {
        ...env(),
        PORT: String(port),
        METRICS_PORT: String(metricsPort),
        IMMICH_URL: immich.url,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    children.push(child)
    let output = ''
    child.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    const started = Date.now()
    while (
      (await request(`http://127.0.0.1:${port}/healthz`).then(
        (r) => r.statusCode,
        () => 0
      )) !== 200
    ) {
      if (Date.now() - started > 20_000 || child.exitCode !== null)
        throw new Error(`no start:\n${output}`)
      await new Promise((r) => setTimeout(r, 100))
    }
    // METRICS_HOST=0.0.0.0 from the image: a Prometheus in another container can scrape it.
    expect(output).toContain(`"metrics":"http://0.0.0.0:${metricsPort}/metrics"`)
    const key = readFileSync(join(fs, 'data', 'keys.yaml'), 'utf8')
    expect(key).toContain('name: frame')
    const metrics = await request(`http://127.0.0.1:${metricsPort}/metrics`)
    expect(metrics.statusCode).toBe(200)
    await metrics.body.dump()
    child.kill('SIGTERM')
    const code = await new Promise((r) => child.once('exit', (c) => r(c)))
    expect(code).toBe(0)
  })
})
