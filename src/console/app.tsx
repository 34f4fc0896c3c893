/**
 * The web console: a Hono app of its own, server-rendered (hono/jsx), mounted on the gateway's main
 * port under `console.basePath` (src/console/mount.ts). Admins of Immich sign in with their Immich
 * session; every write goes through src/auth/keys-edit.ts, as the CLI's do.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { performance } from 'node:perf_hooks'
import { Hono, type Context, type MiddlewareHandler } from 'hono'
import { apiKeyAuthOptions } from '../../policies/api-key-auth/schema.js'
import { parseDuration } from '../auth/duration.js'
import {
  addClient,
  DEFAULT_UPSTREAM_KEY_ENV,
  KeyEditError,
  readClients,
  revokeClient,
  rotateClient,
} from '../auth/keys-edit.js'
import { KeysFileError, keysFileFor, type ClientEntry } from '../auth/keys-file.js'
import { loadScopeResolver, type ScopeResolver } from '../auth/scopes.js'
import { ConfigError } from '../config/load.js'
import type { GatewayConfig } from '../config/schema.js'
import type { Deps } from '../deps.js'
import { packageFile } from '../paths.js'
import { loadRouteTable } from '../routing/route-table.js'
import { SCRIPT, STYLESHEET } from './assets.js'
import type { ConsoleRecorder } from './recorder.js'
import { cookieValue, SessionChecker, type ConsoleUser } from './session.js'
import {
  AddPage,
  ClientPage,
  ClientsPage,
  HealthPage,
  NewKeyPage,
  Problem,
  RevokePage,
  type AddForm,
  type ClientRow,
  type HealthView,
  type PermissionArea,
  type SortKey,
} from './views.js'

/** What the gateway hands the console with each request (src/console/mount.ts). */
export type ConsoleBindings = {
  clientIp: string
  requestId: string
  /** The browser reached the gateway over https (directly or through a trusted proxy). */
  secure: boolean
}

export type ConsoleEnv = {
  Bindings: ConsoleBindings
  Variables: {
    user: ConsoleUser
    /** The CSRF token every form of this page carries. */
    csrf: string
    form: Record<string, string | File | (string | File)[]>
  }
}

export interface ConsoleOptions {
  recorder: ConsoleRecorder
  /** Registers cleanup for gateway shutdown (the Immich probe timer). */
  onClose: (fn: () => void) => void
}

/** The console's own cookie: random, HttpOnly, SameSite=Strict; the CSRF token is bound to it. */
const CONSOLE_COOKIE = 'igw_console'
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/
const PROBE_EVERY_MS = 30_000

/**
 * Content-Security-Policy of every console page: only its own stylesheet and script, forms posting to
 * itself, never framed. No `unsafe-inline` anywhere.
 */
