/**
 * A small, dependency-free PromQL reader for checking the dashboard and the alert rules against the
 * metrics the gateway really exports.
 *
 * - `extractSelectors(expr)`: which metric series an expression reads, and which of their labels it
 *   depends on (matchers, `by`/`without`, `on`/`group_left`/`group_right`, `label_replace` sources,
 *   `le` under `histogram_quantile`).
 * - `collectExpressions()`: every PromQL expression of docs/grafana/immich-gateway.dashboard.json and
 *   docs/prometheus/alerts.yaml, with where it came from.
 * - `catalogFromRegistry()` / `catalogFromExposition()` + `checkAgainstCatalog()`: the static check
 *   (declared metrics) and the live check (a scraped `/metrics` text) share one checker;
 *   `checkAgainstExposition(text, exprs)` is the live one in one call.
 *
 * It parses the PromQL subset a dashboard uses (all of it, in practice): selectors, range vectors,
 * subqueries, offset/@, functions, aggregations with parameters, binary operators with
 * bool/on/ignoring/group_left/group_right. It does not evaluate anything.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse as parseYaml } from 'yaml'

// ---------------------------------------------------------------------------------------------
// Public types

/** A metric series an expression reads, with the label names it depends on (sorted, no `__name__`). */
export interface Selector {
  metric: string
  labels: string[]
}

/** One occurrence of a selector, with the function directly applied to it (`rate`, `increase`, …). */
export interface SelectorUse extends Selector {
  /** Label names that appear in the selector's own matchers. */
  matcherLabels: string[]
  /** Innermost function the selector is an argument of, if any (aggregations do not count). */
  fn?: string
}

export interface CollectedExpression {
  /** The text as written in the file. */
  expr: string
  /** PromQL to analyse: Grafana variables substituted, `label_values(m, l)` rewritten as `count by (l) (m)`. */
  promql: string
  /** Human-readable origin, e.g. `dashboard: panel "Requests by route" (id 3) target A`. */
  source: string
  file: 'dashboard' | 'alerts'
  kind: 'target' | 'variable' | 'annotation' | 'alert' | 'record'
  /** For recording rules: the series the rule defines. */
  defines?: string
}

export class PromQLParseError extends Error {
  constructor(
    message: string,
    readonly expr: string,
    readonly position: number
  ) {
    super(`${message} at ${position} in: ${expr}`)
    this.name = 'PromQLParseError'
  }
}

// ---------------------------------------------------------------------------------------------
// Grafana variables

/** Value substituted for Grafana's interval variables (a valid PromQL duration). */
const INTERVAL = '5m'
const BUILTINS: Record<string, string> = {
  __rate_interval: INTERVAL,
  __interval: INTERVAL,
  __range: '1h',
  __auto: INTERVAL,
  __rate_interval_ms: '300000',
  __interval_ms: '300000',
  __range_ms: '3600000',
  __range_s: '3600',
}

/**
 * Replaces Grafana variables (`$__rate_interval`, `${__range}`, `$client`, `${route:regex}`,
 * `[[client]]`) with values PromQL accepts: durations for the interval builtins, `.*` for the rest
 * (which only parses inside a string, so a variable used outside a matcher is reported).
 * `$1` (a label_replace back-reference) is left alone.
 */
export function substituteGrafanaVariables(expr: string): string {
  const value = (name: string): string => BUILTINS[name] ?? '.*'
  return expr
    .replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}/g, (_m, name: string) => value(name))
    .replace(/\[\[([A-Za-z_][A-Za-z0-9_]*)(?::[^\]]*)?\]\]/g, (_m, name: string) => value(name))
    .replace(/\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, name: string) => value(name))
}

// ---------------------------------------------------------------------------------------------
// Lexer

type TokType = 'ident' | 'number' | 'duration' | 'string' | 'punct' | 'op' | 'eof'
interface Token {
  type: TokType
  value: string
  pos: number
}

const DURATION = /^(?:\d+(?:ms|[smhdwy]))+(?![A-Za-z0-9_])/
const NUMBER = /^(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)/
const IDENT = /^[A-Za-z_][A-Za-z0-9_:]*/ // a leading colon would swallow the subquery step in [1h:5m]
const OPERATORS = [
  '==',
  '!=',
  '=~',
  '!~',
  '<=',
  '>=',
  '<',
  '>',
  '=',
  '+',
  '-',
  '*',
  '/',
  '%',
  '^',
  '@',
]

