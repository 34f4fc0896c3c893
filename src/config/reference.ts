import { z } from 'zod';
import { POLICIES } from '../../policies/index.js';
import { configSchema } from './schema.js';

type JsonSchema = {
  type?: string | string[];
  description?: string;
  default?: unknown;
  enum?: unknown[];
  properties?: Record<string, JsonSchema>;
  additionalProperties?: JsonSchema | boolean;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  minimum?: number;
  maximum?: number;
};

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ');
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives) return alternatives.map(typeOf).join(' \\| ');
  if (s.type === 'array') return `${s.items ? typeOf(s.items) : 'any'}[]`;
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object') return 'map';
  return Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any');
}

function rows(schema: JsonSchema, prefix: string, out: string[][]): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const path = `${prefix}${key}`;
    const nested = prop.properties ? prop : prop.items?.properties ? prop.items : undefined;
    const mapOf = typeof prop.additionalProperties === 'object' && prop.additionalProperties.properties ? prop.additionalProperties : undefined;
    if (nested && !prop.description) {
      rows(nested, `${path}${nested === prop ? '.' : '[].'}`, out);
      continue;
    }
    const def = prop.default === undefined ? '' : `\`${JSON.stringify(prop.default)}\``;
    out.push([`\`${path}\``, typeOf(prop), def, (prop.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ')]);
    if (nested) rows(nested, `${path}${nested === prop ? '.' : '[].'}`, out);
    if (mapOf) rows(mapOf, `${path}.<name>.`, out);
  }
}

/** The configuration reference as a Markdown table: every option, its type, default and meaning. */
export function configReference(): string {
  const out: string[][] = [];
  const core = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema;
  delete core.properties?.policies;
  rows(core, '', out);
  for (const policy of POLICIES) {
    rows(z.toJSONSchema(policy.options, { io: 'input', unrepresentable: 'any' }) as JsonSchema, `policies.${policy.name}.`, out);
  }
  return ['| option | type | default | meaning |', '|---|---|---|---|', ...out.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}
