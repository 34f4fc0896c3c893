/**
 * A user's own files and environment cannot change what the suite tests: a keys file in the working
 * directory, GATEWAY_KEYS_FILE, GATEWAY_CONFIG, GATEWAY_SCOPES_FILE and IMMICH_URL pointing at
 * poisoned files are all ignored by the suite's gateway builder.
 */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyHash } from '../../src/auth/hash.js'
import { generateKey } from '../../src/auth/keygen.js'
import { remember, tempDir } from '../policies/api-key-auth/support.js'
import { startStack, type Stack } from './stack.js'

const POISON = ['GATEWAY_KEYS_FILE', 'GATEWAY_CONFIG', 'GATEWAY_SCOPES_FILE', 'IMMICH_URL', 'PORT']

describe("the suite ignores the caller's working directory and environment", () => {
  const dir = tempDir('igw-poisoned-')
  const key = remember(generateKey())
  const cwd = process.cwd()
  const saved = Object.fromEntries(POISON.map((name) => [name, process.env[name]]))
  let stack: Stack

  beforeAll(async () => {
    // What a user's `keys add` leaves behind: a client needing a variable the tests lack.
    const keys = `clients:\n  - name: users-own\n    keyHash: "${keyHash(key)}"\n    scopes: [all]\n    upstreamKeyEnv: IMMICH_KEY_USERS_OWN\n`
    mkdirSync(join(dir, 'config'))
    writeFileSync(join(dir, 'config/keys.yaml'), keys)
    writeFileSync(join(dir, 'other-keys.yaml'), keys)
    writeFileSync(join(dir, 'gateway.yaml'), 'server:\n  prot: 1\n')
    writeFileSync(join(dir, 'scopes.yaml'), 'presets:\n  Bad Name: {}\n')
    process.chdir(dir)
    Object.assign(process.env, {
      GATEWAY_KEYS_FILE: join(dir, 'other-keys.yaml'),
      GATEWAY_CONFIG: join(dir, 'gateway.yaml'),
      GATEWAY_SCOPES_FILE: join(dir, 'scopes.yaml'),
      IMMICH_URL: 'http://127.0.0.1:9',
      PORT: '1',
    })
    stack = await startStack()
  })

  afterAll(async () => {
    await stack?.close()
    process.chdir(cwd)
    for (const [name, value] of Object.entries(saved))
      if (value === undefined) delete process.env[name]
      else process.env[name] = value
    rmSync(dir, { recursive: true, force: true })
  })

  it('starts, forwards to the fake Immich, and knows none of the poisoned keys', async () => {
    const ping = await request(`${stack.url}/api/server/ping`)
    expect(ping.statusCode).toBe(200)
    await ping.body.dump()
    const res = await request(`${stack.url}/api/users/me`, { headers: { 'x-api-key': key } })
    expect(res.statusCode).toBe(401)
    expect(await res.body.json()).toMatchObject({ message: 'Invalid API key' })
    expect(stack.logs.join('')).not.toContain('users-own')
  })
})