function tokenize(src: string): Token[] {
  const tokens: Token[] = []
  let i = 0
  while (i < src.length) {
    const ch = src[i]!
    if (/\s/.test(ch)) {
      i++
      continue
    }
    if (ch === '#') {
      while (i < src.length && src[i] !== '\n') i++
      continue
    }
    const rest = src.slice(i)
    if (ch === '"' || ch === "'" || ch === '`') {
      let j = i + 1
      let value = ''
      while (j < src.length && src[j] !== ch) {
        if (src[j] === '\\' && ch !== '`') {
          value += src[j + 1] ?? ''
          j += 2
        } else {
          value += src[j]
          j++
        }
      }
      if (j >= src.length) throw new PromQLParseError('unterminated string', src, i)
      tokens.push({ type: 'string', value, pos: i })
      i = j + 1
      continue
    }
    let m = DURATION.exec(rest)
    if (m) {
      tokens.push({ type: 'duration', value: m[0], pos: i })
      i += m[0].length
      continue
    }
    if (/[0-9.]/.test(ch)) {
      m = NUMBER.exec(rest)
      if (m) {
        tokens.push({ type: 'number', value: m[0], pos: i })
        i += m[0].length
        continue
      }
    }
    m = IDENT.exec(rest)
    if (m) {
      tokens.push({ type: 'ident', value: m[0], pos: i })
      i += m[0].length
      continue
    }
    if ('(){}[],:'.includes(ch)) {
      tokens.push({ type: 'punct', value: ch, pos: i })
      i++
      continue
    }
    const op = OPERATORS.find((o) => rest.startsWith(o))
    if (op) {
      tokens.push({ type: 'op', value: op, pos: i })
      i += op.length
      continue
    }
    throw new PromQLParseError(`unexpected character ${JSON.stringify(ch)}`, src, i)
  }
  tokens.push({ type: 'eof', value: '', pos: src.length })
  return tokens
}

// ---------------------------------------------------------------------------------------------
// Parser

interface Grouping {
  without: boolean
  labels: string[]
}
interface VectorMatching {
  on: boolean
  labels: string[]
  card?: 'left' | 'right'
  include: string[]
}

type Node =
  | { t: 'selector'; metric: string; matcherLabels: string[] }
  | { t: 'number' }
  | { t: 'string'; value: string }
  | { t: 'call'; fn: string; args: Node[] }
  | { t: 'agg'; op: string; grouping?: Grouping; param?: Node; expr: Node }
  | { t: 'binary'; op: string; lhs: Node; rhs: Node; matching?: VectorMatching }
  | { t: 'wrap'; expr: Node } // parentheses, unary sign, range, subquery, offset, @

const AGGREGATIONS = new Set([
  'sum',
  'min',
  'max',
  'avg',
  'group',
  'stddev',
  'stdvar',
  'count',
  'count_values',
  'bottomk',
  'topk',
  'quantile',
  'limitk',
  'limit_ratio',
])
const PARAMETRIC = new Set(['count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio'])
const PRECEDENCE: Record<string, number> = {
  or: 1,
  and: 2,
  unless: 2,
  '==': 3,
  '!=': 3,
  '<=': 3,
  '<': 3,
  '>=': 3,
  '>': 3,
  '+': 4,
  '-': 4,
  '*': 5,
  '/': 5,
  '%': 5,
  atan2: 5,
  '^': 6,
}
const SET_OPERATORS = new Set(['and', 'or', 'unless'])

class Parser {
  private readonly tokens: Token[]
  private i = 0

  constructor(private readonly src: string) {
    this.tokens = tokenize(src)
  }

