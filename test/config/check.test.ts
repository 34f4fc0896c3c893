import { spawn } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { run } from '../../src/cli/index.js'
import { ConfigError, loadConfig } from '../../src/config/load.js'
import { startGateway } from '../../src/gateway.js'

/**
 * Issue 13 item 2: every value the gateway parses at start is checked by the configuration: a bad
 * one makes `config check` exit 2 naming the field, and the start exit 2 with the same message.
 */

const dir = mkdtempSync(join(tmpdir(), 'igw-check-'))
let n = 0
function configFile(text: string): string {
  const file = join(dir, `gateway-${n++}.yaml`)
  writeFileSync(file, text)
  return file
}

const CASES: [string, string, RegExp][] = [
  [
    'a trusted proxy that is not a CIDR',
    'server:\n  trustedProxies: ["10.0.0.0/8", "not-a-cidr"]\n',
    /^server\.trustedProxies\.1: "not-a-cidr" is not an IP address or CIDR/m,
  ],
  [
    'a trusted proxy prefix beyond /32',
    'server:\n  trustedProxies: ["10.0.0.0/33"]\n',
    /^server\.trustedProxies\.0: "10\.0\.0\.0\/33" has a bad prefix length/m,
  ],
  [
    'an IPv6 prefix beyond /128',
    'server:\n  trustedProxies: ["fd00::/129"]\n',
    /^server\.trustedProxies\.0: .* bad prefix length/m,
  ],
  [
    'a CIDR with two prefixes',
    'server:\n  trustedProxies: ["10.0.0.0/8/9"]\n',
    /^server\.trustedProxies\.0: .* bad prefix length/m,
  ],
  [
    'a listen address that is no host',
    'server:\n  host: "not a host"\n',
    /^server\.host: expected an IP address or a host name/m,
  ],
  [
    'a metrics address that is no host',
    'metrics:\n  host: "0.0.0.0:9464"\n',
    /^metrics\.host: expected an IP address or a host name/m,
  ],
  [
    'an upstream URL with a path',
    'upstream:\n  url: http://immich:2283/api\n',
    /^upstream\.url: expected no path/m,
  ],
  [
    'an upstream URL with a password (logged at start)',
    'upstream:\n  url: http://admin:hunter2@immich:2283\n',
    /^upstream\.url: expected no user:password/m,
  ],
  [
    'a Redis URL that is not redis://',
    'redis:\n  url: http://redis:6379\n',
    /^redis\.url: expected a redis:\/\/ or rediss:\/\/ URL/m,
  ],
  [
    'a JWKS URL that is not http(s)',
    'policies:\n  scopes: {}\n  jwt-auth:\n    issuers:\n      - name: idp\n        issuer: https://idp\n        audience: immich\n        jwksUri: file:///etc/jwks.json\n        upstreamKeyEnv: IGW_CHECK_KEY\n',
    /^policies\.jwt-auth\.issuers\.0\.jwksUri: expected an http:\/\/ or https:\/\/ URL/m,
  ],
  [
    'a keys file that does not exist',
    'policies:\n  api-key-auth:\n    keysFile: /nonexistent/keys.yaml\n',
    /^policies\.api-key-auth: .*nonexistent/m,
  ],
  [
    'a legacy rule that does not exist',
    'policies:\n  legacy-routes:\n    disabledRules: [no-such-rule]\n',
    /^policies\.legacy-routes\.disabledRules: no rule named no-such-rule/m,
  ],
  [
    'a websocket permission that Immich does not have',
    'policies:\n  scopes:\n    websocketPermission: nope.nope\n',
    /^policies\.scopes\.websocketPermission: /m,
  ],
  [
    'an issuer key env var that is not set',
    'policies:\n  jwt-auth:\n    issuers:\n      - name: idp\n        issuer: https://idp\n        audience: immich\n        jwksUri: https://idp/jwks\n        upstreamKeyEnv: IGW_CHECK_UNSET_VAR\n',
    /^policies\.jwt-auth\.issuers\[0\] \(idp\)\.upstreamKeyEnv: environment variable IGW_CHECK_UNSET_VAR is not set/m,
  ],
]

afterEach(() => {
  vi.restoreAllMocks()
  delete process.env.GATEWAY_CONFIG
})

/** `immich-gateway config check` in this process: its exit code and what it wrote to stderr. */
async function configCheck(file: string): Promise<{ code: number; stderr: string }> {
  process.env.GATEWAY_CONFIG = file
  let stderr = ''
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
    stderr += String(chunk)
    return true
  })
  vi.spyOn(process.stdout, 'write').mockImplementation(() => true)
  const code = await run(['config', 'check'])
  vi.restoreAllMocks()
  return { code, stderr }
}

/** What the start does with the same file: the ConfigError main.ts prints before exiting 2. */
async function start(file: string): Promise<string> {
  try {
    const gateway = await startGateway(loadConfig({ GATEWAY_CONFIG: file }))
    await gateway.close()
  } catch (err) {
    if (err instanceof ConfigError) return err.message
    throw err
  }
  return 'started'
}

describe('config check and the start refuse the same bad values, naming the field', () => {
  it.each(CASES)('%s', async (_label, yaml, message) => {
    const file = configFile(yaml)
    const check = await configCheck(file)
    expect(check.code).toBe(2)
    expect(check.stderr).toMatch(message)
    const startMessage = await start(file)
    expect(startMessage).toMatch(message)
    expect(check.stderr).toBe(`immich-gateway: invalid configuration\n${startMessage}\n`)
  })

  it('a good configuration passes the check', async () => {
    const file = configFile('server:\n  trustedProxies: ["10.0.0.0/8", "fd00::/8", "127.0.0.1"]\n')
    expect(await configCheck(file)).toEqual({ code: 0, stderr: '' })
  })
})

function exec(args: string[], file: string): Promise<{ code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', ...args], {
      env: { ...process.env, GATEWAY_CONFIG: file, PORT: '0' },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let stderr = ''
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 25_000)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stderr })
    })
  })
}

describe('the real processes', () => {
  it('`config check` and the start both exit 2 with the same message (a schema error, a boot check)', async () => {
    const cases = [CASES[0]!, CASES[10]!].map(([, yaml, message]) => ({
      file: configFile(yaml),
      message,
    }))
    const results = await Promise.all(
      cases.flatMap(({ file }) => [
        exec(['src/cli/index.ts', 'config', 'check'], file),
        exec(['src/main.ts'], file),
      ])
    )
    cases.forEach(({ message }, i) => {
      const [check, serve] = [results[2 * i]!, results[2 * i + 1]!]
      expect(check.code).toBe(2)
      expect(serve.code).toBe(2)
      expect(check.stderr).toMatch(message)
      expect(serve.stderr).toBe(check.stderr)
    })
  })
})
