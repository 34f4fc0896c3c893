import { createHash } from 'node:crypto';

/** Lower-case hex sha-256 of a UTF-8 string. */
export function sha256Hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex');
}

/**
 * The identity a credential stands for, as cache and rate-limit keys see it: a prefix (`u:` for an
 * injected upstream key, `n:` for a native credential) and 128 bits of its sha-256. Never the secret.
 */
export function credentialIdentity(prefix: 'u:' | 'n:', credential: string): string {
  return prefix + sha256Hex(credential).slice(0, 32);
}

/** `sha256:<64 hex>` as written in the keys file. */
export const KEY_HASH_PATTERN = /^sha256:[0-9a-f]{64}$/;

/** The keys-file form of a key's hash. */
export function keyHash(key: string): string {
  return `sha256:${sha256Hex(key)}`;
}