  parse(): Node {
    const node = this.expr(0)
    if (this.peek().type !== 'eof') this.fail(`unexpected ${JSON.stringify(this.peek().value)}`)
    return node
  }

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)]!
  }
  private next(): Token {
    const t = this.peek()
    if (t.type !== 'eof') this.i++
    return t
  }
  private is(value: string, offset = 0): boolean {
    const t = this.peek(offset)
    return (t.type === 'punct' || t.type === 'op') && t.value === value
  }
  private isWord(word: string, offset = 0): boolean {
    const t = this.peek(offset)
    return t.type === 'ident' && t.value.toLowerCase() === word
  }
  private expect(value: string): void {
    if (!this.is(value))
      this.fail(
        `expected ${JSON.stringify(value)}, got ${JSON.stringify(this.peek().value || 'end')}`
      )
    this.i++
  }
  private fail(message: string): never {
    throw new PromQLParseError(message, this.src, this.peek().pos)
  }

  /** The binary operator at the cursor, if any. */
  private binaryOperator(): string | undefined {
    const t = this.peek()
    if (t.type === 'op' && t.value in PRECEDENCE) return t.value
    if (t.type === 'ident' && ['and', 'or', 'unless', 'atan2'].includes(t.value.toLowerCase()))
      return t.value.toLowerCase()
    return undefined
  }

  private expr(minPrecedence: number): Node {
    let lhs = this.unary()
    for (;;) {
      const op = this.binaryOperator()
      if (!op) return lhs
      const precedence = PRECEDENCE[op]!
      if (precedence < minPrecedence) return lhs
      this.next()
      const matching = this.binaryModifiers(op)
      // `^` is right-associative, the others left-associative.
      const rhs = this.expr(op === '^' ? precedence : precedence + 1)
      lhs = { t: 'binary', op, lhs, rhs, ...(matching ? { matching } : {}) }
    }
  }

  private binaryModifiers(op: string): VectorMatching | undefined {
    if (this.isWord('bool')) this.next()
    let matching: VectorMatching | undefined
    if (this.isWord('on') || this.isWord('ignoring')) {
      const on = this.next().value.toLowerCase() === 'on'
      matching = { on, labels: this.labelList(), include: [] }
    }
    if (this.isWord('group_left') || this.isWord('group_right')) {
      if (SET_OPERATORS.has(op)) this.fail('group modifiers are not allowed with set operators')
      const card = this.next().value.toLowerCase() === 'group_left' ? 'left' : 'right'
      matching ??= { on: false, labels: [], include: [] }
      matching.card = card
      // `group_left (…)` is a label list when it holds only names; otherwise it is the right operand.
      if (this.is('(')) {
        const save = this.i
        try {
          matching.include = this.labelList()
        } catch {
          this.i = save
        }
      }
    }
    return matching
  }

  /** `( name, "name", … )` */
  private labelList(): string[] {
    this.expect('(')
    const labels: string[] = []
    while (!this.is(')')) {
      const t = this.next()
      if (t.type !== 'ident' && t.type !== 'string') this.fail('expected a label name')
      labels.push(t.value)
      if (!this.is(')')) this.expect(',')
    }
    this.expect(')')
    return labels
  }

  private unary(): Node {
    if (this.is('-') || this.is('+')) {
      this.next()
      return { t: 'wrap', expr: this.unary() }
    }
    return this.postfix(this.primary())
  }

  private postfix(node: Node): Node {
    for (;;) {
      if (this.is('[')) {
        this.next()
        this.duration()
        if (this.is(':')) {
          this.next()
          if (!this.is(']')) this.duration()
        }
        this.expect(']')
        node = { t: 'wrap', expr: node }
      } else if (this.isWord('offset')) {
        this.next()
        if (this.is('-') || this.is('+')) this.next()
        this.duration()
        node = { t: 'wrap', expr: node }
      } else if (this.is('@')) {
        this.next()
        if (this.isWord('start') || this.isWord('end')) {
          this.next()
          this.expect('(')
          this.expect(')')
        } else {
          if (this.is('-') || this.is('+')) this.next()
          const t = this.next()
          if (t.type !== 'number' && t.type !== 'duration')
            this.fail('expected a timestamp after @')
        }
        node = { t: 'wrap', expr: node }
      } else {
        return node
      }
    }
  }

  private duration(): void {
    const t = this.next()
    if (t.type !== 'duration' && t.type !== 'number')
      this.fail(`expected a duration, got ${JSON.stringify(t.value || 'end')}`)
  }

  private primary(): Node {
    const t = this.peek()
    if (this.is('(')) {
      this.next()
      const inner = this.expr(0)
      this.expect(')')
      return { t: 'wrap', expr: inner }
    }
    if (t.type === 'number' || t.type === 'duration') {
      this.next()
      return { t: 'number' }
    }
    if (t.type === 'string') {
      this.next()
      return { t: 'string', value: t.value }
    }
    if (this.is('{')) return this.selector('')
    if (t.type === 'ident') {
      const word = t.value.toLowerCase()
      if (
        AGGREGATIONS.has(word) &&
        (this.is('(', 1) || this.isWord('by', 1) || this.isWord('without', 1))
      )
        return this.aggregation()
      if (this.is('(', 1)) return this.call()
      if (word === 'inf' || word === 'nan') {
        this.next()
        return { t: 'number' }
      }
      if (
        [
          'by',
          'without',
          'on',
          'ignoring',
          'group_left',
          'group_right',
          'offset',
          'bool',
          'and',
          'or',
          'unless',
        ].includes(word)
      ) {
        this.fail(`unexpected keyword ${JSON.stringify(t.value)}`)
      }
      this.next()
      return this.is('{')
        ? this.selector(t.value)
        : { t: 'selector', metric: t.value, matcherLabels: [] }
    }
    this.fail(`unexpected ${JSON.stringify(t.value || 'end')}`)
  }

  private selector(name: string): Node {
    let metric = name
    const labels: string[] = []
    this.expect('{')
    while (!this.is('}')) {
      const t = this.next()
      if (t.type !== 'ident' && t.type !== 'string') this.fail('expected a label matcher')
      if (t.type === 'string' && (this.is(',') || this.is('}'))) {
        metric = t.value // Prometheus 3: {"metric.name", …}
      } else {
        const op = this.next()
        if (op.type !== 'op' || !['=', '!=', '=~', '!~'].includes(op.value))
          this.fail('expected =, !=, =~ or !~')
        const value = this.next()
        if (value.type !== 'string') this.fail('expected a quoted label value')
        if (t.value === '__name__') {
          if (op.value === '=') metric = value.value
        } else {
          labels.push(t.value)
        }
      }
      if (!this.is('}')) this.expect(',')
    }
    this.expect('}')
    return { t: 'selector', metric, matcherLabels: labels }
  }

  private call(): Node {
    const fn = this.next().value
    this.expect('(')
    const args: Node[] = []
    while (!this.is(')')) {
      args.push(this.expr(0))
      if (!this.is(')')) this.expect(',')
    }
    this.expect(')')
    return { t: 'call', fn, args }
  }

  private aggregation(): Node {
    const op = this.next().value.toLowerCase()
    let grouping = this.grouping()
    this.expect('(')
    let param: Node | undefined
    if (PARAMETRIC.has(op)) {
      param = this.expr(0)
      this.expect(',')
    }
    const expr = this.expr(0)
    if (this.is(',')) this.next()
    this.expect(')')
    grouping ??= this.grouping()
    return { t: 'agg', op, expr, ...(grouping ? { grouping } : {}), ...(param ? { param } : {}) }
  }

  private grouping(): Grouping | undefined {
    if (!this.isWord('by') && !this.isWord('without')) return undefined
    const without = this.next().value.toLowerCase() === 'without'
    return { without, labels: this.labelList() }
  }
}

