import { randomBytes } from 'node:crypto'

/** Every gateway key starts with this, so it is recognisable in a config or a leak scanner. */
export const GATEWAY_KEY_PREFIX = 'igw_'

/** `igw_` and 43 base64url characters: exactly what generateKey makes (256 random bits). */
export const GATEWAY_KEY_PATTERN = /^igw_[A-Za-z0-9_-]{43}$/

/** A new gateway key: `igw_` + base64url of 32 random bytes. */
export function generateKey(): string {
  return GATEWAY_KEY_PREFIX + randomBytes(32).toString('base64url')
}
