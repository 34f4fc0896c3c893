import { mkdtempSync } from 'node:fs'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { stringify } from 'yaml'
import { keyHash } from '../../../src/auth/hash.js'
import { generateKey } from '../../../src/auth/keygen.js'
import { writeFileAtomic, type ClientEntry } from '../../../src/auth/keys-file.js'
import { secretsIn } from '../../support/secret-spellings.js'
import { auditSecret, capturedLogLines } from '../../support/stack.js'

/** Env vars holding the fake Immich's keys: what the gateway injects upstream in these tests. */
export const USER_KEY_ENV = 'IGW_TEST_UPSTREAM_USER_KEY'
export const ADMIN_KEY_ENV = 'IGW_TEST_UPSTREAM_ADMIN_KEY'
process.env[USER_KEY_ENV] = 'fake-user-key'
process.env[ADMIN_KEY_ENV] = 'fake-admin-key'

/** Every secret a test made or used; none may ever show up in a log line. */
export const secrets = new Set<string>(['fake-user-key', 'fake-admin-key'])
for (const secret of secrets) auditSecret(secret)

export function remember<T extends string>(secret: T): T {
  secrets.add(secret)
  auditSecret(secret)
  return secret
}

/** The secrets found, in any spelling, in any log line captured so far in this test file. */
export function leakedSecrets(lines: readonly string[] = capturedLogLines): string[] {
  return secretsIn(lines, secrets)
}

export function tempDir(prefix = 'igw-keys-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

export type ClientSpec = Omit<ClientEntry, 'keyHash' | 'upstreamKeyEnv'> & {
  upstreamKeyEnv?: string
}

/** A client entry with a freshly generated key (remembered as a secret). */
export function client(spec: ClientSpec): { key: string; entry: ClientEntry } {
  const key = remember(generateKey())
  return { key, entry: { upstreamKeyEnv: USER_KEY_ENV, ...spec, keyHash: keyHash(key) } }
}

export function writeKeys(file: string, entries: ClientEntry[]): void {
  writeFileAtomic(file, stringify({ clients: entries }))
}

export interface RawResponse {
  status: number
  head: string
  body: string
}

/**
 * One request over a raw socket, bytes exactly as given: no client library normalises `..`, `//`
 * or header bytes on the way.
 */
export function rawRequest(url: string, requestHead: string | Buffer): Promise<RawResponse> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname)
    const chunks: Buffer[] = []
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', reject)
    socket.on('close', () => {
      const text = Buffer.concat(chunks).toString('latin1')
      const match = /^HTTP\/1\.1 (\d{3})/.exec(text)
      if (!match)
        return reject(new Error(`no HTTP response: ${JSON.stringify(text.slice(0, 200))}`))
      const split = text.indexOf('\r\n\r\n')
      resolve({ status: Number(match[1]), head: text.slice(0, split), body: text.slice(split + 4) })
    })
    socket.write(requestHead)
  })
}

/** `GET path` with extra header lines, `Connection: close`. */
export function rawGet(
  url: string,
  method: string,
  path: string,
  headers: Record<string, string> = {}
): Promise<RawResponse> {
  const lines = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('')
  return rawRequest(
    url,
    `${method} ${path} HTTP/1.1\r\nHost: gateway\r\n${lines}Connection: close\r\n\r\n`
  )
}
