import type { Context, MiddlewareHandler, Next } from 'hono'
import type { OutgoingHttpHeaders } from 'node:http'
import { decideAccess } from '../../src/auth/scopes.js'
import {
  CREDENTIAL_QUERY,
  credentialParamName,
  credentialQueryParams,
} from '../../src/auth/credentials.js'
import { ConfigError } from '../../src/config/load.js'
import type { Deps } from '../../src/deps.js'
import type { Env } from '../../src/env.js'
import { GatewayError, immichErrorBody } from '../../src/errors.js'
import { packageFile } from '../../src/paths.js'
import { writeAnswer } from '../../src/server/answer.js'
import {
  compileLegacyTable,
  loadLegacyTable,
  runSteps,
  type LegacyForward,
  type LegacyHit,
} from './table.js'
import type { UpstreamCall, UpstreamReply } from './transforms.js'
import { isApiPath } from '../../src/routing/path.js'
import { readRequestBody } from '../../src/upstream/body.js'
import { firstValue } from '../../src/upstream/headers.js'
import { MultipartFieldFiller } from './multipart-fill.js'
import { definePolicy } from '../types.js'
import { legacyRoutesOptions, type LegacyRoutesOptions } from './schema.js'

/**
 * RFC 9745 `Deprecation` is a date: the legacy routes were deprecated by Immich's API rename
 * (v1.106, June 2024) or later. One fixed, past date says "already deprecated" for all of them.
 */
const DEPRECATION = '@1717200000'

/**
 * The credential parameters of the old query that the new one lacks, appended byte for byte: a
 * rewrite that replaces the query must not lose the credential the authenticate phase reads.
 */
function carryCredentials(oldQuery: string, newQuery: string): string {
  if (oldQuery.length < 2) return newQuery
  const present = new Set(credentialQueryParams(newQuery).map((p) => p.name))
  const carried = oldQuery
    .slice(1)
    .split(/[&;]/)
    .filter((pair) => {
      const name = credentialParamName(pair)
      return pair !== '' && CREDENTIAL_QUERY.has(name) && !present.has(name)
    })
  if (carried.length === 0) return newQuery
  return newQuery ? `${newQuery}&${carried.join('&')}` : `?${carried.join('&')}`
}

function jsonOf(body: Buffer, contentType: string | undefined): unknown {
  if (body.length === 0) return undefined
  const text = body.toString('utf8')
  if (contentType && !/json/i.test(contentType)) return text
  try {
    return JSON.parse(text)
  } catch {
    return text
  }
}

/**
 * Legacy route translation (phase 3, before routing): an old method+path from the legacy table is
 * rewritten to the current route, so authentication, scopes, limits and the cache judge the current
 * route: no old path is a way around them. Body and response rewrites, and the extra upstream calls
 * some rules need, run as the request's last step — after every policy let it through — and each
 * extra call is authorized against the route table with the same principal and credential.
 */
export const legacyRoutes = definePolicy({
  name: 'legacy-routes',
  phase: 'legacy',
  options: legacyRoutesOptions,
  create(options, { deps }) {
    if (!options.enabled) return (_c, next) => next()
    const file = options.file ?? packageFile('config/legacy-routes.yaml')
    let rules
    try {
      rules = loadLegacyTable(file)
    } catch (err) {
      throw new ConfigError(`policies.legacy-routes.file: ${(err as Error).message}`)
    }
    const ids = new Set(rules.map((r) => r.id))
    const unknown = options.disabledRules.filter((id) => !ids.has(id))
    if (unknown.length)
      throw new ConfigError(
        `policies.legacy-routes.disabledRules: no rule named ${unknown.join(', ')}`
      )
    const disabled = new Set(options.disabledRules)
    const table = compileLegacyTable(rules.filter((r) => !disabled.has(r.id)))
    const { metrics } = deps

    // Current routes pass by synchronously (one table lookup); only a translation is async.
    const middleware: MiddlewareHandler<Env> = (c, next) => {
      const path = c.get('path')
      if (!isApiPath(path)) return next()
      const hit = table.match(c.get('upstream').method, path)
      return hit ? translate(c, next, hit) : next()
    }
    return middleware

    async function translate(
      c: Context<Env>,
      next: Next,
      hit: LegacyHit
    ): Promise<Response | void> {
      const path = c.get('path')
      const up = c.get('upstream')
      const req = c.env.incoming
      const originalQuery = c.get('query')
      c.set('legacy', {
        rule: hit.rule.id,
        originalMethod: up.method,
        originalPath: req.url ?? path,
        successor: '',
      })
      try {
        const outcome = hit.rewrite(originalQuery, { contentType: req.headers['content-type'] })
        if (outcome.kind === 'respond') {
          // A fixed answer that holds no user data (e.g. `{existingIds: []}`): Immich is not asked.
          return c.json(outcome.body as object, outcome.status as 200, {
            ...c.get('responseHeaders'),
            Deprecation: DEPRECATION,
            'x-request-id': c.get('requestId'),
          })
        }
        c.get('legacy')!.successor = outcome.successor
        c.get('responseHeaders').Deprecation = DEPRECATION
        c.get('responseHeaders').Link = `<${outcome.successor}>; rel="successor-version"`
        const query = carryCredentials(originalQuery, outcome.query)
        up.method = outcome.method
        up.url = outcome.path + query
        c.set('path', outcome.path)
        c.set('query', query)
        if (outcome.jsonBody !== undefined) {
          up.body = Buffer.from(JSON.stringify(outcome.jsonBody))
          up.headerEdits['content-type'] = 'application/json'
        } else if (outcome.dropBody) {
          up.body = Buffer.alloc(0)
          up.headerEdits['content-type'] = null
        }
        if (outcome.multipartFill) {
          const fill = outcome.multipartFill
          up.bodyTransform = (body) => body.pipe(new MultipartFieldFiller(fill))
        }
        if (outcome.transformBody || outcome.transformResponse)
          c.set('terminal', (ctx) => rewriteTerminal(ctx, hit, outcome, options, deps))
        return await next()
      } finally {
        metrics.legacyRequests.inc({ rule: hit.rule.id, client: c.get('principal').client })
      }
    }
  },
})

