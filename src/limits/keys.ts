import { createHash } from 'node:crypto';
import type { Principal } from '../env.js';

/**
 * Whose budget a request spends: a gateway client by its configured name (all its keys share one
 * budget), a JWT subject or native credential by the upstream identity (a hash, never the secret),
 * a shared link per link and client address (one public link is viewed by many people, each of whom
 * gets the budget), and anyone else by client address (already resolved through trusted proxies).
 */
export function principalKey(principal: Principal, clientIp: string): string {
  switch (principal.kind) {
    case 'gateway-key':
      return `c:${principal.client}`;
    case 'jwt':
    case 'native':
      return `u:${principal.upstreamIdentity}`;
    case 'shared-link':
      return `s:${principal.upstreamIdentity}|ip:${clientIp}`;
    default:
      return `ip:${clientIp}`;
  }
}

/** A short one-way digest for values that must not appear in Redis keys (emails, share keys). */
export function digest(value: string): string {
  return createHash('sha256').update(value).digest('base64url').slice(0, 22);
}
