// The gateway configurations the benchmark runs, one gateway process each. A variant whose feature
// is not registered in policies/index.ts yet is skipped with the reason.
import { POLICIES } from '../policies/index.js';
import { configSchema } from '../src/config/schema.js';

export interface GatewayVariant {
  name: string;
  logLevel: 'warn' | 'info';
  /** Written as GATEWAY_CONFIG. */
  config: Record<string, unknown>;
  redisUrl?: string;
  env?: Record<string, string>;
  /** The key clients of this variant present as `x-api-key`. */
  gatewayKey?: string;
}

export type VariantOrSkip = GatewayVariant | { name: string; skip: string };

const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

/** Every registered policy switched off: the bare forwarding path. */
function allOff(registered: string[]): Record<string, false> {
  return Object.fromEntries(registered.map((name) => [name, false]));
}

export async function gatewayVariants(): Promise<Map<string, VariantOrSkip>> {
  const registered = POLICIES.map((p) => p.name);
  const has = (name: string) => registered.includes(name);
  const missing = (...names: string[]) => names.filter((n) => !has(n));
  const out = new Map<string, VariantOrSkip>();
  const add = (v: VariantOrSkip) => out.set(v.name, v);

  add({ name: 'gateway', logLevel: 'warn', config: { policies: allOff(registered) } });
  add({ name: 'gateway-info', logLevel: 'info', config: { policies: allOff(registered) } });

  const authNeeds = missing('api-key-auth', 'scopes', 'rate-limit');
  if (authNeeds.length) {
    const skip = `policy ${authNeeds.join(', ')} not registered in policies/index.ts`;
    for (const name of ['gateway-auth-mem', 'gateway-auth-redis', 'gateway-cache']) add({ name, skip });
  }

  const legacyNeeds = missing('legacy');
  if (legacyNeeds.length) add({ name: 'gateway-legacy', skip: 'policy legacy not registered in policies/index.ts' });
  else add({ name: 'gateway-legacy', logLevel: 'warn', config: { policies: { ...allOff(registered), legacy: {} } } });

  const metricsOff = configSchema.safeParse({ metrics: { enabled: false } });
  if (metricsOff.success) {
    add({ name: 'gateway-metrics-off', logLevel: 'warn', config: { metrics: { enabled: false }, policies: allOff(registered) } });
  } else {
    add({ name: 'gateway-metrics-off', skip: 'the config has no switch to turn metrics off (metrics.enabled)' });
  }
  void REDIS_URL;
  return out;
}
