import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { configSchema, type GatewayConfig } from './schema.js';

/** A configuration problem: printed as one clear line at startup, never with a stack trace. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Formats zod issues as `field.path: what was expected` lines. */
export function describeIssues(error: z.ZodError, prefix = ''): string {
  return error.issues
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter(Boolean).join('.');
      return `${path || '(root)'}: ${issue.message}`;
    })
    .join('\n');
}

type Env = Record<string, string | undefined>;

function setIn(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    node = (typeof next === 'object' && next !== null ? next : (node[key] = {})) as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function asPort(name: string, raw: string): number {
  if (!/^\d+$/.test(raw)) throw new ConfigError(`${name}: expected a port number (0-65535), got "${raw}"`);
  return Number(raw);
}

/** Environment variables that override the file, and where they land. */
function applyEnv(raw: Record<string, unknown>, env: Env): void {
  if (env.IMMICH_URL) setIn(raw, ['upstream', 'url'], env.IMMICH_URL);
  if (env.PORT) setIn(raw, ['server', 'port'], asPort('PORT', env.PORT));
  if (env.HOST) setIn(raw, ['server', 'host'], env.HOST);
  if (env.REDIS_URL) setIn(raw, ['redis', 'url'], env.REDIS_URL);
  if (env.LOG_LEVEL) setIn(raw, ['logging', 'level'], env.LOG_LEVEL);
  if (env.METRICS_PORT) setIn(raw, ['metrics', 'port'], asPort('METRICS_PORT', env.METRICS_PORT));
}

/** Reads GATEWAY_CONFIG (YAML or JSON) if set, applies env overrides, validates. Throws ConfigError. */
export function loadConfig(env: Env = process.env): GatewayConfig {
  let raw: Record<string, unknown> = {};
  const file = env.GATEWAY_CONFIG;
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError(`GATEWAY_CONFIG: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
    let parsed: unknown;
    try {
      parsed = parseYaml(text);
    } catch (err) {
      throw new ConfigError(`GATEWAY_CONFIG: ${file} is not valid YAML/JSON: ${(err as Error).message.split('\n')[0]}`);
    }
    if (parsed != null && (typeof parsed !== 'object' || Array.isArray(parsed))) {
      throw new ConfigError(`GATEWAY_CONFIG: ${file} must hold a mapping of options at its top level`);
    }
    raw = (parsed ?? {}) as Record<string, unknown>;
  }
  applyEnv(raw, env);
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError(describeIssues(result.error));
  return result.data;
}
