import { createHash } from 'node:crypto'

/**
 * Recent digests: the same few credentials arrive on every request of a client, and a Map lookup
 * is an order of magnitude cheaper than hashing again. Bounded: emptied when full.
 */
const recent = new Map<string, string>()
const RECENT_MAX = 4096

/** Lower-case hex sha-256 of a UTF-8 string. */
export function sha256Hex(value: string): string {
  let digest = recent.get(value)
  if (digest === undefined) {
    digest = createHash('sha256').update(value, 'utf8').digest('hex')
    if (recent.size >= RECENT_MAX) recent.clear()
    recent.set(value, digest)
  }
  return digest
}

/**
 * The identity a credential stands for, as cache and rate-limit keys see it: a prefix (`u:` for an
 * injected upstream key, `n:` for a native credential) and 128 bits of its sha-256. Never the secret.
 */
export function credentialIdentity(prefix: 'u:' | 'n:', credential: string): string {
  return prefix + sha256Hex(credential).slice(0, 32)
}

/** `sha256:<64 hex>` as written in the keys file. */
export const KEY_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/

/** The keys-file form of a key's hash. */
export function keyHash(key: string): string {
  return `sha256:${sha256Hex(key)}`
}
