import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { spawnSync } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { childEnv } from '../support/stack.js'
import { ConfigError, loadConfig } from '../../src/config/load.js'

function yamlFile(text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'igw-config-'))
  const file = join(dir, 'gateway.yaml')
  writeFileSync(file, text)
  return file
}

describe('loadConfig', () => {
  it('has working defaults with no file and no env', () => {
    const config = loadConfig({})
    expect(config.upstream.url).toBe('http://127.0.0.1:2283')
    expect(config.server.port).toBe(8080)
    expect(config.upstream.headersTimeoutSeconds).toBe(600)
    expect(config.redis.url).toBeUndefined()
    expect(config.metrics.host).toBe('127.0.0.1')
  })

  it('lets env override the file', () => {
    const file = yamlFile('server:\n  port: 9000\nupstream:\n  url: http://immich:2283\n')
    const config = loadConfig({
      GATEWAY_CONFIG: file,
      PORT: '9100',
      REDIS_URL: 'redis://r:6379',
      METRICS_PORT: '9464',
      LOG_LEVEL: 'warn',
      HOST: '::',
    })
    expect(config.server.port).toBe(9100)
    expect(config.upstream.url).toBe('http://immich:2283')
    expect(config.redis.url).toBe('redis://r:6379')
    expect(config.metrics.port).toBe(9464)
    expect(config.logging.level).toBe('warn')
    expect(config.server.host).toBe('::')
  })

  it.each([
    [{ PORT: 'eighty' }, /^PORT: expected a port number/],
    [{ PORT: '70000' }, /^server\.port \(env PORT\):/],
    [{ IMMICH_URL: 'not a url' }, /^upstream\.url \(env IMMICH_URL\):/],
    [{ IMMICH_URL: 'ftp://immich' }, /^upstream\.url \(env IMMICH_URL\): expected an http/],
    [{ LOG_LEVEL: 'loud' }, /^logging\.level \(env LOG_LEVEL\):/],
    [{ GATEWAY_CONFIG: '/nonexistent/gateway.yaml' }, /^GATEWAY_CONFIG: cannot read/],
  ])('names the field for %o', (env, message) => {
    expect(() => loadConfig(env)).toThrow(ConfigError)
    expect(() => loadConfig(env)).toThrow(message)
  })

  it.each([
    ['upstream:\n  headersTimeoutSeconds: -1\n', /^upstream\.headersTimeoutSeconds:/],
    ['server:\n  prot: 1\n', /server: Unrecognized key/],
    ['- a\n- b\n', /must hold a mapping/],
    ['server: [\n', /not valid YAML/],
  ])('names the field in a bad file', (text, message) => {
    expect(() => loadConfig({ GATEWAY_CONFIG: yamlFile(text) })).toThrow(message)
  })

  it('stops the real process with a clear message, exit code 2 and no stack trace', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
      env: childEnv({ PORT: 'eighty' }),
      encoding: 'utf8',
      timeout: 20_000,
    })
    expect(result.status).toBe(2)
    expect(result.stderr).toContain('PORT: expected a port number')
    expect(result.stderr).not.toMatch(/\n\s+at /)
  })
})