/** Parses PromQL into the internal tree; throws `PromQLParseError`. Exported for "does it parse" tests. */
export function parsePromQL(expr: string): void {
  new Parser(substituteGrafanaVariables(expr)).parse()
}

// ---------------------------------------------------------------------------------------------
// Label dependencies

/**
 * Walks the tree with the set of labels the parent needs from this node's output series, and
 * pushes that requirement down to the selectors that must provide them.
 */
function walk(
  node: Node,
  required: ReadonlySet<string>,
  fn: string | undefined,
  out: SelectorUse[]
): void {
  const union = (...sets: Iterable<string>[]): Set<string> => new Set(sets.flatMap((s) => [...s]))
  const minus = (set: Iterable<string>, drop: Iterable<string>): Set<string> => {
    const d = new Set(drop)
    return new Set([...set].filter((l) => !d.has(l)))
  }
  switch (node.t) {
    case 'number':
    case 'string':
      return
    case 'selector': {
      if (!node.metric) return // {job="x"} without a name cannot be checked against a catalogue
      const labels = [...union(node.matcherLabels, required)].filter((l) => l !== '__name__').sort()
      out.push({
        metric: node.metric,
        labels,
        matcherLabels: [...new Set(node.matcherLabels)].sort(),
        ...(fn ? { fn } : {}),
      })
      return
    }
    case 'wrap':
      walk(node.expr, required, fn, out)
      return
    case 'agg': {
      if (node.param) walk(node.param, new Set(), undefined, out)
      let inner: Set<string> = union(required, node.grouping?.labels ?? [])
      if (node.op === 'count_values' && node.param?.t === 'string')
        inner = minus(inner, [node.param.value])
      walk(node.expr, inner, fn, out)
      return
    }
    case 'call': {
      const name = node.fn.toLowerCase()
      const strings = node.args.map((a) => (a.t === 'string' ? a.value : undefined))
      let inner = new Set(required)
      let vectorArg = node.args[0]
      if (name === 'histogram_quantile' || name === 'histogram_fraction') {
        vectorArg = node.args[node.args.length - 1]
        inner = union(required, ['le'])
      } else if (name === 'label_replace') {
        inner = minus(required, [strings[1] ?? ''])
        if (strings[3]) inner.add(strings[3])
      } else if (name === 'label_join') {
        inner = union(
          minus(required, [strings[1] ?? '']),
          strings.slice(3).filter((s): s is string => !!s)
        )
      } else if (name === 'sort_by_label' || name === 'sort_by_label_desc') {
        inner = union(
          required,
          strings.slice(1).filter((s): s is string => !!s)
        )
      } else if (
        ['absent', 'absent_over_time', 'scalar', 'vector', 'time', 'timestamp'].includes(name)
      ) {
        inner = new Set()
      }
      for (const arg of node.args) walk(arg, arg === vectorArg ? inner : new Set(), name, out)
      return
    }
    case 'binary': {
      const m = node.matching
      const on = m?.on ? m.labels : []
      if (SET_OPERATORS.has(node.op)) {
        if (node.op === 'or') {
          walk(node.lhs, union(required, on), fn, out)
          walk(node.rhs, union(required, on), fn, out)
        } else {
          walk(node.lhs, union(required, on), fn, out)
          walk(node.rhs, new Set(on), fn, out)
        }
        return
      }
      // A literal on one side: the other side's labels pass through.
      if (node.lhs.t === 'number' || node.rhs.t === 'number') {
        walk(node.lhs, required, fn, out)
        walk(node.rhs, required, fn, out)
        return
      }
      if (m?.card === 'left') {
        walk(node.lhs, union(minus(required, m.include), on), fn, out)
        walk(node.rhs, union(m.include, on), fn, out)
      } else if (m?.card === 'right') {
        walk(node.lhs, union(m.include, on), fn, out)
        walk(node.rhs, union(minus(required, m.include), on), fn, out)
      } else {
        // one-to-one: both sides carry the result's labels
        walk(node.lhs, union(required, on), fn, out)
        walk(node.rhs, union(required, on), fn, out)
      }
      return
    }
  }
}