const CSP = [
  "default-src 'none'",
  "style-src 'self'",
  "script-src 'self'",
  "img-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ')

const SORT_KEYS: readonly SortKey[] = [
  'name',
  'created',
  'expires',
  'lastSeen',
  'requests',
  'unauthorized',
  'forbidden',
  'limited',
  'legacy',
]

function csrfToken(cookie: string, user: ConsoleUser): string {
  // Bound to the console cookie (HttpOnly: a page of another site cannot read it) and to the session
  // (a planted cookie alone does not give the token). No server secret, so replicas agree.
  return createHash('sha256').update(`${cookie}|${user.id}`).digest('base64url')
}

function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/** Permissions by area (the part before the first dot), as the scope picker shows them. */
function permissionAreas(resolver: ScopeResolver): PermissionArea[] {
  const routes = loadRouteTable(packageFile('config/immich-routes.json'))
  const adminOnly = new Map<string, boolean>()
  for (const r of routes) {
    if (r.permission === null) continue
    adminOnly.set(r.permission, (adminOnly.get(r.permission) ?? true) && r.adminOnly)
  }
  const areas = new Map<string, PermissionArea>()
  for (const name of [...resolver.catalogue.permissions].sort()) {
    if (name === 'all') continue
    const area = name.split('.')[0]!
    let entry = areas.get(area)
    if (!entry) areas.set(area, (entry = { area, permissions: [] }))
    entry.permissions.push({ name, adminOnly: adminOnly.get(name) ?? false })
  }
  return [...areas.values()]
}

/** `90d` from now, or a date/time; empty is undefined. Throws KeyEditError on anything else. */
function expiryInstant(text: string, now: number): string | undefined {
  const value = text.trim()
  if (value === '') return undefined
  if (/^\d+[smhdw]$/.test(value)) return new Date(now + parseDuration(value)).toISOString()
  const ms = Date.parse(value)
  if (Number.isNaN(ms))
    throw new KeyEditError('a duration (90d, 12h) or a date (2027-06-30)', 'expiresAt')
  if (ms <= now) throw new KeyEditError('this is in the past', 'expiresAt')
  return new Date(ms).toISOString()
}

function text(form: ConsoleEnv['Variables']['form'], name: string): string {
  const v = form[name]
  return typeof v === 'string' ? v : ''
}

function list(value: string): string[] {
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}

/**
 * The console app. Paths are absolute (`<basePath>/...`); the gateway hands it every request under
 * its base path. Throws ConfigError when the console cannot work with this configuration.
 */
export function createConsole(
  config: GatewayConfig,
  deps: Deps,
  options: ConsoleOptions
): Hono<ConsoleEnv> {
  const { basePath: base, sessionCacheSeconds, token } = config.console
  const keyOptions = config.policies['api-key-auth']
  if (keyOptions === false)
    throw new ConfigError(
      'console.enabled: the console manages gateway keys and needs the api-key-auth policy (policies.api-key-auth is false)'
    )
  const keyAuth = apiKeyAuthOptions.parse(keyOptions ?? {})
  const keys = keysFileFor(keyAuth.keysFile, config.environment)
  if (keys === undefined)
    throw new ConfigError(
      'console.enabled: the console writes the keys file; set policies.api-key-auth.keysFile or GATEWAY_KEYS_FILE'
    )
  const { file } = keys
  const presetsFile = keyAuth.presetsFile ?? config.environment?.presetsFile
  const resolver = (): ScopeResolver => loadScopeResolver(presetsFile, deps.catalogue)
  const areas = permissionAreas(resolver())
  const sessions = new SessionChecker(deps, sessionCacheSeconds * 1000, token)
  const { recorder, onClose } = options
  const { logger } = deps
  const editOptions = { presetsFile, asGatewayLoads: { env: config.environment?.vars ?? {} } }

  const probeImmich = async (): Promise<HealthView['immich']> => {
    const started = performance.now()
    try {
      const res = await deps.forwarder.agent.request({
        origin: deps.forwarder.origin,
        path: '/api/server/ping',
        method: 'GET',
        headersTimeout: 2000,
        bodyTimeout: 2000,
      })
      await res.body.dump()
      const ms = performance.now() - started
      const ok = res.statusCode === 200
      recorder.probe(Date.now(), ok ? ms : undefined)
      return { ok, detail: `status ${res.statusCode}`, ms }
    } catch (err) {
      recorder.probe(Date.now(), undefined)
      return { ok: false, detail: (err as { code?: string }).code ?? 'no answer' }
    }
  }
  const timer = setInterval(() => void probeImmich(), PROBE_EVERY_MS)
  timer.unref()
  onClose(() => clearInterval(timer))

  const audit = (c: Context<ConsoleEnv>, action: string, client: string, extra = {}) =>
    logger.info(
      {
        audit: 'console',
        action,
        client,
        who: c.get('user').name,
        via: c.get('user').via,
        clientIp: c.env.clientIp,
        requestId: c.env.requestId,
        ...extra,
      },
      `console: ${action} ${client}`
    )

  const page = (c: Context<ConsoleEnv>) => ({
    base,
    who: c.get('user').name,
  })

  const app = new Hono<ConsoleEnv>({ strict: true })

  // Every answer: no caching (pages hold CSRF tokens, one holds a key), no framing, the CSP.
  app.use('*', async (c, next) => {
    await next()
    c.header('Content-Security-Policy', CSP)
    c.header('X-Content-Type-Options', 'nosniff')
    c.header('X-Frame-Options', 'DENY')
    c.header('Referrer-Policy', 'no-referrer')
    if (!c.res.headers.has('cache-control')) c.header('Cache-Control', 'no-store')
  })

  for (const asset of [STYLESHEET, SCRIPT]) {
    app.get(`${base}/static/${asset.name}`, (c) =>
      c.body(asset.body, 200, {
        'content-type': `${asset.type}; charset=utf-8`,
        'cache-control': 'public, max-age=31536000, immutable',
      })
    )
  }

  const signIn: MiddlewareHandler<ConsoleEnv> = async (c, next) => {
    const check = await sessions.check({
      cookie: c.req.header('cookie'),
      authorization: c.req.header('authorization'),
    })
    const url = new URL(c.req.url)
    if (check.status === 'signed-out') {
      const login = `/auth/login?continue=${encodeURIComponent(url.pathname + url.search)}`
      if (c.req.method === 'GET' || c.req.method === 'HEAD') return c.redirect(login, 302)
      return c.html(
        <Problem
          base={base}
          title='Signed out'
          message='Your Immich session has ended, so this change was not made. Sign in to Immich again, then repeat it.'
          link={<a href={login}>Sign in to Immich</a>}
        />,
        401
      )
    }
    if (check.status === 'unavailable')
      return c.html(
        <Problem
          base={base}
          title='Immich did not answer'
          message="The console asks Immich who is signed in, and Immich did not answer. See the gateway's /readyz and try again shortly."
        />,
        503
      )
    const { user } = check
    if (!user.isAdmin)
      return c.html(
        <Problem
          base={base}
          title='Administrators only'
          message={`The gateway console is for Immich administrators. You are signed in to Immich as ${user.name}, which is not an admin account.`}
          link={<a href='/'>Back to Immich</a>}
        />,
        403
      )
    c.set('user', user)
    let cookie = cookieValue(c.req.header('cookie'), CONSOLE_COOKIE)
    const hadCookie = cookie !== undefined && COOKIE_VALUE.test(cookie)
    if (!hadCookie) {
      cookie = randomBytes(32).toString('base64url')
      c.header(
        'Set-Cookie',
        `${CONSOLE_COOKIE}=${cookie}; Path=${base}; HttpOnly; SameSite=Strict${c.env.secure ? '; Secure' : ''}`
      )
    }
    const csrf = csrfToken(cookie!, user)
    c.set('csrf', csrf)
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      const form = await c.req
        .parseBody({ all: true })
        .catch((): ConsoleEnv['Variables']['form'] => ({}))
      c.set('form', form)
      // A bearer token is no ambient credential: a page of another site cannot send it.
      if (user.via !== 'token') {
        const given = typeof form._csrf === 'string' ? form._csrf : ''
        const crossSite = c.req.header('sec-fetch-site') === 'cross-site'
        if (!hadCookie || crossSite || !sameToken(given, csrf)) {
          logger.warn(
            { audit: 'console', action: 'csrf-refused', clientIp: c.env.clientIp },
            'console: a write without a valid CSRF token was refused'
          )
          return c.html(
            <Problem
              {...page(c)}
              title='Change refused'
              message='This form is out of date or was sent from another site, so nothing was changed. Go back, reload the page and try again.'
              link={<a href={`${base}/`}>Back to the clients</a>}
            />,
            403
          )
        }
      }
    }
    return next()
  }

  app.get(base, (c) => c.redirect(`${base}/`, 308))
  app.use(`${base}/*`, signIn)

  const findClient = (name: string): ClientEntry | undefined =>
    readClients(file).find((e) => e.name === name)
  const notFound = (c: Context<ConsoleEnv>, name: string) =>
    c.html(
      <Problem
        {...page(c)}
        title='No such client'
        message={`There is no client named "${name}" in the keys file (it may have been revoked).`}
        link={<a href={`${base}/`}>Back to the clients</a>}
      />,
      404
    )

  app.get(`${base}/`, (c) => {
    const now = Date.now()
    const sortParam = c.req.query('sort') as SortKey | undefined
    const sort = sortParam && SORT_KEYS.includes(sortParam) ? sortParam : 'name'
    const dir = c.req.query('dir') === 'desc' ? 'desc' : 'asc'
    const rows: ClientRow[] = readClients(file).map((entry) => {
      const stats = recorder.get(entry.name)
      return {
        entry,
        stats,
        requests: stats?.requests.sum(now) ?? 0,
        unauthorized: stats?.unauthorized.sum(now) ?? 0,
        forbidden: stats?.forbidden.sum(now) ?? 0,
        limited: stats?.limited.sum(now) ?? 0,
        legacy: stats?.legacy.sum(now) ?? 0,
      }
    })
    const key = (r: ClientRow): string | number => {
      switch (sort) {
        case 'name':
          return r.entry.name
        case 'created':
          return r.entry.createdAt ? Date.parse(r.entry.createdAt) : 0
        case 'expires':
          return r.entry.expiresAt ? Date.parse(r.entry.expiresAt) : Infinity
        case 'lastSeen':
          return r.stats?.lastSeen ?? 0
        default:
          return r[sort]
      }
    }
    rows.sort((a, b) => {
      const x = key(a)
      const y = key(b)
      const order = x < y ? -1 : x > y ? 1 : a.entry.name.localeCompare(b.entry.name)
      return dir === 'asc' ? order : -order
    })
    const revoked = c.req.query('revoked')
    return c.html(
      <ClientsPage
        {...page(c)}
        rows={rows}
        presets={resolver().presets}
        sort={sort}
        dir={dir}
        now={now}
        file={file}
        notice={revoked ? `Revoked ${revoked}: its key no longer works.` : undefined}
      />
    )
  })

  const emptyForm: AddForm = {
    name: '',
    description: '',
    scopes: [],
    expires: '',
    allowFrom: '',
    albums: '',
    upstreamKeyEnv: DEFAULT_UPSTREAM_KEY_ENV,
  }

  app.get(`${base}/clients/new`, (c) =>
    c.html(
      <AddPage
        {...page(c)}
        csrf={c.get('csrf')}
        form={emptyForm}
        presets={resolver().presets}
        areas={areas}
        errors={{}}
      />
    )
  )

  app.post(`${base}/clients`, (c) => {
    const body = c.get('form')
    const raw = body.scope
    const scopes = (Array.isArray(raw) ? raw : raw === undefined ? [] : [raw]).filter(
      (s): s is string => typeof s === 'string'
    )
    const form: AddForm = {
      name: text(body, 'name').trim(),
      description: text(body, 'description').trim(),
      scopes,
      expires: text(body, 'expires'),
      allowFrom: text(body, 'allowFrom'),
      albums: text(body, 'albums'),
      upstreamKeyEnv: text(body, 'upstreamKeyEnv').trim() || DEFAULT_UPSTREAM_KEY_ENV,
    }
    try {
      const now = Date.now()
      const expiresAt = expiryInstant(form.expires, now)
      const { key, entry } = addClient(
        file,
        {
          name: form.name,
          scopes,
          upstreamKeyEnv: form.upstreamKeyEnv,
          ...(expiresAt ? { expiresAt } : {}),
          allowFrom: list(form.allowFrom),
          albums: list(form.albums),
          ...(form.description ? { description: form.description } : {}),
        },
        { ...editOptions, now }
      )
      audit(c, 'add', entry.name, {
        scopes: entry.scopes,
        ...(entry.expiresAt ? { expiresAt: entry.expiresAt } : {}),
        ...(entry.allowFrom ? { allowFrom: entry.allowFrom } : {}),
        ...(entry.albums ? { albums: entry.albums } : {}),
      })
      return c.html(
        <NewKeyPage {...page(c)} client={entry.name} newKey={key} what={`Added ${entry.name}.`} />
      )
    } catch (err) {
      if (!(err instanceof KeyEditError) && !(err instanceof KeysFileError)) throw err
      const field = err instanceof KeyEditError ? err.field : undefined
      const errors: Partial<Record<keyof AddForm | 'form', string>> = {}
      if (field === 'expiresAt') errors.expires = `Expires: ${err.message}`
      else if (field === 'name') errors.name = `Name: ${err.message}`
      else if (field === 'scopes')
        errors.scopes = scopes.length === 0 ? 'Pick at least one scope.' : err.message
      else if (field === 'allowFrom') errors.allowFrom = `Allowed addresses: ${err.message}`
      else if (field === 'albums') errors.albums = `Albums: ${err.message}`
      else if (field === 'upstreamKeyEnv')
        errors.upstreamKeyEnv = `Environment variable: ${err.message}`
      else errors.form = err.message
      return c.html(
        <AddPage
          {...page(c)}
          csrf={c.get('csrf')}
          form={form}
          presets={resolver().presets}
          areas={areas}
          errors={errors}
        />,
        400
      )
    }
  })

  app.get(`${base}/clients/:name`, (c) => {
    const name = c.req.param('name')
    const entry = findClient(name)
    if (!entry) return notFound(c, name)
    const scopes = resolver()
    let granted: string[]
    try {
      granted = [...scopes.expand(entry.scopes)].sort()
    } catch {
      granted = []
    }
    return c.html(
      <ClientPage
        {...page(c)}
        entry={entry}
        presets={scopes.presets}
        granted={granted}
        stats={recorder.get(name)}
        now={Date.now()}
        csrf={c.get('csrf')}
      />
    )
  })

  app.post(`${base}/clients/:name/rotate`, (c) => {
    const name = c.req.param('name')
    if (!findClient(name)) return notFound(c, name)
    let graceMs: number
    try {
      graceMs = parseDuration(text(c.get('form'), 'grace') || '24h')
    } catch {
      graceMs = 86_400_000
    }
    const { key, oldValidUntil } = rotateClient(file, name, graceMs, editOptions)
    audit(c, 'rotate', name, { graceSeconds: graceMs / 1000 })
    return c.html(
      <NewKeyPage
        {...page(c)}
        client={name}
        newKey={key}
        what={`Rotated the key of ${name}.`}
        oldValidUntil={oldValidUntil}
      />
    )
  })

  app.get(`${base}/clients/:name/revoke`, (c) => {
    const name = c.req.param('name')
    if (!findClient(name)) return notFound(c, name)
    return c.html(<RevokePage {...page(c)} client={name} csrf={c.get('csrf')} />)
  })

  app.post(`${base}/clients/:name/revoke`, (c) => {
    const name = c.req.param('name')
    if (!findClient(name)) return notFound(c, name)
    revokeClient(file, name, editOptions)
    audit(c, 'revoke', name)
    return c.redirect(`${base}/?revoked=${encodeURIComponent(name)}`, 303)
  })

  app.get(`${base}/health`, async (c) => {
    const now = Date.now()
    const [immich, redis, cache] = await Promise.all([
      probeImmich(),
      redisHealth(deps),
      cacheHealth(config, deps),
    ])
    const legacy = recorder
      .names()
      .map((client) => ({ client, calls: recorder.get(client)!.legacy.sum(now) }))
      .filter((l) => l.calls > 0)
      .sort((a, b) => b.calls - a.calls)
    const health: HealthView = {
      immich,
      ...(redis ? { redis } : {}),
      ...(cache ? { cache } : {}),
      requestsPerMinute: recorder.requestsPerMinute.series(now),
      refusalsPerMinute: recorder.refusalsPerMinute.series(now),
      latency: recorder.probes.slice(-60).map((p) => p.ms),
      legacy,
      clients: readClients(file).length,
    }
    return c.html(<HealthPage {...page(c)} health={health} />)
  })

  app.notFound((c) =>
    c.html(
      <Problem
        base={base}
        title='Not found'
        message='There is no such console page.'
        link={<a href={`${base}/`}>Back to the clients</a>}
      />,
      404
    )
  )

  app.onError((err, c) => {
    logger.error({ err, requestId: c.env.requestId }, 'console: unhandled error')
    return c.html(
      <Problem
        base={base}
        title='Something went wrong'
        message={`The console could not complete this request (request id ${c.env.requestId}); the gateway's log has the details.`}
      />,
      500
    )
  })

  return app
}

async function redisHealth(deps: Deps): Promise<HealthView['redis']> {
  const redis = deps.redis
  if (!redis) return undefined
  const started = performance.now()
  try {
    await Promise.race([
      redis.ping(),
      new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), 1000).unref()),
    ])
    return { ok: true, detail: 'PING answered', ms: performance.now() - started }
  } catch (err) {
    return { ok: false, detail: (err as Error).message }
  }
}

async function cacheHealth(config: GatewayConfig, deps: Deps): Promise<HealthView['cache']> {
  if (config.policies['thumbnail-cache'] === false) return undefined
  const lookups = await deps.metrics.cacheRequests.get()
  let hits = 0
  let total = 0
  for (const v of lookups.values) {
    if (v.labels.result === 'bypass') continue
    total += v.value
    if (v.labels.result === 'hit') hits += v.value
  }
  const storedBytes: Record<string, number> = {}
  for (const v of (await deps.metrics.cacheStoredBytes.get()).values)
    storedBytes[String(v.labels.tier)] = v.value
  return { lookups: total, storedBytes, ...(total > 0 ? { hitRatio: hits / total } : {}) }
}
