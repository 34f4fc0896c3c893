/**
 * The CLI as people learn it: help on the tool and every command (usage, flags, an example) that
 * never starts anything, --version, unknown flags refused with the usage line; and `config check`
 * reporting every problem of a setup in one run.
 */
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { run } from '../../src/cli/index.js'
import { checkConfiguration, formatCheck } from '../../src/config/check.js'
import { keyHash } from '../../src/auth/hash.js'
import { tempDir, USER_KEY_ENV } from '../policies/api-key-auth/support.js'
import { runCli } from '../support/cli.js'

vi.setConfig({ testTimeout: 60_000 })

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const dir = tempDir('igw-cli-help-')
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const cli = (args: string[], env: Record<string, string> = {}) =>
  runCli(args, { installed: true, env })

/** The CLI in this process (no spawn per command): its exit code and what it wrote. */
async function inProcess(args: string[]) {
  let stdout = ''
  let stderr = ''
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    stdout += String(chunk)
    return true
  })
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk)
    return true
  })
  try {
    return { code: await run(args), stdout, stderr }
  } finally {
    out.mockRestore()
    err.mockRestore()
  }
}

const COMMANDS = [
  'serve',
  'config check',
  'config reference',
  'config example',
  'config docs',
  'routes generate',
  'routes explain',
  'keys add',
  'keys list',
  'keys revoke',
  'keys rotate',
  'keys set-upstream',
]

describe('immich-gateway: help, version, flags', () => {
  it('--help and -h list every command; --version prints the package version', async () => {
    const [help, h, version] = await Promise.all([cli(['--help']), cli(['-h']), cli(['--version'])])
    expect(help.code).toBe(0)
    expect(h.stdout).toBe(help.stdout)
    for (const name of COMMANDS) expect(help.stdout).toContain(`  ${name} `)
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }
    expect(version).toMatchObject({ code: 0, stdout: `${pkg.version}\n` })
  })

  it('every command has --help with its usage line, flags and an example, and starts nothing', async () => {
    for (const name of COMMANDS) {
      const result = await inProcess([...name.split(' '), '--help'])
      expect(result.code, name).toBe(0)
      expect(result.stdout).toMatch(new RegExp(`^usage: immich-gateway ${name}`))
      expect(result.stdout).toMatch(/\nexample:\n {2}\S/)
    }
    // A real process: `serve --help` exits at once instead of listening.
    const serve = await cli(['serve', '--help'], { PORT: '1' })
    expect(serve.code).toBe(0)
    expect(serve.stdout).toContain('--keys FILE')
  })

  it('refuses an unknown flag or a missing argument with the usage line, exit 2', async () => {
    const flag = await cli(['keys', 'add', '--bogus'])
    const missing = await inProcess(['keys', 'revoke'])
    const extra = await inProcess(['config', 'check', 'extra'])
    const unknown = await inProcess(['frobnicate'])
    const group = await inProcess(['keys'])
    expect(flag.code).toBe(2)
    expect(flag.stderr).toMatch(/Unknown option '--bogus'\nusage: immich-gateway keys add --name/)
    expect(missing.code).toBe(2)
    expect(missing.stderr).toMatch(/usage: immich-gateway keys revoke NAME/)
    expect(extra.code).toBe(2)
    expect(extra.stderr).toMatch(/unexpected argument "extra"/)
    expect(unknown.code).toBe(2)
    expect(unknown.stderr).toMatch(/unknown command "frobnicate"/)
    expect(group.code).toBe(2)
    expect(group.stderr).toMatch(/keys set-upstream/)
  })
})

describe('config check', () => {
  it('reports every planted problem in one run, honours --file and --keys, exits 2', async () => {
    const keysFile = join(dir, 'keys.yaml')
    writeFileSync(
      keysFile,
      `clients:
  - name: typo
    keyHash: "${keyHash('k1')}"
    scopes: [asset.veiw]
  - name: no-immich-key
    keyHash: "${keyHash('k2')}"
    scopes: [asset.view]
    upstreamKeyEnv: IGW_TEST_CHECK_UNSET
`
    )
    const configFile = join(dir, 'gateway.yaml')
    writeFileSync(
      configFile,
      `metrics:
  bearerTokenEnv: IGW_TEST_CHECK_TOKEN
policies:
  rate-limit:
    bogus: 1
  legacy-routes:
    file: ${join(dir, 'no-such-legacy.yaml')}
  jwt-auth:
    issuers:
      - name: idp
        issuer: https://idp.example
        audience: immich
        secretEnv: IGW_TEST_CHECK_SECRET
        upstreamKeyEnv: ${USER_KEY_ENV}
`
    )
    const run = await cli(['config', 'check', '--file', configFile, '--keys', keysFile])
    expect(run.code).toBe(2)
    const planted = [
      /metrics\.bearerTokenEnv: environment variable IGW_TEST_CHECK_TOKEN is not set/,
      /policies\.rate-limit: Unrecognized key: "bogus"/,
      /policies\.legacy-routes\.file: .*no-such-legacy\.yaml/,
      /policies\.jwt-auth\.issuers\[0\] \(idp\)\.secretEnv: environment variable IGW_TEST_CHECK_SECRET is not set/,
      /clients\[0\] \(typo\)\.scopes\[0\]: unknown scope "asset\.veiw"/,
      /client no-immich-key is disabled: environment variable IGW_TEST_CHECK_UNSET is not set/,
    ]
    for (const problem of planted) expect(run.stderr).toMatch(problem)
    expect(run.stderr).toMatch(/^immich-gateway: invalid configuration\n/)
  })

  it('a clean setup is "configuration ok" (exit 0) and a disabled client alone is a problem', async () => {
    const keysFile = join(dir, 'clean', 'keys.yaml')
    mkdirSync(join(dir, 'clean'))
    writeFileSync(
      keysFile,
      `clients:\n  - name: frame\n    keyHash: "${keyHash('k3')}"\n    scopes: [photo-frame]\n    upstreamKeyEnv: IMMICH_KEY_FRAME\n`
    )
    const ok = await checkConfiguration({ IMMICH_KEY_FRAME: 'x' }, { keys: keysFile })
    expect(formatCheck(ok)).toMatchObject({
      ok: true,
      stdout: expect.stringMatching(/configuration ok/),
    })
    const missing = await checkConfiguration({}, { keys: keysFile })
    expect(missing.problems).toEqual([
      `policies.api-key-auth: ${keysFile}: client frame is disabled: environment variable IMMICH_KEY_FRAME is not set`,
    ])
  })
})
