import { createHash } from 'node:crypto'
import { isIP } from 'node:net'
import type { Principal } from '../env.js'

/**
 * The address part of a key. An IPv6 client usually holds a whole /64 (RFC 6177 hands sites /48-/56
 * and SLAAC picks any host part), so one budget covers the /64 — otherwise rotating addresses would
 * give an attacker a fresh budget per request.
 */
export function addressKey(ip: string): string {
  if (isIP(ip) !== 6) return ip
  const [head = '', tail = ''] = ip.split('%')[0]!.split('::')
  const left = head ? head.split(':') : []
  const right = ip.includes('::') && tail ? tail.split(':') : []
  const groups = ip.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`
}

/**
 * Whose budget a request spends: a gateway client by its configured name (all its keys share one
 * budget), a JWT subject or native credential by the upstream identity (a hash, never the secret),
 * a shared link per link and client address (one public link is viewed by many people, each of whom
 * gets the budget), and anyone else by client address (already resolved through trusted proxies).
 */
export function principalKey(principal: Principal, clientIp: string): string {
  switch (principal.kind) {
    case 'gateway-key':
      return `c:${principal.client}`
    case 'jwt':
    case 'native':
      return `u:${principal.upstreamIdentity}`
    case 'shared-link':
      return `s:${principal.upstreamIdentity}|ip:${addressKey(clientIp)}`
    default:
      return `ip:${addressKey(clientIp)}`
  }
}

/** A short one-way digest for values that must not appear in Redis keys (emails, share keys). */
export function digest(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22)
}
