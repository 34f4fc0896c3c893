import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { loadConfig } from '../../src/config/load.js'
import { configExample, configReference } from '../../src/config/reference.js'
import { validatePolicyOptions } from '../../policies/index.js'
import { packageFile } from '../../src/paths.js'

describe('the documented configuration is the real one', () => {
  it('config/gateway.example.yaml is what `immich-gateway config example` prints (`npm run docs` refreshes it)', () => {
    expect(readFileSync(packageFile('config/gateway.example.yaml'), 'utf8')).toBe(configExample())
  })

  it('the example loads as a valid configuration, policies included', () => {
    const config = loadConfig({ GATEWAY_CONFIG: packageFile('config/gateway.example.yaml') })
    expect(() => validatePolicyOptions(config)).not.toThrow()
    expect(
      Object.keys(parse(readFileSync(packageFile('config/gateway.example.yaml'), 'utf8')).policies)
    ).toEqual(Object.keys(config.policies))
  })

  it('docs/configuration.md holds what `immich-gateway config reference` prints (`npm run docs`)', () => {
    const readme = readFileSync(packageFile('docs/configuration.md'), 'utf8')
    const section =
      /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(readme)?.[1]
    expect(section).toBe(configReference())
  })
})
