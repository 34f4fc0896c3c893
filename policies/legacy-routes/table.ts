/**
 * The legacy table (config/legacy-routes.yaml): its schema, loader and compiled matcher.
 *
 * The legacy phase asks `match(method, path)` for every request. A non-legacy request is turned
 * away after one Set lookup of its first segment under `/api`; a candidate walks a per-method
 * segment trie. Matching follows Express, which old Immich ran on: static segments match
 * case-insensitively, params keep their case, one trailing slash is ignored, HEAD uses the GET
 * rules, a static segment beats a param (with backtracking) and a `where`-constrained param beats a
 * free one.
 */
import { stripCredentialQuery } from '../../src/auth/credentials.js'
import type { MultipartFillOptions } from './multipart-fill.js'
import { readFileSync } from 'node:fs'
import { parse as parseYaml } from 'yaml'
import { z } from 'zod'
import { GatewayError } from '../../src/errors.js'
import { bodyTransforms } from './body-transforms.js'
import { requestTransforms } from './request-transforms.js'
import { responseTransforms } from './response-transforms.js'
import {
  boundaryOf,
  FollowUp,
  type LegacyTransforms,
  type ResponseResult,
  type Step,
  type TransformContext,
  type UpstreamCall,
  type UpstreamReply,
} from './transforms.js'

/** The registry the legacy table names its transforms from. */
const legacyTransforms: LegacyTransforms = {
  request: requestTransforms,
  body: bodyTransforms,
  response: responseTransforms,
}

// ---------------------------------------------------------------------------------------------
// Schema