/** Every selector occurrence of an expression (Grafana variables substituted first). */
export function analyzeExpression(expr: string): SelectorUse[] {
  const tree = new Parser(substituteGrafanaVariables(expr)).parse()
  const out: SelectorUse[] = []
  walk(tree, new Set(), undefined, out)
  return out
}

/**
 * The metric series an expression reads, each once (in order of first use), with the union of the
 * label names the expression depends on. Function names, keywords, durations and grouping labels
 * are never taken for metrics.
 */
export function extractSelectors(expr: string): Selector[] {
  const merged = new Map<string, Set<string>>()
  for (const use of analyzeExpression(expr)) {
    const labels = merged.get(use.metric) ?? new Set<string>()
    for (const l of use.labels) labels.add(l)
    merged.set(use.metric, labels)
  }
  return [...merged].map(([metric, labels]) => ({ metric, labels: [...labels].sort() }))
}

// ---------------------------------------------------------------------------------------------
// Collecting expressions from the dashboard and the alert rules

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const DASHBOARD_PATH = `${REPO_ROOT}docs/grafana/immich-gateway.dashboard.json`
export const ALERTS_PATH = `${REPO_ROOT}docs/prometheus/alerts.yaml`

/**
 * Turns a Grafana Prometheus variable query into PromQL with the same dependencies:
 * `label_values(m{…}, l)` → `count by (l) (m{…})`; `query_result(q)` → `q`;
 * `label_values(l)`, `label_names()`, `metrics(re)` → undefined (no series to check).
 */
