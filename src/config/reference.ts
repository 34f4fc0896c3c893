import { readFileSync, writeFileSync } from 'node:fs'
import { stringify } from 'yaml'
import { packageFile } from '../paths.js'
import { z } from 'zod'
import { POLICIES } from '../../policies/index.js'
import { configSchema } from './schema.js'

type JsonSchema = {
  type?: string | string[]
  description?: string
  default?: unknown
  enum?: unknown[]
  properties?: Record<string, JsonSchema>
  required?: string[]
  additionalProperties?: JsonSchema | boolean
  items?: JsonSchema
  anyOf?: JsonSchema[]
  oneOf?: JsonSchema[]
  minimum?: number
  maximum?: number
}

function typeOf(s: JsonSchema): string {
  if (s.enum) return s.enum.map((v) => JSON.stringify(v)).join(' \\| ')
  const alternatives = s.anyOf ?? s.oneOf
  if (alternatives) return alternatives.map(typeOf).join(' \\| ')
  if (s.type === 'array') return `${s.items ? typeOf(s.items) : 'any'}[]`
  if (s.type === 'object' && s.additionalProperties && typeof s.additionalProperties === 'object')
    return 'map'
  return Array.isArray(s.type) ? s.type.join(' \\| ') : (s.type ?? 'any')
}

function rows(schema: JsonSchema, prefix: string, out: string[][]): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    const path = `${prefix}${key}`
    const nested = prop.properties ? prop : prop.items?.properties ? prop.items : undefined
    const mapOf =
      typeof prop.additionalProperties === 'object' && prop.additionalProperties.properties
        ? prop.additionalProperties
        : undefined
    if (nested && !prop.description) {
      rows(nested, `${path}${nested === prop ? '.' : '[].'}`, out)
      continue
    }
    const def = prop.default === undefined ? '' : `\`${JSON.stringify(prop.default)}\``
    out.push([
      `\`${path}\``,
      typeOf(prop),
      def,
      (prop.description ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' '),
    ])
    if (nested) rows(nested, `${path}${nested === prop ? '.' : '[].'}`, out)
    if (mapOf) rows(mapOf, `${path}.<name>.`, out)
  }
}

/** The configuration reference as a Markdown table: every option, its type, default and meaning. */
export function configReference(): string {
  const out: string[][] = []
  const core = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
  delete core.properties?.policies
  rows(core, '', out)
  for (const policy of POLICIES) {
    rows(
      z.toJSONSchema(policy.options, { io: 'input', unrepresentable: 'any' }) as JsonSchema,
      `policies.${policy.name}.`,
      out
    )
  }
  return [
    '| option | type | default | meaning |',
    '|---|---|---|---|',
    ...out.map((r) => `| ${r.join(' | ')} |`),
  ].join('\n')
}

/** A default as one YAML line: scalars plain, lists and maps in flow style (JSON is valid YAML). */
function yamlValue(value: unknown): string {
  return typeof value === 'object' && value !== null
    ? JSON.stringify(value)
    : stringify(value).trimEnd()
}

function exampleLines(schema: JsonSchema, indent: string, out: string[]): void {
  for (const [key, prop] of Object.entries(schema.properties ?? {})) {
    if (prop.description)
      for (const line of wrap(prop.description, 96 - indent.length)) out.push(`${indent}# ${line}`)
    const mapOf =
      typeof prop.additionalProperties === 'object' ? prop.additionalProperties : undefined
    if (prop.properties && Object.keys(prop.properties).length > 0) {
      const block: string[] = [`${indent}${key}:`]
      exampleLines(prop, `${indent}  `, block)
      // An optional section with no default (server.tls) switches a feature on by being present:
      // shown commented out, so the example stays what the defaults are.
      const off = prop.default === undefined && !schema.required?.includes(key)
      for (const line of block) {
        const text = line.trimStart()
        out.push(off && !text.startsWith('#') ? `${line.slice(0, -text.length)}# ${text}` : line)
      }
    } else if (prop.default !== undefined && !isEmptyCollection(prop.default)) {
      out.push(`${indent}${key}: ${yamlValue(prop.default)}`)
    } else if (mapOf?.properties) {
      out.push(`${indent}# ${key}:`, `${indent}#   <name>:`)
      for (const [field, sub] of Object.entries(mapOf.properties))
        out.push(`${indent}#     ${field}: ${placeholder(sub)}`)
    } else if (prop.items?.properties) {
      out.push(`${indent}# ${key}:`)
      let first = true
      for (const [field, sub] of Object.entries(prop.items.properties)) {
        out.push(`${indent}#   ${first ? '- ' : '  '}${field}: ${placeholder(sub)}`)
        first = false
      }
    } else if (prop.default !== undefined) {
      out.push(`${indent}${key}: ${yamlValue(prop.default)}`)
    } else {
      out.push(`${indent}# ${key}: ${placeholder(prop)}`)
    }
  }
}

function isEmptyCollection(value: unknown): boolean {
  return typeof value === 'object' && value !== null && Object.keys(value).length === 0
}

/** A commented-out option: its default, else its type in angle brackets. */
function placeholder(s: JsonSchema): string {
  return s.default !== undefined ? yamlValue(s.default) : `<${typeOf(s).replace(/ \\\| /g, ' | ')}>`
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = []
  let line = ''
  for (const word of text.split(/\s+/)) {
    if (line && line.length + word.length + 1 > width) {
      lines.push(line)
      line = word
    } else line = line ? `${line} ${word}` : word
  }
  if (line) lines.push(line)
  return lines
}

/** config/gateway.example.yaml: every option with its default (or commented out when it has none). */
export function configExample(): string {
  const out: string[] = [
    '# immich-gateway configuration (GATEWAY_CONFIG=path/to/this.yaml). Every option is shown with its',
    '# default; an option that has none is commented out. Environment variables (IMMICH_URL, PORT, HOST,',
    '# REDIS_URL, LOG_LEVEL, METRICS_PORT) override the file. Generated from the option schemas by',
    '# `immich-gateway config example`; a test keeps it in step with the code.',
    '',
  ]
  const core = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as JsonSchema
  delete core.properties?.policies
  exampleLines(core, '', out)
  out.push(
    '',
    '# Policies, by name (policies/index.ts). `false` switches one off: `thumbnail-cache: false`.',
    'policies:'
  )
  for (const policy of POLICIES) {
    out.push(`  ${policy.name}:`)
    exampleLines(
      z.toJSONSchema(policy.options, { io: 'input', unrepresentable: 'any' }) as JsonSchema,
      '    ',
      out
    )
  }
  return `${out.join('\n')}\n`
}

/** Rewrites config/gateway.example.yaml and the configuration reference (docs/configuration.md) from the schemas. */
export function writeConfigDocs(): string[] {
  writeFileSync(packageFile('config/gateway.example.yaml'), configExample())
  const readmeFile = packageFile('docs/configuration.md')
  const readme = readFileSync(readmeFile, 'utf8')
  const updated = readme.replace(
    /(<!-- config-reference:start -->\n)[\s\S]*?(\n<!-- config-reference:end -->)/,
    `$1${configReference()}$2`
  )
  writeFileSync(readmeFile, updated)
  return ['config/gateway.example.yaml', 'docs/configuration.md']
}