const ENDPOINT = /^(GET|POST|PUT|PATCH|DELETE) (\/[^\s?#]*)$/
const PARAM = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

const endpoint = z
  .string()
  .regex(ENDPOINT, 'expected "METHOD /path" (GET, POST, PUT, PATCH or DELETE)')
const transformName = z
  .string()
  .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'expected a kebab-case transform name')

const legacyRuleSchema = z
  .object({
    id: z
      .string()
      .regex(/^[a-z0-9]+(-[a-z0-9]+)*$/, 'expected a kebab-case id')
      .describe('Unique, stable; a metrics label.'),
    row: z
      .union([z.number().int().positive(), z.literal('1.5')])
      .describe('LEGACY.md row number, or "1.5" for its aliases.'),
    from: endpoint
      .refine((s) => /^\w+ \/api\//.test(s), 'the old path must start with /api/')
      .describe('Old method and path template.'),
    to: endpoint
      .optional()
      .describe('Current method and path template; params carried over by name.'),
    class: z
      .enum(['R', 'RW', 'X'])
      .describe('R pure rename, RW rename plus rewriting, X no faithful translation.'),
    existed: z.string().min(1).describe('Immich versions that served the old route.'),
    where: z
      .record(z.string(), z.enum(['uuid', 'not-uuid']))
      .optional()
      .describe('Param constraints.'),
    request: transformName.optional().describe('Request transform name.'),
    body: transformName.optional().describe('JSON request-body transform name.'),
    response: transformName.optional().describe('Response transform name.'),
    calls: z
      .array(endpoint)
      .optional()
      .describe('Extra upstream calls the body/response transforms may make.'),
    gone: z
      .object({ replacement: endpoint.optional(), message: z.string().min(1) })
      .strict()
      .optional()
      .describe('Answer 410 naming the replacement.'),
    fallback: z
      .object({ status: z.number().int().min(200).max(599), body: z.unknown() })
      .strict()
      .optional()
      .describe('Answer this without calling upstream.'),
    disabled: z.boolean().optional().describe('Keep the rule out of the matcher.'),
    note: z.string().optional(),
  })
  .strict()

const legacyTableSchema = z.object({ rules: z.array(legacyRuleSchema) }).strict()

export type LegacyRule = z.infer<typeof legacyRuleSchema>

export class LegacyTableError extends Error {
  override name = 'LegacyTableError'
}

interface Template {
  method: string
  path: string
  /** Path segments (`api` first), statics as written, params as `{name}`. */
  segments: string[]
  params: string[]
}

function parseTemplate(spec: string): Template {
  const m = ENDPOINT.exec(spec)
  if (m === null) throw new Error(`not "METHOD /path": ${spec}`)
  const path = m[2]!
  const segments = path.split('/').slice(1)
  const params: string[] = []
  for (const s of segments) {
    if (s === '') throw new Error(`empty path segment in ${path}`)
    const p = PARAM.exec(s)
    if (p !== null) {
      if (params.includes(p[1]!)) throw new Error(`param {${p[1]}} appears twice in ${path}`)
      params.push(p[1]!)
    } else if (s.includes('{') || s.includes('}')) {
      throw new Error(`a param must be a whole segment: ${s}`)
    }
  }
  return { method: m[1]!, path, segments, params }
}

/** Does the (enabled or not) rule make sense on its own, with the given transforms? */
function ruleProblems(
  rule: LegacyRule,
  transforms: LegacyTransforms
): { field: string; message: string }[] {
  const problems: { field: string; message: string }[] = []
  const add = (field: string, message: string): void => void problems.push({ field, message })
  let from: Template | undefined
  try {
    from = parseTemplate(rule.from)
  } catch (err) {
    add('from', (err as Error).message)
  }
  const answers = [rule.to, rule.gone, rule.fallback].filter((x) => x !== undefined).length
  if (answers !== 1) add('to', 'exactly one of to, gone, fallback is required')
  if (rule.to !== undefined) {
    try {
      const to = parseTemplate(rule.to)
      for (const p of to.params)
        if (from !== undefined && !from.params.includes(p))
          add('to', `uses {${p}}, which is not in from`)
    } catch (err) {
      add('to', (err as Error).message)
    }
  } else {
    for (const f of ['request', 'body', 'response', 'calls'] as const) {
      if (rule[f] !== undefined) add(f, 'only a rule with `to` can have transforms or calls')
    }
  }
  if (rule.class === 'R') {
    if (rule.to === undefined) add('to', 'a pure rename (R) needs `to`')
    for (const f of ['request', 'response', 'calls'] as const) {
      if (rule[f] !== undefined)
        add(f, 'a pure rename (R) has no request/response transform or calls')
    }
  }
  if (rule.calls !== undefined && rule.body === undefined && rule.response === undefined) {
    add('calls', 'calls are made by body or response transforms; this rule has neither')
  }
  for (const [name, constraint] of Object.entries(rule.where ?? {})) {
    if (from !== undefined && !from.params.includes(name))
      add('where', `{${name}} (${constraint}) is not a param of from`)
  }
  if (rule.request !== undefined && !(rule.request in transforms.request))
    add('request', `unknown request transform "${rule.request}"`)
  if (rule.body !== undefined && !(rule.body in transforms.body))
    add('body', `unknown body transform "${rule.body}"`)
  if (rule.response !== undefined && !(rule.response in transforms.response)) {
    add('response', `unknown response transform "${rule.response}"`)
  }
  return problems
}

/**
 * Validates a parsed legacy table: the schema (strict), then each rule's cross-field rules, named
 * transforms and params, then unique ids. Errors name the rule index, id and field.
 */
export function validateLegacyTable(
  data: unknown,
  transforms: LegacyTransforms = legacyTransforms,
  source = 'legacy table'
): LegacyRule[] {
  const parsed = legacyTableSchema.safeParse(data)
  if (!parsed.success) {
    const rules = (data as { rules?: unknown[] } | null)?.rules
    const lines = parsed.error.issues.map((issue) => {
      const [top, index, ...rest] = issue.path
      if (top === 'rules' && typeof index === 'number') {
        const id = (rules?.[index] as { id?: unknown } | undefined)?.id
        const label = typeof id === 'string' ? ` (${id})` : ''
        const field = rest.length > 0 ? `.${rest.join('.')}` : ''
        return `rules[${index}]${label}${field}: ${issue.message}`
      }
      return `${issue.path.join('.') || '(root)'}: ${issue.message}`
    })
    throw new LegacyTableError(`Invalid ${source}:\n  ${lines.join('\n  ')}`)
  }
  const rules = parsed.data.rules
  const lines: string[] = []
  const seen = new Map<string, number>()
  rules.forEach((rule, i) => {
    for (const p of ruleProblems(rule, transforms))
      lines.push(`rules[${i}] (${rule.id}).${p.field}: ${p.message}`)
    const first = seen.get(rule.id)
    if (first !== undefined) lines.push(`rules[${i}] (${rule.id}).id: duplicate of rules[${first}]`)
    else seen.set(rule.id, i)
  })
  if (lines.length > 0) throw new LegacyTableError(`Invalid ${source}:\n  ${lines.join('\n  ')}`)
  return rules
}

/** Reads and validates config/legacy-routes.yaml (or any file in that format). */
export function loadLegacyTable(
  file: string,
  transforms: LegacyTransforms = legacyTransforms
): LegacyRule[] {
  let data: unknown
  try {
    data = parseYaml(readFileSync(file, 'utf8'))
  } catch (err) {
    throw new LegacyTableError(`Cannot read legacy table ${file}: ${(err as Error).message}`)
  }
  return validateLegacyTable(data, transforms, file)
}

// ---------------------------------------------------------------------------------------------
// Compiled table

export interface RewriteOptions {
  /** The request's Content-Type (multipart boundary for upload prefixes). */
  contentType?: string
  /** Request time, for transforms that default a date. */
  now?: Date
}

/** Forward the translated request upstream. */
export interface LegacyForward {
  kind: 'forward'
  method: string
  /** Current path, params substituted (as received, still percent-encoded). */
  path: string
  /** Raw query with its leading `?`, or ''. The old one byte-for-byte unless a transform changed it. */
  query: string
  /** Send this JSON as the body (Content-Type application/json) instead of the client's. */
  jsonBody?: unknown
  /** The old method carried a body the new GET must not send. */
  dropBody: boolean
  /** Fill missing fields into the client's streamed multipart form (src/upstream/multipart-fill.ts). */
  multipartFill?: MultipartFillOptions
  /** Rewrites the client's JSON body (read it, small bodies only; undefined when there is none). */
  transformBody?: (body: unknown) => Step<unknown>
  /** Rewrites the upstream answer back into the old shape. */
  transformResponse?: (status: number, body: unknown) => Step<ResponseResult>
  /** Current path and query without credential params, for a `Link: <…>; rel="successor-version"` header. */
  successor: string
}

/** Answer without calling upstream (a table fallback, or a variant with a known answer). */
export interface LegacyRespond {
  kind: 'respond'
  status: number
  body: unknown
}

export type LegacyOutcome = LegacyForward | LegacyRespond

export interface LegacyHit {
  rule: LegacyRule
  /** Params of the old path, percent-decoded. */
  params: Readonly<Record<string, string>>
  /**
   * The current request for this old one. `query` is the raw query (`?a=b` or ''). Throws
   * GatewayError 410 for a rule that is `gone` (or a variant a transform cannot translate).
   */
  rewrite(query: string, options?: RewriteOptions): LegacyOutcome
  /** Is this follow-up call one the rule declared in `calls`? */
  allowsCall(call: UpstreamCall): boolean
}

export interface LegacyTable {
  /** `path` without the query. Undefined when no enabled rule matches. */
  match(method: string, path: string): LegacyHit | undefined
  /** The enabled rules, in file order. */
  readonly rules: readonly LegacyRule[]
}

interface Compiled {
  rule: LegacyRule
  from: Template
  to: Template | undefined
  where: [index: number, uuid: boolean][]
  /** HEAD may use this GET rule: a plain GET target without body/response rewriting. */
  headable: boolean
  calls: Template[]
}

interface Node {
  statics: Map<string, Node> | undefined
  param: Node | undefined
  /** Constrained rules first. */
  terminals: Compiled[]
}

const newNode = (): Node => ({ statics: undefined, param: undefined, terminals: [] })

function insert(root: Node, compiled: Compiled, index: number): void {
  let node = root
  for (const s of compiled.from.segments.slice(1)) {
    if (PARAM.test(s)) {
      node = node.param ??= newNode()
    } else {
      const statics = (node.statics ??= new Map())
      const key = s.toLowerCase()
      let child = statics.get(key)
      if (child === undefined) statics.set(key, (child = newNode()))
      node = child
    }
  }
  const signature = (c: Compiled): string => c.where.map(([i, u]) => `${i}:${u}`).join(',')
  const clash = node.terminals.find((t) => signature(t) === signature(compiled))
  if (clash !== undefined) {
    throw new LegacyTableError(
      `rules[${index}] (${compiled.rule.id}).from: ${compiled.rule.from} matches the same requests as ${clash.rule.id} (${clash.rule.from})`
    )
  }
  node.terminals.push(compiled)
  node.terminals.sort((a, b) => b.where.length - a.where.length)
}

function decode(value: string): string | undefined {
  let decoded = value
  if (value.includes('%')) {
    try {
      decoded = decodeURIComponent(value)
    } catch {
      return undefined
    }
  }
  // A param is one segment: nothing that could move the path once substituted elsewhere.
  if (decoded === '.' || decoded === '..' || /[/\\\0]/.test(decoded)) return undefined
  return decoded
}

function walk(
  node: Node,
  segments: string[],
  i: number,
  values: string[],
  head: boolean
): Compiled | undefined {
  if (i === segments.length) {
    return node.terminals.find(
      (t) =>
        (!head || t.headable) &&
        t.where.every(([index, uuid]) => UUID.test(values[index]!) === uuid)
    )
  }
  const segment = segments[i]!
  if (segment === '') return undefined
  const child = node.statics?.get(segment) ?? node.statics?.get(segment.toLowerCase())
  if (child !== undefined) {
    const found = walk(child, segments, i + 1, values, head)
    if (found !== undefined) return found
  }
  if (node.param !== undefined) {
    values.push(segment)
    const found = walk(node.param, segments, i + 1, values, head)
    if (found !== undefined) return found
    values.pop()
  }
  return undefined
}

function fill(template: Template, raw: Record<string, string>): string {
  const segments = template.segments.map((s) => {
    const p = PARAM.exec(s)
    return p === null ? s : raw[p[1]!]!
  })
  return `/${segments.join('/')}`
}

function matchesTemplate(template: Template, method: string, path: string): boolean {
  if (method.toUpperCase() !== template.method) return false
  const segments = path.split('/').slice(1)
  return (
    segments.length === template.segments.length &&
    template.segments.every((s, i) =>
      PARAM.test(s) ? segments[i] !== '' : s.toLowerCase() === segments[i]!.toLowerCase()
    )
  )
}

/** `/api/stacks/{id}` style replacements are not URLs; only a concrete one goes in a Link header. */
function goneError(gone: NonNullable<LegacyRule['gone']>): GatewayError {
  const headers: Record<string, string> = {}
  const replacement =
    gone.replacement === undefined ? undefined : ENDPOINT.exec(gone.replacement)?.[2]
  if (replacement !== undefined && !replacement.includes('{'))
    headers['Link'] = `<${replacement}>; rel="successor-version"`
  return new GatewayError(410, 'LEGACY_ROUTE_GONE', gone.message, headers)
}

function rawQueryOf(query: URLSearchParams): string {
  const s = query.toString()
  return s === '' ? '' : `?${s}`
}

/**
 * Compiles the enabled rules. Checks each rule again (so a table built in code is held to the
 * file's rules) and refuses two rules that match the same requests.
 */
export function compileLegacyTable(
  rules: readonly LegacyRule[],
  transforms: LegacyTransforms = legacyTransforms
): LegacyTable {
  validateLegacyTable({ rules }, transforms)
  const tries = new Map<string, Node>()
  /** Per method, the lower-cased first segments under /api that some rule starts with. */
  const prefixes = new Map<string, Set<string>>()
  const enabled: LegacyRule[] = []

  rules.forEach((rule, index) => {
    if (rule.disabled === true) return
    enabled.push(rule)
    const from = parseTemplate(rule.from)
    const to = rule.to === undefined ? undefined : parseTemplate(rule.to)
    const where = Object.entries(rule.where ?? {}).map(([name, c]): [number, boolean] => [
      from.params.indexOf(name),
      c === 'uuid',
    ])
    const compiled: Compiled = {
      rule,
      from,
      to,
      where,
      headable:
        from.method === 'GET' &&
        to?.method === 'GET' &&
        rule.body === undefined &&
        rule.response === undefined,
      calls: (rule.calls ?? []).map(parseTemplate),
    }
    let firsts = prefixes.get(from.method)
    if (firsts === undefined) prefixes.set(from.method, (firsts = new Set()))
    firsts.add(from.segments[1]!.toLowerCase())
    let root = tries.get(from.method)
    if (root === undefined) tries.set(from.method, (root = newNode()))
    insert(root, compiled, index)
  })

  function hit(compiled: Compiled, values: string[], head: boolean): LegacyHit | undefined {
    const raw: Record<string, string> = {}
    const params: Record<string, string> = {}
    for (let i = 0; i < compiled.from.params.length; i++) {
      const name = compiled.from.params[i]!
      const decoded = decode(values[i]!)
      if (decoded === undefined) return undefined
      raw[name] = values[i]!
      params[name] = decoded
    }
    const { rule, to } = compiled
    return {
      rule,
      params,
      allowsCall: (call) => compiled.calls.some((t) => matchesTemplate(t, call.method, call.path)),
      rewrite(query: string, options: RewriteOptions = {}): LegacyOutcome {
        if (rule.gone !== undefined) throw goneError(rule.gone)
        if (rule.fallback !== undefined)
          return { kind: 'respond', status: rule.fallback.status, body: rule.fallback.body }
        const target = to!
        const search = query.startsWith('?') ? query.slice(1) : query
        const fields: Record<string, string> = {}
        const ctx = (): TransformContext => {
          const c: TransformContext = { params, query: new URLSearchParams(search), fields }
          if (options.now !== undefined) c.now = options.now
          return c
        }
        let method = target.method
        let path = fill(target, raw)
        let outQuery = query
        const out: LegacyForward = {
          kind: 'forward',
          method,
          path,
          query,
          dropBody: false,
          successor: '',
        }
        if (rule.request !== undefined) {
          const t = transforms.request[rule.request]!({
            method,
            path,
            params,
            query: new URLSearchParams(search),
            ...(options.contentType !== undefined ? { contentType: options.contentType } : {}),
            ...(options.now !== undefined ? { now: options.now } : {}),
          })
          if (t.respond !== undefined)
            return { kind: 'respond', status: t.respond.status, body: t.respond.body }
          if (t.method !== undefined) method = t.method
          if (t.path !== undefined) path = t.path
          if (t.query !== undefined) outQuery = rawQueryOf(t.query)
          if (t.jsonBody !== undefined) out.jsonBody = t.jsonBody
          if (t.multipartFill !== undefined) {
            const boundary = boundaryOf(options.contentType)
            if (boundary !== undefined)
              out.multipartFill = { boundary, ...t.multipartFill, captured: fields }
          }
        }
        if (head) {
          // HEAD rides on GET rules only while the translation stays a GET.
          if (method !== 'GET')
            throw new GatewayError(
              405,
              'METHOD_NOT_ALLOWED',
              `Cannot HEAD ${compiled.rule.from.split(' ')[1]}`
            )
          method = 'HEAD'
        }
        const oldMethod = compiled.from.method
        out.method = method
        out.path = path
        out.query = outQuery
        out.dropBody =
          out.jsonBody === undefined &&
          (method === 'GET' || method === 'HEAD') &&
          oldMethod !== 'GET'
        out.successor = stripCredentialQuery(`${path}${outQuery}`)
        if (rule.body !== undefined) {
          const transform = transforms.body[rule.body]!
          out.transformBody = (body) => transform(body, ctx())
        }
        if (rule.response !== undefined) {
          const transform = transforms.response[rule.response]!
          out.transformResponse = (status, body) => transform(status, body, ctx())
        }
        return out
      },
    }
  }

  return {
    rules: enabled,
    match(method: string, path: string): LegacyHit | undefined {
      // `/api/<first>/...`: anything whose first segment no rule of its method starts with is out
      // after one Set lookup.
      if (
        path.length < 6 ||
        path.charCodeAt(4) !== 47 /* / */ ||
        path.slice(0, 4).toLowerCase() !== '/api'
      )
        return undefined
      const upper = method.toUpperCase()
      const head = upper === 'HEAD'
      const key = head ? 'GET' : upper
      const firsts = prefixes.get(key)
      if (firsts === undefined) return undefined
      const end = path.indexOf('/', 5)
      const first = end === -1 ? path.slice(5) : path.slice(5, end)
      if (!firsts.has(first) && !firsts.has(first.toLowerCase())) return undefined
      const root = tries.get(key)!
      const trimmed = path.charCodeAt(path.length - 1) === 47 ? path.slice(0, -1) : path
      const segments = trimmed.split('/')
      const values: string[] = []
      const compiled = walk(root, segments, 2, values, head)
      return compiled === undefined ? undefined : hit(compiled, values, head)
    },
  }
}

// ---------------------------------------------------------------------------------------------
// Follow-up calls

export interface RunStepsOptions {
  /** Refuse calls the rule did not declare (use `hit.allowsCall`). */
  allow?: (call: UpstreamCall) => boolean
  /** At most this many upstream calls (default 100: 100 000 assets at 1000 a page). */
  maxCalls?: number
}

/**
 * Drives a transform's follow-up calls: `send` makes one upstream call (authorized and
 * authenticated as the request itself) and resolves with its status and parsed JSON body.
 */
export async function runSteps<T>(
  step: Step<T>,
  send: (call: UpstreamCall) => Promise<UpstreamReply>,
  options: RunStepsOptions = {}
): Promise<T> {
  const max = options.maxCalls ?? 100
  let current = step
  for (let calls = 0; current instanceof FollowUp; calls++) {
    if (calls >= max)
      throw new GatewayError(
        502,
        'LEGACY_TOO_MANY_CALLS',
        'The legacy translation needed too many upstream calls'
      )
    const { call } = current
    if (options.allow !== undefined && !options.allow(call)) {
      throw new Error(`Legacy transform called an undeclared route: ${call.method} ${call.path}`)
    }
    current = current.then(await send(call))
  }
  return current
}