export function variableQueryToPromQL(query: string): string | undefined {
  const q = query.trim()
  let m = /^label_values\(\s*(.+)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$/s.exec(q)
  if (m) return `count by (${m[2]}) (${m[1]})`
  m = /^query_result\(\s*(.+)\s*\)$/s.exec(q)
  if (m) return m[1]
  if (/^(label_values|label_names|metrics)\s*\(/.test(q)) return undefined
  return q || undefined
}

type Json = unknown
const isObject = (v: Json): v is Record<string, Json> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

/** Expressions of a dashboard object (already parsed JSON). */
export function dashboardExpressions(dashboard: Json): CollectedExpression[] {
  const out: CollectedExpression[] = []
  const visitPanel = (panel: Json, path: string[]): void => {
    if (!isObject(panel)) return
    const title = typeof panel.title === 'string' ? panel.title : ''
    const here = [
      ...path,
      `${panel.type === 'row' ? 'row' : 'panel'} ${JSON.stringify(title)}${panel.id !== undefined ? ` (id ${String(panel.id)})` : ''}`,
    ]
    if (Array.isArray(panel.targets)) {
      panel.targets.forEach((target, i) => {
        if (!isObject(target) || typeof target.expr !== 'string' || target.expr.trim() === '')
          return
        const ref = typeof target.refId === 'string' ? target.refId : `#${i}`
        out.push({
          expr: target.expr,
          promql: substituteGrafanaVariables(target.expr),
          source: `dashboard: ${here.join(' / ')} target ${ref}`,
          file: 'dashboard',
          kind: 'target',
        })
      })
    }
    for (const key of ['panels', 'collapsedPanels']) {
      const nested = panel[key]
      if (Array.isArray(nested)) nested.forEach((p) => visitPanel(p, here))
    }
  }
  if (!isObject(dashboard)) return out
  if (Array.isArray(dashboard.panels)) dashboard.panels.forEach((p) => visitPanel(p, []))
  // old schema: rows[].panels[]
  if (Array.isArray(dashboard.rows))
    dashboard.rows.forEach((row) => visitPanel({ ...(isObject(row) ? row : {}), type: 'row' }, []))

  const templating = isObject(dashboard.templating) ? dashboard.templating.list : undefined
  if (Array.isArray(templating)) {
    for (const variable of templating) {
      if (!isObject(variable) || variable.type !== 'query') continue
      const raw = isObject(variable.query) ? variable.query.query : variable.query
      if (typeof raw !== 'string') continue
      const promql = variableQueryToPromQL(substituteGrafanaVariables(raw))
      if (promql === undefined) continue
      out.push({
        expr: raw,
        promql,
        source: `dashboard: variable ${JSON.stringify(variable.name)}`,
        file: 'dashboard',
        kind: 'variable',
      })
    }
  }
  const annotations = isObject(dashboard.annotations) ? dashboard.annotations.list : undefined
  if (Array.isArray(annotations)) {
    for (const a of annotations) {
      if (!isObject(a) || typeof a.expr !== 'string' || a.expr.trim() === '') continue
      out.push({
        expr: a.expr,
        promql: substituteGrafanaVariables(a.expr),
        source: `dashboard: annotation ${JSON.stringify(a.name)}`,
        file: 'dashboard',
        kind: 'annotation',
      })
    }
  }
  return out
}

/** Expressions of a Prometheus rule file object (already parsed YAML). */
export function ruleExpressions(rules: Json): CollectedExpression[] {
  const out: CollectedExpression[] = []
  if (!isObject(rules) || !Array.isArray(rules.groups)) return out
  for (const group of rules.groups) {
    if (!isObject(group) || !Array.isArray(group.rules)) continue
    for (const rule of group.rules) {
      if (!isObject(rule) || rule.expr === undefined) continue
      const expr = String(rule.expr)
      if (typeof rule.record === 'string') {
        out.push({
          expr,
          promql: expr,
          source: `alerts: group ${JSON.stringify(group.name)} record ${rule.record}`,
          file: 'alerts',
          kind: 'record',
          defines: rule.record,
        })
      } else {
        out.push({
          expr,
          promql: expr,
          source: `alerts: group ${JSON.stringify(group.name)} alert ${String(rule.alert)}`,
          file: 'alerts',
          kind: 'alert',
        })
      }
    }
  }
  return out
}

/** Every PromQL expression of the dashboard and the alert rules, with where it came from. */
export function collectExpressions(
  paths: { dashboard?: string; alerts?: string } = {}
): CollectedExpression[] {
  const dashboard = JSON.parse(readFileSync(paths.dashboard ?? DASHBOARD_PATH, 'utf8')) as Json
  const alerts = parseYaml(readFileSync(paths.alerts ?? ALERTS_PATH, 'utf8')) as Json
  return [...dashboardExpressions(dashboard), ...ruleExpressions(alerts)]
}

// ---------------------------------------------------------------------------------------------
// Catalogue of what is exported, and the check

/** What a series name (as queried: `x_total`, `x_bucket`, `x_sum`, …) offers. */
export interface SeriesInfo {
  /** The metric family (`# TYPE` name). */
  family: string
  /** counter, gauge, histogram, summary, untyped, … (of the family). */
  type: string
  labels: Set<string>
  /** false when the labels are not known (a family announced in an exposition with no samples yet). */
  labelsKnown: boolean
}
export type MetricCatalog = Map<string, SeriesInfo>

export interface Problem {
  kind: 'parse-error' | 'missing-metric' | 'missing-label' | 'no-samples' | 'type-mismatch'
  source: string
  expr: string
  metric?: string
  label?: string
  message: string
}

export interface CheckOptions {
  /** Labels Prometheus adds at scrape time (never in the exposition). Default: job, instance. */
  targetLabels?: string[]
  /** Series Prometheus makes for every scrape (up, scrape_*). Default: allowed, with target labels. */
  allowScrapeSeries?: boolean
  /** Report series whose family is exposed but has no samples yet (labels unverifiable). Default: false. */
  requireSamples?: boolean
}

const SCRAPE_SERIES = [
  'up',
  'scrape_duration_seconds',
  'scrape_samples_scraped',
  'scrape_samples_post_metric_relabeling',
  'scrape_series_added',
]
/** Functions meant for counters, and for gauges. */
const COUNTER_FUNCTIONS = new Set(['rate', 'irate', 'increase', 'resets'])
const GAUGE_FUNCTIONS = new Set(['delta', 'idelta', 'deriv', 'predict_linear'])

function addFamily(
  catalog: MetricCatalog,
  family: string,
  type: string,
  labels: Iterable<string>,
  labelsKnown: boolean
): void {
  const base = [...labels]
  const put = (name: string, extra: string[] = []): void => {
    catalog.set(name, { family, type, labels: new Set([...base, ...extra]), labelsKnown })
  }
  if (type === 'histogram') {
    put(`${family}_bucket`, ['le'])
    put(`${family}_sum`)
    put(`${family}_count`)
  } else if (type === 'summary') {
    put(family, ['quantile'])
    put(`${family}_sum`)
    put(`${family}_count`)
  } else if (type === 'counter' && !family.endsWith('_total')) {
    put(`${family}_total`) // OpenMetrics family names drop _total
    put(family)
  } else {
    put(family)
  }
}

/** Structural view of a prom-client `Registry` (no import: this file stays dependency-free). */
export interface RegistryLike {
  getMetricsAsJSON(): Promise<Array<{ name: string; type: unknown }>>
  getSingleMetric(name: string): unknown
}

/** The series a prom-client registry declares, with their declared label names. */
export async function catalogFromRegistry(registry: RegistryLike): Promise<MetricCatalog> {
  const catalog: MetricCatalog = new Map()
  for (const { name, type } of await registry.getMetricsAsJSON()) {
    const metric = registry.getSingleMetric(name) as { labelNames?: readonly string[] } | undefined
    addFamily(catalog, name, String(type), metric?.labelNames ?? [], true)
  }
  return catalog
}

/** Parses `name{a="x",b="y"} value` into name and label names; undefined for a malformed line. */
function parseSampleLine(line: string): { name: string; labels: string[] } | undefined {
  const m = /^([A-Za-z_:][A-Za-z0-9_:]*)\s*(\{)?/.exec(line)
  if (!m) return undefined
  const labels: string[] = []
  if (!m[2]) return { name: m[1]!, labels }
  let i = m[0].length
  while (i < line.length) {
    while (line[i] === ' ' || line[i] === ',') i++
    if (line[i] === '}') return { name: m[1]!, labels }
    const lm = /^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*"/.exec(line.slice(i))
    if (!lm) return undefined
    labels.push(lm[1]!)
    i += lm[0].length
    while (i < line.length && line[i] !== '"') i += line[i] === '\\' ? 2 : 1 // skip the value
    i++ // closing quote
  }
  return undefined
}

/** The series a Prometheus text exposition (or OpenMetrics) offers, with the label names seen on samples. */
export function catalogFromExposition(text: string): MetricCatalog {
  const types = new Map<string, string>()
  const samples: Array<{ name: string; labels: string[] }> = []
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (!line) continue
    if (line.startsWith('#')) {
      const m = /^#\s*TYPE\s+(\S+)\s+(\S+)/.exec(line)
      if (m) types.set(m[1]!, m[2]!.toLowerCase())
      continue
    }
    const sample = parseSampleLine(line)
    if (sample) samples.push(sample)
  }
  const catalog: MetricCatalog = new Map()
  for (const [family, type] of types) addFamily(catalog, family, type, [], false)
  const familyOf = (name: string): string | undefined => {
    if (types.has(name)) return name
    const m = /^(.*)_(bucket|sum|count|total|created|info|gsum|gcount)$/.exec(name)
    return m && types.has(m[1]!) ? m[1] : undefined
  }
  for (const { name, labels } of samples) {
    const family = familyOf(name)
    let info = catalog.get(name)
    if (!info) {
      info = {
        family: family ?? name,
        type: (family && types.get(family)) ?? 'untyped',
        labels: new Set(),
        labelsKnown: true,
      }
      catalog.set(name, info)
    }
    if (!info.labelsKnown) {
      // First sample: drop the implied labels (le/quantile) until they are seen too.
      info.labels = new Set()
      info.labelsKnown = true
    }
    for (const l of labels) info.labels.add(l)
  }
  return catalog
}

/** Checks every expression's selectors against a catalogue. */
export function checkAgainstCatalog(
  catalog: MetricCatalog,
  exprs: readonly CollectedExpression[],
  options: CheckOptions = {}
): Problem[] {
  const targetLabels = new Set(options.targetLabels ?? ['job', 'instance'])
  const recorded = new Set(exprs.flatMap((e) => (e.defines ? [e.defines] : [])))
  const problems: Problem[] = []
  for (const e of exprs) {
    let uses: SelectorUse[]
    try {
      uses = analyzeExpression(e.promql)
    } catch (err) {
      problems.push({
        kind: 'parse-error',
        source: e.source,
        expr: e.expr,
        message: (err as Error).message,
      })
      continue
    }
    for (const use of uses) {
      if (recorded.has(use.metric)) continue
      const base = { source: e.source, expr: e.expr, metric: use.metric }
      if ((options.allowScrapeSeries ?? true) && SCRAPE_SERIES.includes(use.metric)) {
        for (const label of use.labels.filter((l) => !targetLabels.has(l))) {
          problems.push({
            ...base,
            kind: 'missing-label',
            label,
            message: `${use.metric} has only target labels, not ${label}`,
          })
        }
        continue
      }
      const info = catalog.get(use.metric)
      if (!info) {
        const family = [...catalog.values()].find((s) => s.family === use.metric)
        const hint = family ? ` (a ${family.type}: query ${use.metric}_bucket/_sum/_count)` : ''
        problems.push({
          ...base,
          kind: 'missing-metric',
          message: `${use.metric} is not exported${hint}`,
        })
        continue
      }
      if (!info.labelsKnown) {
        if (options.requireSamples)
          problems.push({
            ...base,
            kind: 'no-samples',
            message: `${use.metric} is exposed without samples: its labels cannot be checked`,
          })
      } else {
        for (const label of use.labels) {
          if (info.labels.has(label) || targetLabels.has(label)) continue
          problems.push({
            ...base,
            kind: 'missing-label',
            label,
            message: `${use.metric} has no label ${label} (has: ${[...info.labels].sort().join(', ') || 'none'})`,
          })
        }
      }
      const seriesType =
        info.type === 'histogram' || info.type === 'summary'
          ? use.metric.endsWith('_bucket') ||
            use.metric.endsWith('_sum') ||
            use.metric.endsWith('_count')
            ? 'counter'
            : 'gauge'
          : info.type
      if (use.fn && COUNTER_FUNCTIONS.has(use.fn) && seriesType === 'gauge') {
        problems.push({
          ...base,
          kind: 'type-mismatch',
          message: `${use.fn}() applied to ${use.metric}, a gauge`,
        })
      }
      if (use.fn && GAUGE_FUNCTIONS.has(use.fn) && seriesType === 'counter') {
        problems.push({
          ...base,
          kind: 'type-mismatch',
          message: `${use.fn}() applied to ${use.metric}, a counter`,
        })
      }
    }
  }
  return problems
}

/**
 * The live check: parses a scraped `/metrics` text and returns the problems of `exprs` against it
 * (missing metric family, missing label, parse errors, counter/gauge function mismatches).
 * A labelled family with no samples yet has unknown labels: reported only with `requireSamples`.
 */
export function checkAgainstExposition(
  text: string,
  exprs: readonly CollectedExpression[],
  options: CheckOptions = {}
): Problem[] {
  return checkAgainstCatalog(catalogFromExposition(text), exprs, options)
}

/** One line per problem, for assertion messages. */
export function formatProblems(problems: readonly Problem[]): string {
  return problems
    .map(
      (p) => `${p.kind}: ${p.message}\n    at ${p.source}\n    expr: ${p.expr.replace(/\s+/g, ' ')}`
    )
    .join('\n')
}