/** The last step of a legacy request with body/response rewrites or extra upstream calls. */
async function rewriteTerminal(
  c: Context<Env>,
  hit: LegacyHit,
  outcome: LegacyForward,
  options: LegacyRoutesOptions,
  deps: Deps
): Promise<Response> {
  const send = (call: UpstreamCall) => followUp(c, call, deps, options)
  const allow = (call: UpstreamCall) => hit.allowsCall(call)
  const runOptions = { allow, maxCalls: options.maxFollowUpCalls }
  if (outcome.transformBody) {
    const raw = await readRequestBody(c, {
      maxBytes: options.maxBodyBytes,
      timeoutMs: options.bodyTimeoutSeconds * 1000,
    })
    const body = await runSteps(
      outcome.transformBody(jsonOf(raw, 'application/json')),
      send,
      runOptions
    )
    c.get('upstream').body =
      body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(body))
    c.get('upstream').headerEdits['content-type'] = 'application/json'
  }
  if (!outcome.transformResponse) return deps.forwarder.pipe(c)
  const answer = await deps.forwarder.capture(c, options.maxResponseBytes)
  const contentType = firstValue(answer.headers['content-type'])
  const result = await runSteps(
    outcome.transformResponse(answer.status, jsonOf(answer.body, contentType)),
    send,
    runOptions
  )
  const headers: OutgoingHttpHeaders = {}
  const correlation = firstValue(answer.headers['x-correlation-id'])
  if (correlation) headers['x-correlation-id'] = correlation
  let payload: Buffer
  if (typeof result.body === 'string' && contentType && !/json/i.test(contentType)) {
    payload = Buffer.from(result.body)
    headers['content-type'] = contentType
  } else if (result.body === undefined) {
    payload = Buffer.alloc(0)
  } else {
    payload = Buffer.from(JSON.stringify(result.body))
    headers['content-type'] = 'application/json; charset=utf-8'
  }
  // Cookies Immich set (an old login call) reach the client as they came.
  if (answer.headers['set-cookie']) headers['set-cookie'] = answer.headers['set-cookie']
  return writeAnswer(c, result.status, headers, payload)
}

/**
 * One extra upstream call a translation needs (search pages for an old album detail...). It is
 * judged like a request of its own: a gateway principal needs the call's permission too, so an old
 * path never reaches data its key could not reach through the current routes.
 */
async function followUp(
  c: Context<Env>,
  call: UpstreamCall,
  deps: Deps,
  options: LegacyRoutesOptions
): Promise<UpstreamReply> {
  const principal = c.get('principal')
  if (principal.kind === 'gateway-key' || principal.kind === 'jwt') {
    const match = deps.routes.match(call.method, call.path)
    const decision = decideAccess(
      principal.scopes ?? new Set(),
      { path: call.path, route: match?.route },
      'all'
    )
    if (!decision.allowed) {
      // Answered like Immich would: the transform decides what the old client then sees.
      deps.metrics.authFailures.inc({ reason: decision.reason })
      return {
        status: 403,
        body: JSON.parse(immichErrorBody(403, decision.message, c.get('requestId'))) as unknown,
      }
    }
  }
  const headers = deps.forwarder.upstreamHeaders(c)
  for (const name of [
    'content-length',
    'content-type',
    'transfer-encoding',
    'expect',
    'range',
    'if-none-match',
    'if-modified-since',
    'if-range',
  ])
    delete headers[name]
  let body: string | undefined
  if (call.jsonBody !== undefined) {
    body = JSON.stringify(call.jsonBody)
    headers['content-type'] = 'application/json'
  }
  const res = await deps.forwarder.agent.request({
    origin: deps.forwarder.origin,
    method: call.method as 'GET',
    path: call.path + (call.query ?? ''),
    headers,
    body,
  })
  const text = await res.body.text()
  if (text.length > options.maxResponseBytes)
    throw new GatewayError(502, 'UPSTREAM_TOO_LARGE', 'Answer from Immich too large to translate')
  return {
    status: res.statusCode,
    body: jsonOf(Buffer.from(text), firstValue(res.headers['content-type'])),
  }
}
