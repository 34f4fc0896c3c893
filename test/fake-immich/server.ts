// A fake Immich 3.1 upstream: a real `node:http` server that answers like the captures in
// /work/shared/immich/samples (X-Powered-By: Express, X-Correlation-ID, `{"message": ...}` errors,
// Express-style ETags, Range/304 on media) and records every request it receives, so the gateway's
// tests can forward to it and assert on what arrived.
import http, {
  type IncomingHttpHeaders,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import type { Socket } from 'node:net'
import { createHash, randomUUID, type Hash } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import { Server as SocketIOServer } from 'socket.io'
import { ByteSource, expectedJpeg, expectedThumbnail, originalSeed } from './bytes.js'
import { MultipartParser, boundaryOf } from './multipart.js'
import {
  apiKeyDenial,
  apiKeyDto,
  FakeApiKeyStore,
  genericAnswer,
  immichRoute,
  type KeyCaller,
} from './api-keys.js'
import { serveLoginPage } from './web-login.js'

export {
  expectedBytes,
  expectedRange,
  expectedThumbnail,
  expectedJpeg,
  ByteSource,
} from './bytes.js'

// ---------------------------------------------------------------------------------------------
// Public types
// ---------------------------------------------------------------------------------------------

export interface FakeUser {
  userId: string
  name: string
  isAdmin?: boolean
  /** Defaults to `<name lowercased>@example.com` (so `Admin` → `admin@example.com`). */
  email?: string
}

export interface FakeSharedLink {
  /** Owner of the link. */
  userId: string
  /** Password-protected link: needs cookie `immich_shared_link_token` (see `/api/shared-links/login`). */
  password?: string
}

export interface FakeImmichOptions {
  /** 0 / undefined → a free port. */
  port?: number
  /** Default 127.0.0.1. */
  host?: string
  /** API keys (`x-api-key` header or `apiKey` query). */
  apiKeys?: Record<string, FakeUser>
  /** Session tokens (cookie `immich_access_token`, Bearer, `x-immich-user-token`, ...). Default `{ 'fake-session-token': Admin }`. */
  sessions?: Record<string, FakeUser>
  /** Shared-link keys (`x-immich-share-key` / `key`). Default `fake-share-key` and `fake-share-key-protected` (password `secret`). */
  sharedLinks?: Record<string, FakeSharedLink>
  /** Shared-link slugs (`x-immich-share-slug` / `slug`). Default `fake-share-slug`. */
  sharedLinkSlugs?: Record<string, FakeSharedLink>
  /** Size of originals / video playbacks in bytes (default 1 MiB). Per asset: `setAssetSize`. */
  originalSize?: number
  /** Size of asset thumbnails in bytes (default 40960). */
  thumbnailSize?: number
  /** sha1 checksums (hex or base64) that `x-immich-checksum` reports as duplicates. */
  knownChecksums?: string[]
  /** Keep at most this many recorded requests (oldest dropped). Default: unlimited. */
  maxRecordedRequests?: number
  /** Keep at most this many leading body bytes per recorded request (`record.body`). Default 1 MiB. */
  maxCapturedBody?: number
  /** gzip JSON bodies >= 1 KiB when the client accepts gzip (like Immich's compression middleware). Default false. */
  compression?: boolean
  /**
   * Answer every route-table operation the fake has no handler for (after authentication and the API
   * key permission check) with a generic 200/201/204, so recorded client call sequences replay. Default false (404).
   */
  answerEveryRoute?: boolean
}

export interface UploadInfo {
  status: 'receiving' | 'created' | 'duplicate' | 'aborted' | 'rejected'
  /** Raw request body bytes / sha1 (hex). */
  bytes: number
  sha1: string
  /** Text parts. */
  fields: Record<string, string>
  /** File parts by field name (`assetData`, `sidecarData`). */
  files: Record<string, { filename?: string; contentType?: string; bytes: number; sha1: string }>
  /** Size and sha1 (hex) of the `assetData` part. */
  fileBytes: number
  fileSha1: string
  /** The asset id answered. */
  assetId?: string
  error?: string
}

export interface RecordedRequest {
  /** Sequence number (1-based, never reset). */
  seq: number
  method: string
  /** Raw request target, with query. */
  url: string
  /** Path without query. */
  path: string
  query: URLSearchParams
  headers: IncomingHttpHeaders
  /** Node's raw header list `[name, value, name, value, ...]` (original case and order). */
  rawHeaders: string[]
  httpVersion: string
  remoteAddress: string | undefined
  remotePort: number | undefined
  /** The TCP connection it came on (`socket.destroyed` tells whether that connection is closed). */
  socket: Socket
  /** X-Correlation-ID the fake answered with. */
  correlationId: string
  /** Request body bytes received so far / in total, and the sha1 (hex) of them (final once `bodyComplete`). */
  bodyBytes: number
  bodySha1: string
  bodyComplete: boolean
  /** The first `maxCapturedBody` (default 1 MiB) bytes of the body. */
  body: Buffer
  /** Parsed JSON body (when the body is JSON and complete). */
  json?: unknown
  /** Who the fake authenticated the request as (routes that authenticate). */
  user?: { id: string; name: string; email: string; isAdmin: boolean; via: AuthVia }
  /** Status code answered (once known). */
  status?: number
  /** Response body bytes written by the fake's built-in handlers. */
  responseBytes: number
  /** The client side went away before the request body or the response was complete. */
  aborted: boolean
  expectContinue: boolean
  continueSent: boolean
  /** A WebSocket upgrade request (socket.io handshake). */
  upgrade: boolean
  upload?: UploadInfo
  startedAt: number
  /** Resolves when the exchange is over (response closed, or the upgraded socket closed). */
  finished: Promise<void>
}

export type AuthVia = 'shared-link-key' | 'shared-link-slug' | 'session' | 'api-key'

export type AuthResult =
  | {
      ok: true
      via: AuthVia
      user: { id: string; name: string; email: string; isAdmin: boolean }
      /** What the media bytes are derived from: the user id, or `share:<key>` / `slug:<slug>`. */
      principal: string
      sharedLink?: string
      /** API keys minted through `POST /api/api-keys`: their id and permissions. */
      keyId?: string
      keyPermissions?: readonly string[]
    }
  | { ok: false; status: number; message: string }

export interface HandlerContext {
  url: URL
  match: RegExpExecArray
  record: RecordedRequest
  /** Authenticate like Immich (share key, slug, session, api key). */
  auth(): AuthResult
  sendJson(status: number, body: unknown, headers?: Record<string, string | string[]>): void
  /** Read (and record) the whole request body. */
  readBody(): Promise<Buffer>
}

export type FakeHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  ctx: HandlerContext
) => void | Promise<void>

export interface FakeImmich {
  readonly url: string
  readonly port: number
  /** Every request received, oldest first (a live array; `clearRequests()` empties it in place). */
  readonly requests: RecordedRequest[]
  readonly io: SocketIOServer
  readonly server: http.Server
  /** The most recent recorded request; throws when none was recorded. */
  lastRequest(): RecordedRequest
  /** Recorded requests whose path matches (string: exact path or prefix ending in `/`), optionally by method. */
  requestsTo(path: string | RegExp, method?: string): RecordedRequest[]
  clearRequests(): void
  /** `io.emit(event, payload)` to every connected socket. */
  emit(event: string, payload?: unknown): void
  /** Emit to the sockets of one user (Immich puts every socket in a room named after its user id). */
  emitToUser(userId: string, event: string, payload?: unknown): void
  /** Open TCP connections to the fake (HTTP keep-alive and upgraded WebSockets). */
  openSockets(): number
  /** Resolves once `openSockets() <= max`; rejects after `timeoutMs`. */
  waitForOpenSockets(max: number, timeoutMs?: number): Promise<void>
  /** Requests that reached `GET|HEAD /api/assets/{id}/thumbnail` for that id (any outcome). */
  thumbnailHits(id: string): number
  /** Requests that reached `POST /api/auth/login`. */
  loginAttempts(): number
  /** Add/override a route (checked before the built-ins, newest first). `method` `'*'` = any. Returns a remover. */
  setHandler(method: string, path: RegExp | string, handler: FakeHandler): () => void
  /** Size in bytes of `/original` and `/video/playback` for one asset. */
  setAssetSize(id: string, bytes: number): void
  /** Make an `x-immich-checksum` (hex or base64 sha1) a duplicate; returns the asset id it maps to. */
  addKnownChecksum(checksum: string, assetId?: string): string
  /** API keys minted through `POST /api/api-keys` (test/fake-immich/api-keys.ts). */
  readonly apiKeys: FakeApiKeyStore
  /** Drop handler overrides, recorded requests, counters, asset sizes, learned checksums and minted keys. */
  reset(): void
  close(): Promise<void>
}

// ---------------------------------------------------------------------------------------------
// Constants
// ---------------------------------------------------------------------------------------------

export const DEFAULT_API_KEYS: Record<string, FakeUser> = {
  'fake-admin-key': { userId: 'u-admin', name: 'Admin', isAdmin: true },
  'fake-user-key': { userId: 'u-user', name: 'User' },
}
export const FAKE_SESSION_TOKEN = 'fake-session-token'
export const FAKE_SHARED_LINK_TOKEN = 'fake-shared-link-token'
export const ADMIN_EMAIL = 'admin@example.com'
export const ADMIN_PASSWORD = 'password'
export const SHARED_LINK_PASSWORD = 'secret'
export const SERVER_VERSION = { major: 3, minor: 1, patch: 0 } as const
/** What a live Immich 3.1 sends for thumbnails, originals and video playback. */
export const MEDIA_CACHE_CONTROL =
  'private, max-age=86400, no-transform, stale-while-revalidate=2592000, stale-if-error=2592000'
export const PERSON_THUMBNAIL_CACHE_CONTROL = 'private, no-cache, no-transform'
export const MEDIA_LAST_MODIFIED = 'Sun, 22 Nov 2026 11:13:04 GMT'
export const DEFAULT_ORIGINAL_SIZE = 1024 * 1024
export const DEFAULT_THUMBNAIL_SIZE = 40960
export const SOCKET_IO_PATH = '/api/socket.io'

const EMPTY_SHA1 = 'da39a3ee5e6b4b0d3255bfef95601890afd80709'
const MAX_CAPTURED_BODY = 1024 * 1024
const MAX_CACHED_MEDIA = 4 * 1024 * 1024
const LAST_MODIFIED_MS = Date.parse(MEDIA_LAST_MODIFIED)
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
const STRICT_UUID_PATTERN =
  '/^([0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12})$/'

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name]
  return Array.isArray(v) ? v[0] : v
}

function randomId(): string {
  let s = ''
  while (s.length < 8) s += Math.random().toString(36).slice(2)
  return s.slice(0, 8)
}

function parseCookies(headers: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {}
  const raw = headers.cookie
  if (!raw) return out
  for (const piece of raw.split(';')) {
    const eq = piece.indexOf('=')
    if (eq <= 0) continue
    const k = piece.slice(0, eq).trim()
    let v = piece.slice(eq + 1).trim()
    if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1)
    try {
      v = decodeURIComponent(v)
    } catch {
      /* keep raw */
    }
    if (!(k in out)) out[k] = v
  }
  return out
}

function expressEtag(buf: Buffer): string {
  return `"${buf.length.toString(16)}-${createHash('sha1').update(buf).digest('base64').slice(0, 27)}"`
}

function emailOf(u: FakeUser): string {
  return u.email ?? `${u.name.toLowerCase().replace(/[^a-z0-9]+/g, '.')}@example.com`
}

function normalizeChecksum(value: string): string | undefined {
  const v = value.trim()
  if (/^[0-9a-f]{40}$/i.test(v)) return v.toLowerCase()
  const b = Buffer.from(v, 'base64')
  return b.length === 20 ? b.toString('hex') : undefined
}

function etagMatches(list: string, etag: string): boolean {
  if (list.trim() === '*') return true
  const strip = (t: string) => t.trim().replace(/^W\//, '')
  const mine = strip(etag)
  return list.split(',').some((t) => strip(t) === mine)
}

type ParsedRange = { start: number; end: number } | 'unsatisfiable' | undefined

/** Like `range-parser` as used by Express's `send`: undefined = ignore the header (serve 200). */
function parseRange(size: number, value: string): ParsedRange {
  const eq = value.indexOf('=')
  if (eq === -1) return undefined
  if (value.slice(0, eq).trim().toLowerCase() !== 'bytes') return undefined
  const parts = value.slice(eq + 1).split(',')
  const ranges: { start: number; end: number }[] = []
  for (const part of parts) {
    const m = /^\s*(\d*)\s*-\s*(\d*)\s*$/.exec(part)
    if (!m) continue
    const a = m[1] ?? ''
    const b = m[2] ?? ''
    let start: number
    let end: number
    if (a === '' && b === '') continue
    if (a === '') {
      start = size - Number(b)
      end = size - 1
      if (start < 0) start = 0
    } else {
      start = Number(a)
      end = b === '' ? size - 1 : Math.min(Number(b), size - 1)
    }
    if (start > end || start < 0 || !Number.isFinite(start) || !Number.isFinite(end)) continue
    ranges.push({ start, end })
  }
  if (ranges.length === 0) return 'unsatisfiable'
  if (ranges.length > 1) {
    // `send` combines overlapping ranges; if several remain it serves the whole file.
    ranges.sort((x, y) => x.start - y.start)
    const merged = [ranges[0]!]
    for (const r of ranges.slice(1)) {
      const last = merged[merged.length - 1]!
      if (r.start <= last.end + 1) last.end = Math.max(last.end, r.end)
      else merged.push(r)
    }
    return merged.length === 1 ? merged[0] : undefined
  }
  return ranges[0]
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

class Lru<V> {
  private readonly map = new Map<string, V>()
  constructor(private readonly max: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key)
    if (v !== undefined) {
      this.map.delete(key)
      this.map.set(key, v)
    }
    return v
  }
  set(key: string, value: V): void {
    this.map.delete(key)
    this.map.set(key, value)
    if (this.map.size > this.max) {
      const first = this.map.keys().next()
      if (!first.done) this.map.delete(first.value)
    }
  }
}

interface MediaEntity {
  length: number
  etag: string
  contentType: string
  cacheControl?: string
  disposition?: string
  /** Whole content in memory, or a range generator. */
  buffer?: Buffer
  chunks?: (start: number, endExclusive: number, chunkSize?: number) => Iterable<Buffer>
}

interface Route {
  methods: string[] | '*'
  re: RegExp
  /** Shared-link credentials may be used on this route. */
  sharedLink?: boolean
  /** The handler reads the body itself (otherwise the body is read and recorded before it runs). */
  stream?: boolean
  handler: (ctx: Ctx) => void | Promise<void>
}

interface Ctx extends HandlerContext {
  req: IncomingMessage
  res: ServerResponse
  expectContinue: boolean
  route?: Route
}

// ---------------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------------

export async function startFakeImmich(opts: FakeImmichOptions = {}): Promise<FakeImmich> {
  const apiKeys = opts.apiKeys ?? DEFAULT_API_KEYS
  const admin: FakeUser = { userId: 'u-admin', name: 'Admin', isAdmin: true, email: ADMIN_EMAIL }
  const sessions = opts.sessions ?? { [FAKE_SESSION_TOKEN]: admin }
  const sharedLinks = opts.sharedLinks ?? {
    'fake-share-key': { userId: 'u-admin' },
    'fake-share-key-protected': { userId: 'u-admin', password: SHARED_LINK_PASSWORD },
  }
  const sharedLinkSlugs = opts.sharedLinkSlugs ?? { 'fake-share-slug': { userId: 'u-admin' } }
  const originalSize = opts.originalSize ?? DEFAULT_ORIGINAL_SIZE
  const thumbnailSize = opts.thumbnailSize ?? DEFAULT_THUMBNAIL_SIZE
  const maxRecorded = opts.maxRecordedRequests ?? Infinity
  const compression = opts.compression ?? false
  const maxCaptured = opts.maxCapturedBody ?? MAX_CAPTURED_BODY

  const requests: RecordedRequest[] = []
  let seq = 0
  let overrides: { methods: string[] | '*'; re: RegExp; handler: FakeHandler }[] = []
  let thumbHits = new Map<string, number>()
  let logins = 0
  let assetSizes = new Map<string, number>()
  let checksums = new Map<string, string>()
  const initialChecksums = opts.knownChecksums ?? []
  const addKnownChecksum = (checksum: string, assetId?: string): string => {
    const hex = normalizeChecksum(checksum)
    if (!hex) throw new Error(`not a sha1 checksum: ${checksum}`)
    const id = assetId ?? checksums.get(hex) ?? randomUUID()
    checksums.set(hex, id)
    return id
  }
  for (const c of initialChecksums) addKnownChecksum(c)

  const minted = new FakeApiKeyStore()
  const mediaCache = new Lru<MediaEntity>(1024)
  const sockets = new Set<Socket>()

  // ----- recording --------------------------------------------------------------------------

  function pushRecord(rec: RecordedRequest): void {
    requests.push(rec)
    if (requests.length > maxRecorded) requests.splice(0, requests.length - maxRecorded)
  }

  function newRecord(
    req: IncomingMessage,
    correlationId: string,
    expectContinue: boolean
  ): {
    rec: RecordedRequest
    done: () => void
  } {
    const rawUrl = req.url ?? '/'
    const q = rawUrl.indexOf('?')
    let resolveFinished!: () => void
    const finished = new Promise<void>((r) => (resolveFinished = r))
    const rec: RecordedRequest = {
      seq: ++seq,
      method: req.method ?? 'GET',
      url: rawUrl,
      path: q === -1 ? rawUrl : rawUrl.slice(0, q),
      query: new URLSearchParams(q === -1 ? '' : rawUrl.slice(q + 1)),
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      httpVersion: req.httpVersion,
      remoteAddress: req.socket.remoteAddress,
      remotePort: req.socket.remotePort,
      socket: req.socket,
      correlationId,
      bodyBytes: 0,
      bodySha1: EMPTY_SHA1,
      bodyComplete: false,
      body: Buffer.alloc(0),
      responseBytes: 0,
      aborted: false,
      expectContinue,
      continueSent: false,
      upgrade: false,
      startedAt: Date.now(),
      finished,
    }
    pushRecord(rec)
    return { rec, done: resolveFinished }
  }

  /** Taps `req.emit` so every body byte is counted and hashed, however the body is consumed. */
  function tapBody(req: IncomingMessage, rec: RecordedRequest, res?: ServerResponse): void {
    let hash: Hash | undefined
    const captured: Buffer[] = []
    let capturedBytes = 0
    const finish = () => {
      if (rec.bodyComplete) return
      rec.bodySha1 = hash ? hash.digest('hex') : EMPTY_SHA1
      hash = undefined
      rec.body = captured.length === 1 ? captured[0]! : Buffer.concat(captured)
    }
    const origEmit = req.emit
    req.emit = function (
      this: IncomingMessage,
      event: string | symbol,
      ...args: unknown[]
    ): boolean {
      if (event === 'data') {
        const chunk = args[0] as Buffer
        rec.bodyBytes += chunk.length
        ;(hash ??= createHash('sha1')).update(chunk)
        if (capturedBytes < maxCaptured) {
          const piece = chunk.subarray(0, maxCaptured - capturedBytes)
          captured.push(piece)
          capturedBytes += piece.length
        }
      } else if (event === 'end') {
        finish()
        rec.bodyComplete = true
        const ct = header(req.headers, 'content-type') ?? ''
        if (/json/i.test(ct) && rec.body.length > 0 && rec.bodyBytes <= maxCaptured) {
          try {
            rec.json = JSON.parse(rec.body.toString('utf8'))
          } catch {
            /* not JSON after all */
          }
        }
      } else if (event === 'close' || event === 'aborted' || event === 'error') {
        if (!req.complete) {
          // Not an abort when the fake already answered without wanting the rest of the body
          // (e.g. a duplicate upload, or a 401 to `Expect: 100-continue`).
          if (!res?.writableFinished) rec.aborted = true
          finish()
        }
      }
      return origEmit.apply(this, [event, ...args] as Parameters<typeof origEmit>)
    } as typeof req.emit
  }

  function readBody(req: IncomingMessage, rec: RecordedRequest): Promise<Buffer> {
    if (rec.bodyComplete) return Promise.resolve(rec.body)
    return new Promise<Buffer>((resolve, reject) => {
      const onEnd = () => {
        cleanup()
        resolve(rec.body)
      }
      const onClose = () => {
        cleanup()
        if (rec.bodyComplete) resolve(rec.body)
        else reject(new Error('request aborted'))
      }
      const cleanup = () => {
        req.off('end', onEnd)
        req.off('close', onClose)
        req.off('error', onClose)
      }
      req.on('end', onEnd)
      req.on('close', onClose)
      req.on('error', onClose)
      req.resume()
    })
  }

  // ----- auth -------------------------------------------------------------------------------

  function userInfo(u: FakeUser) {
    return { id: u.userId, name: u.name, email: emailOf(u), isAdmin: u.isAdmin ?? false }
  }

  function findUser(userId: string): FakeUser {
    for (const u of [...Object.values(sessions), ...Object.values(apiKeys)])
      if (u.userId === userId) return u
    return userId === admin.userId ? admin : { userId, name: userId }
  }

  function authenticate(
    headers: IncomingHttpHeaders,
    query: URLSearchParams | undefined,
    allowSharedLink: boolean
  ): AuthResult {
    const shareKey = header(headers, 'x-immich-share-key') ?? query?.get('key') ?? undefined
    const shareSlug = header(headers, 'x-immich-share-slug') ?? query?.get('slug') ?? undefined
    if (shareKey !== undefined || shareSlug !== undefined) {
      const byKey = shareKey !== undefined
      const found = byKey ? sharedLinks[shareKey] : sharedLinkSlugs[shareSlug!]
      if (!found)
        return {
          ok: false,
          status: 401,
          message: byKey ? 'Invalid share key' : 'Invalid share slug',
        }
      if (!allowSharedLink) return { ok: false, status: 403, message: 'Forbidden' }
      if (
        found.password !== undefined &&
        parseCookies(headers).immich_shared_link_token !== FAKE_SHARED_LINK_TOKEN
      ) {
        return { ok: false, status: 401, message: 'Password required' }
      }
      const owner = findUser(found.userId)
      return {
        ok: true,
        via: byKey ? 'shared-link-key' : 'shared-link-slug',
        user: userInfo(owner),
        principal: byKey ? `share:${shareKey}` : `slug:${shareSlug}`,
        sharedLink: byKey ? shareKey : shareSlug,
      }
    }
    const auth = header(headers, 'authorization')
    const bearer = auth && /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim()
    const session =
      header(headers, 'x-immich-user-token') ??
      header(headers, 'x-immich-session-token') ??
      query?.get('sessionKey') ??
      (bearer || undefined) ??
      parseCookies(headers).immich_access_token
    if (session !== undefined) {
      const u = sessions[session]
      if (!u) return { ok: false, status: 401, message: 'Invalid user token' }
      return { ok: true, via: 'session', user: userInfo(u), principal: u.userId }
    }
    const apiKey = header(headers, 'x-api-key') ?? query?.get('apiKey') ?? undefined
    if (apiKey !== undefined) {
      const u = apiKeys[apiKey]
      if (u) return { ok: true, via: 'api-key', user: userInfo(u), principal: u.userId }
      const key = minted.bySecret(apiKey)
      if (!key) return { ok: false, status: 401, message: 'Invalid API key' }
      const owner = findUser(key.userId)
      return {
        ok: true,
        via: 'api-key',
        user: userInfo(owner),
        principal: owner.userId,
        keyId: key.id,
        keyPermissions: key.permissions,
      }
    }
    return { ok: false, status: 401, message: 'Authentication required' }
  }

  // ----- responses --------------------------------------------------------------------------

  function sendJson(
    ctx: Ctx,
    status: number,
    body: unknown,
    headers?: Record<string, string | string[]>
  ): void {
    const { req, res, record } = ctx
    if (res.headersSent || res.destroyed) return
    let buf = Buffer.from(JSON.stringify(body) ?? '', 'utf8')
    const etag = expressEtag(buf)
    if (headers) for (const [k, v] of Object.entries(headers)) res.setHeader(k, v)
    const method = req.method ?? 'GET'
    if ((method === 'GET' || method === 'HEAD') && status >= 200 && status < 300) {
      const inm = header(req.headers, 'if-none-match')
      if (inm && etagMatches(inm, etag)) {
        res.setHeader('ETag', etag)
        res.setHeader('Vary', 'Accept-Encoding')
        record.status = 304
        res.writeHead(304)
        res.end()
        return
      }
    }
    res.setHeader('Content-Type', 'application/json; charset=utf-8')
    if (
      compression &&
      buf.length >= 1024 &&
      /\bgzip\b/i.test(header(req.headers, 'accept-encoding') ?? '')
    ) {
      buf = gzipSync(buf)
      res.setHeader('Content-Encoding', 'gzip')
    }
    res.setHeader('Content-Length', buf.length)
    res.setHeader('ETag', etag)
    res.setHeader('Vary', 'Accept-Encoding')
    record.status = status
    record.responseBytes += method === 'HEAD' ? 0 : buf.length
    res.writeHead(status)
    res.end(method === 'HEAD' ? undefined : buf)
  }

  function sendError(
    ctx: Ctx,
    status: number,
    message: string,
    headers?: Record<string, string>
  ): void {
    sendJson(ctx, status, { message }, headers)
  }

  /** Serve bytes like Express's `send`: conditionals (304/412), Range (206/416), HEAD. */
  async function sendMedia(
    ctx: Ctx,
    media: MediaEntity,
    slow?: { chunk: number; ms: number }
  ): Promise<void> {
    const { req, res, record } = ctx
    const method = req.method ?? 'GET'
    const h = req.headers
    const common = (withType: boolean) => {
      if (media.cacheControl) res.setHeader('Cache-Control', media.cacheControl)
      if (withType) res.setHeader('Content-Type', media.contentType)
      if (media.disposition) res.setHeader('Content-Disposition', media.disposition)
      res.setHeader('Accept-Ranges', 'bytes')
      res.setHeader('Last-Modified', MEDIA_LAST_MODIFIED)
      res.setHeader('ETag', media.etag)
    }
    // Preconditions.
    const ifMatch = header(h, 'if-match')
    const ifUnmodified = header(h, 'if-unmodified-since')
    if (
      (ifMatch && !ifMatch.split(',').some((t) => t.trim() === '*' || t.trim() === media.etag)) ||
      (!ifMatch && ifUnmodified && Date.parse(ifUnmodified) < LAST_MODIFIED_MS)
    ) {
      return sendError(ctx, 412, 'Precondition Failed')
    }
    // Freshness → 304.
    const inm = header(h, 'if-none-match')
    const ims = header(h, 'if-modified-since')
    const fresh =
      inm !== undefined
        ? etagMatches(inm, media.etag)
        : ims !== undefined && Date.parse(ims) >= LAST_MODIFIED_MS
    if (fresh) {
      common(false)
      record.status = 304
      res.writeHead(304)
      res.end()
      return
    }
    common(true)
    let start = 0
    let end = media.length - 1
    let status = 200
    const rangeHeader = header(h, 'range')
    if (rangeHeader !== undefined) {
      const ifRange = header(h, 'if-range')
      let rangeFresh = true
      if (ifRange !== undefined) {
        rangeFresh = ifRange.includes('"')
          ? ifRange.split(',').some((t) => t.trim() === media.etag)
          : Date.parse(ifRange) >= LAST_MODIFIED_MS
      }
      if (rangeFresh) {
        const r = parseRange(media.length, rangeHeader)
        if (r === 'unsatisfiable') {
          for (const name of [
            'Cache-Control',
            'Content-Type',
            'Content-Disposition',
            'Accept-Ranges',
            'Last-Modified',
            'ETag',
          ]) {
            res.removeHeader(name)
          }
          return sendError(ctx, 416, 'Range Not Satisfiable', {
            'Content-Range': `bytes */${media.length}`,
          })
        }
        if (r) {
          start = r.start
          end = r.end
          status = 206
          res.setHeader('Content-Range', `bytes ${start}-${end}/${media.length}`)
        }
      }
    }
    const length = Math.max(0, end - start + 1)
    res.setHeader('Content-Length', length)
    record.status = status
    res.writeHead(status)
    if (method === 'HEAD' || length === 0) {
      res.end()
      return
    }
    if (media.buffer && !slow) {
      record.responseBytes += length
      res.end(
        start === 0 && length === media.buffer.length
          ? media.buffer
          : media.buffer.subarray(start, end + 1)
      )
      return
    }
    const chunks = media.buffer
      ? (function* (buf: Buffer, size: number) {
          for (let p = start; p <= end; p += size)
            yield buf.subarray(p, Math.min(p + size, end + 1))
        })(media.buffer, slow?.chunk ?? 64 * 1024)
      : media.chunks!(start, end + 1, slow?.chunk)
    await pump(ctx, chunks, slow?.ms)
  }

  async function pump(ctx: Ctx, chunks: Iterable<Buffer>, intervalMs?: number): Promise<void> {
    const { res, record } = ctx
    let first = true
    for (const chunk of chunks) {
      if (res.destroyed) return
      if (intervalMs && !first) {
        await sleep(intervalMs)
        if (res.destroyed) return
      }
      first = false
      record.responseBytes += chunk.length
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            res.off('drain', done)
            res.off('close', done)
            resolve()
          }
          res.on('drain', done)
          res.on('close', done)
        })
      }
    }
    if (!res.destroyed) res.end()
  }

  // ----- media entities ---------------------------------------------------------------------

  function thumbnailEntity(id: string, size: string, principal: string): MediaEntity {
    const key = `t\0${id}\0${size}\0${principal}\0${thumbnailSize}`
    let m = mediaCache.get(key)
    if (!m) {
      const buffer = expectedThumbnail(id, size, principal, thumbnailSize)
      const hash = createHash('sha1').update(key).digest('hex').slice(0, 11)
      m = {
        length: buffer.length,
        buffer,
        etag: `W/"${buffer.length.toString(16)}-${hash}"`,
        contentType: 'image/webp',
        cacheControl: MEDIA_CACHE_CONTROL,
        disposition: `inline; filename*=UTF-8''${encodeURIComponent(id)}_${encodeURIComponent(size)}.webp`,
      }
      mediaCache.set(key, m)
    }
    return m
  }

  function jpegEntity(kind: 'person' | 'profile', id: string): MediaEntity {
    const key = `j\0${kind}\0${id}`
    let m = mediaCache.get(key)
    if (!m) {
      const buffer = expectedJpeg(`${kind}:${id}`)
      const hash = createHash('sha1').update(key).digest('hex').slice(0, 11)
      m = {
        length: buffer.length,
        buffer,
        etag: `W/"${buffer.length.toString(16)}-${hash}"`,
        contentType: 'image/jpeg',
        ...(kind === 'person' ? { cacheControl: PERSON_THUMBNAIL_CACHE_CONTROL } : {}),
        disposition: `inline; filename*=UTF-8''${encodeURIComponent(id)}.jpeg`,
      }
      mediaCache.set(key, m)
    }
    return m
  }

  function originalEntity(id: string, kind: 'original' | 'playback'): MediaEntity {
    const length = assetSizes.get(id) ?? originalSize
    const key = `o\0${kind}\0${id}\0${length}`
    let m = mediaCache.get(key)
    if (!m) {
      const source = new ByteSource(originalSeed(id))
      const hash = createHash('sha1').update(`${id}\0${length}`).digest('hex').slice(0, 11)
      m = {
        length,
        etag: `W/"${length.toString(16)}-${hash}"`,
        contentType: kind === 'original' ? 'application/octet-stream' : 'video/mp4',
        cacheControl: MEDIA_CACHE_CONTROL,
        ...(kind === 'original'
          ? { disposition: `inline; filename*=UTF-8''${encodeURIComponent(id)}.bin` }
          : {}),
        ...(length <= MAX_CACHED_MEDIA
          ? { buffer: source.slice(0, length) }
          : { chunks: (s: number, e: number, c?: number) => source.chunks(s, e, c) }),
      }
      if (length <= MAX_CACHED_MEDIA) mediaCache.set(key, m)
    }
    return m
  }

  // ----- JSON fixtures ----------------------------------------------------------------------

  const fakeUuid = (seed: string): string => {
    const h = createHash('sha1').update(seed).digest('hex')
    return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`
  }
  const ts = '2026-11-22T11:31:31.389Z'

  function userDto(u: { id: string; name: string; email: string; isAdmin: boolean }) {
    return {
      id: u.id,
      email: u.email,
      name: u.name,
      profileImagePath: '',
      avatarColor: 'gray',
      profileChangedAt: ts,
      storageLabel: u.isAdmin ? 'admin' : null,
      shouldChangePassword: false,
      isAdmin: u.isAdmin,
      createdAt: ts,
      deletedAt: null,
      updatedAt: ts,
      oauthId: '',
      quotaSizeInBytes: null,
      quotaUsageInBytes: 0,
      status: 'active',
      license: null,
    }
  }

  function assetDto(id: string, ownerId: string, extra: Record<string, unknown> = {}) {
    return {
      id,
      createdAt: ts,
      ownerId,
      libraryId: null,
      type: 'IMAGE',
      originalPath: `/data/upload/${ownerId}/${id}.jpg`,
      originalFileName: `${id}.jpg`,
      originalMimeType: 'image/jpeg',
      thumbhash: 'HwgCDYA0jNuEdUe3mmp+cPZ4CDjF',
      fileCreatedAt: ts,
      fileModifiedAt: ts,
      localDateTime: ts,
      updatedAt: ts,
      isFavorite: false,
      isArchived: false,
      isTrashed: false,
      visibility: 'timeline',
      duration: null,
      livePhotoVideoId: null,
      people: [],
      checksum: createHash('sha1').update(id).digest('base64'),
      isOffline: false,
      hasMetadata: true,
      duplicateId: null,
      resized: true,
      width: 64,
      height: 48,
      isEdited: false,
      ...extra,
    }
  }

  function personDto(id: string) {
    return {
      id,
      name: 'Fake Person',
      birthDate: null,
      thumbnailPath: `/data/thumbs/${id}.jpeg`,
      isHidden: false,
      isFavorite: false,
      updatedAt: ts,
      color: '#7e7e7e',
    }
  }

  function albumDto(
    id: string,
    owner: { id: string; name: string; email: string; isAdmin: boolean }
  ) {
    return {
      id,
      ownerId: owner.id,
      albumName: 'Fake album',
      description: '',
      albumThumbnailAssetId: null,
      createdAt: ts,
      updatedAt: ts,
      shared: false,
      hasSharedLink: false,
      assetCount: 0,
      assets: [],
      owner: userDto(owner),
      albumUsers: [],
      isActivityEnabled: true,
      order: 'desc',
      startDate: null,
      endDate: null,
      lastModifiedAssetTimestamp: null,
    }
  }

  // ----- routes -----------------------------------------------------------------------------

  /** Authenticate for a built-in route; on failure answer and return undefined. */
  function requireAuth(ctx: Ctx): Extract<AuthResult, { ok: true }> | undefined {
    const r = ctx.auth()
    if (!r.ok) {
      sendError(ctx, r.status, r.message)
      return undefined
    }
    return r
  }

  const GET = ['GET', 'HEAD']

  // ----- API keys with permissions (test/fake-immich/api-keys.ts) ---------------------------

  function keyCaller(a: Extract<AuthResult, { ok: true }>): KeyCaller {
    return {
      user: a.user,
      ...(a.keyPermissions ? { keyPermissions: a.keyPermissions } : {}),
      ...(a.keyId ? { keyId: a.keyId } : {}),
    }
  }

  /** Immich checks an API key's permissions before any handler runs; true when refused. */
  function refusedByKeyPermissions(ctx: Ctx, route: ReturnType<typeof immichRoute>): boolean {
    if (!route || route.public) return false
    const a = authenticate(ctx.req.headers, ctx.url.searchParams, route.sharedLink)
    if (!a.ok || a.keyPermissions === undefined) return false
    const denial = apiKeyDenial(route, keyCaller(a))
    if (!denial) return false
    sendError(ctx, denial.status, denial.message)
    return true
  }

  const apiKeyRoutes: Route[] = [
    {
      methods: ['POST'],
      re: /^\/api\/api-keys$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        const body = (ctx.record.json ?? {}) as { name?: unknown; permissions?: unknown }
        const name = typeof body.name === 'string' ? body.name : 'API Key'
        const made = minted.create(keyCaller(a), name, body.permissions)
        if (!made.ok) return sendError(ctx, made.status, made.message)
        sendJson(ctx, 201, { secret: made.key.secret, apiKey: apiKeyDto(made.key) })
      },
    },
    {
      methods: GET,
      re: /^\/api\/api-keys$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (a)
          sendJson(
            ctx,
            200,
            minted
              .list()
              .filter((k) => k.userId === a.user.id)
              .map(apiKeyDto)
          )
      },
    },
    {
      methods: GET,
      re: /^\/api\/api-keys\/me$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        if (a.via !== 'api-key') return sendError(ctx, 403, 'Not authenticated with an API key')
        const key = a.keyId ? minted.get(a.keyId) : undefined
        sendJson(
          ctx,
          200,
          key
            ? apiKeyDto(key)
            : {
                id: a.principal,
                name: 'fake key',
                createdAt: '',
                updatedAt: '',
                permissions: ['all'],
              }
        )
      },
    },
    {
      methods: ['DELETE'],
      re: /^\/api\/api-keys\/([^/]+)$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        if (!minted.delete(keyCaller(a), ctx.match[1]!))
          return sendError(ctx, 400, 'API Key not found')
        ctx.record.status = 204
        ctx.res.writeHead(204)
        ctx.res.end()
      },
    },
    {
      methods: ['POST'],
      re: /^\/api\/auth\/logout$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        minted.logouts++
        sendJson(ctx, 200, { successful: true, redirectUri: '/auth/login?autoLaunch=0' })
      },
    },
  ]

  const routes: Route[] = [
    ...apiKeyRoutes,
    {
      methods: GET,
      re: /^\/api\/server\/ping$/,
      handler: (ctx) => sendJson(ctx, 200, { res: 'pong' }),
    },
    {
      methods: GET,
      re: /^\/api\/server\/version$/,
      handler: (ctx) => sendJson(ctx, 200, { ...SERVER_VERSION, prerelease: null }),
    },
    {
      methods: '*',
      re: /^\/api\/echo(?:\/.*)?$/,
      handler: (ctx) =>
        sendJson(ctx, 200, {
          method: ctx.req.method,
          url: ctx.req.url,
          headers: ctx.req.headers,
          rawHeaders: ctx.req.rawHeaders,
          httpVersion: ctx.req.httpVersion,
          bodyBytes: ctx.record.bodyBytes,
          bodySha1: ctx.record.bodySha1,
          body: ctx.record.bodyBytes <= 64 * 1024 ? ctx.record.body.toString('utf8') : undefined,
        }),
    },
    {
      methods: '*',
      re: /^\/api\/slow-headers$/,
      handler: async (ctx) => {
        const ms = Math.max(0, Number(ctx.url.searchParams.get('ms') ?? '1000') || 0)
        await new Promise<void>((resolve) => {
          const t = setTimeout(done, ms)
          function done() {
            clearTimeout(t)
            ctx.res.off('close', done)
            resolve()
          }
          ctx.res.on('close', done)
        })
        if (ctx.res.destroyed) return
        sendJson(ctx, 200, { ok: true, waitedMs: ms })
      },
    },
    {
      methods: GET,
      re: /^\/api\/users\/me$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (a) sendJson(ctx, 200, userDto(a.user))
      },
    },
    {
      methods: ['POST'],
      re: /^\/api\/auth\/login$/,
      handler: (ctx) => {
        logins++
        const body = (ctx.record.json ?? {}) as { email?: unknown; password?: unknown }
        if (body.email !== ADMIN_EMAIL || body.password !== ADMIN_PASSWORD) {
          return sendError(ctx, 401, 'Incorrect email or password')
        }
        const maxAge = 34560000
        const expires = new Date(Date.now() + maxAge * 1000).toUTCString()
        const secure = /^https\b/i.test(header(ctx.req.headers, 'x-forwarded-proto') ?? '')
          ? '; Secure'
          : ''
        const attrs = `Max-Age=${maxAge}; Path=/; Expires=${expires}`
        sendJson(
          ctx,
          201,
          {
            accessToken: FAKE_SESSION_TOKEN,
            userId: admin.userId,
            userEmail: ADMIN_EMAIL,
            name: admin.name,
            isAdmin: true,
            profileImagePath: '',
            shouldChangePassword: false,
            isOnboarded: true,
          },
          {
            'Set-Cookie': [
              `immich_access_token=${FAKE_SESSION_TOKEN}; ${attrs}; HttpOnly${secure}; SameSite=Lax`,
              `immich_auth_type=password; ${attrs}; HttpOnly${secure}; SameSite=Lax`,
              `immich_is_authenticated=true; ${attrs}${secure}; SameSite=Lax`,
            ],
          }
        )
      },
    },
    {
      methods: ['POST'],
      re: /^\/api\/shared-links\/login$/,
      handler: (ctx) => {
        const key =
          header(ctx.req.headers, 'x-immich-share-key') ??
          ctx.url.searchParams.get('key') ??
          undefined
        if (!key) return sendError(ctx, 401, 'Authentication required')
        const password = (ctx.record.json as { password?: unknown } | undefined)?.password
        const expected = sharedLinks[key]?.password ?? SHARED_LINK_PASSWORD
        if (password !== expected) return sendError(ctx, 401, 'Invalid password')
        const secure = /^https\b/i.test(header(ctx.req.headers, 'x-forwarded-proto') ?? '')
          ? '; Secure'
          : ''
        const expires = new Date(Date.now() + 86400 * 1000).toUTCString()
        sendJson(
          ctx,
          201,
          {
            id: fakeUuid(`link:${key}`),
            key,
            slug: null,
            type: 'ALBUM',
            description: null,
            password: null,
            token: FAKE_SHARED_LINK_TOKEN,
            userId: sharedLinks[key]?.userId ?? admin.userId,
            createdAt: ts,
            expiresAt: null,
            assets: [],
            album: null,
            allowUpload: false,
            allowDownload: true,
            showMetadata: true,
          },
          {
            'Set-Cookie': `immich_shared_link_token=${FAKE_SHARED_LINK_TOKEN}; Max-Age=86400; Path=/; Expires=${expires}; HttpOnly${secure}; SameSite=Lax`,
          }
        )
      },
    },
    {
      methods: GET,
      re: /^\/api\/assets\/([^/]+)\/thumbnail$/,
      sharedLink: true,
      handler: async (ctx) => {
        const id = decodeURIComponent(ctx.match[1]!)
        thumbHits.set(id, (thumbHits.get(id) ?? 0) + 1)
        const a = requireAuth(ctx)
        if (!a) return
        const size = ctx.url.searchParams.get('size') ?? 'thumbnail'
        if (size === 'fullsize') {
          const params = new URLSearchParams(ctx.url.searchParams)
          params.delete('size')
          const location = `original?${params.toString()}`
          const text = Buffer.from(`Found. Redirecting to ${location}`)
          ctx.record.status = 302
          ctx.res.writeHead(302, {
            Location: location,
            Vary: 'Accept, Accept-Encoding',
            'Content-Type': 'text/plain; charset=utf-8',
            'Content-Length': text.length,
          })
          ctx.res.end(ctx.req.method === 'HEAD' ? undefined : text)
          return
        }
        await sendMedia(ctx, thumbnailEntity(id, size, a.principal))
      },
    },
    {
      methods: GET,
      re: /^\/api\/assets\/([^/]+)\/(original|video\/playback)$/,
      sharedLink: true,
      handler: async (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        const id = decodeURIComponent(ctx.match[1]!)
        const kind = ctx.match[2] === 'original' ? 'original' : 'playback'
        const q = ctx.url.searchParams
        const slow =
          q.get('slow') === '1' || q.get('slow') === 'true'
            ? {
                chunk: Math.max(1, Number(q.get('slowChunk') ?? 16384) || 16384),
                ms: Math.max(1, Number(q.get('slowMs') ?? 50) || 50),
              }
            : undefined
        await sendMedia(ctx, originalEntity(id, kind), slow)
      },
    },
    {
      methods: GET,
      re: /^\/api\/people\/([^/]+)\/thumbnail$/,
      handler: async (ctx) => {
        if (!requireAuth(ctx)) return
        await sendMedia(ctx, jpegEntity('person', decodeURIComponent(ctx.match[1]!)))
      },
    },
    {
      methods: GET,
      re: /^\/api\/users\/([^/]+)\/profile-image$/,
      handler: async (ctx) => {
        if (!requireAuth(ctx)) return
        await sendMedia(ctx, jpegEntity('profile', decodeURIComponent(ctx.match[1]!)))
      },
    },
    {
      methods: ['POST'],
      re: /^\/api\/assets$/,
      sharedLink: true,
      stream: true,
      handler: (ctx) => handleUpload(ctx),
    },
    {
      methods: ['PUT', 'DELETE'],
      re: /^\/api\/assets$/,
      handler: (ctx) => {
        if (!requireAuth(ctx)) return
        ctx.record.status = 204
        ctx.res.writeHead(204)
        ctx.res.end()
      },
    },
    {
      methods: [...GET, 'PUT'],
      re: /^\/api\/assets\/([^/]+)$/,
      sharedLink: true,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        const id = decodeURIComponent(ctx.match[1]!)
        const patch =
          ctx.req.method === 'PUT' && ctx.record.json && typeof ctx.record.json === 'object'
            ? ctx.record.json
            : {}
        sendJson(ctx, 200, assetDto(id, a.user.id, patch as Record<string, unknown>))
      },
    },
    {
      methods: ['POST'],
      re: /^\/api\/search\/metadata$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        const body = (ctx.record.json ?? {}) as { size?: unknown; page?: unknown }
        const size =
          typeof body.size === 'number' && body.size > 0 ? Math.min(body.size, 1000) : 250
        const page = typeof body.page === 'number' && body.page > 0 ? body.page : 1
        const total = 3
        const count = Math.max(0, Math.min(size, total - (page - 1) * size))
        const items = Array.from({ length: count }, (_, i) =>
          assetDto(fakeUuid(`asset:${a.user.id}:${(page - 1) * size + i}`), a.user.id)
        )
        sendJson(ctx, 200, {
          albums: { total: 0, count: 0, items: [], facets: [] },
          assets: {
            total: count,
            count,
            items,
            facets: [],
            nextPage: page * size < total ? String(page + 1) : null,
          },
        })
      },
    },
    {
      methods: GET,
      re: /^\/api\/people$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        sendJson(ctx, 200, {
          people: [personDto(fakeUuid(`person:${a.user.id}`))],
          hasNextPage: false,
          total: 1,
          hidden: 0,
        })
      },
    },
    {
      methods: GET,
      re: /^\/api\/faces$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        const id = ctx.url.searchParams.get('id') ?? ''
        if (!UUID_RE.test(id)) {
          return sendJson(ctx, 400, {
            message: 'Validation failed',
            errors: [
              {
                origin: 'string',
                code: 'invalid_format',
                format: 'uuid',
                pattern: STRICT_UUID_PATTERN,
                path: ['id'],
                message: 'Invalid UUID',
              },
            ],
          })
        }
        const person = personDto(fakeUuid(`person:${a.user.id}`))
        sendJson(ctx, 200, [
          {
            id: fakeUuid(`face:${id}`),
            imageWidth: 64,
            imageHeight: 48,
            boundingBoxX1: 10,
            boundingBoxY1: 10,
            boundingBoxX2: 30,
            boundingBoxY2: 30,
            sourceType: 'machine-learning',
            person,
          },
        ])
      },
    },
    {
      methods: GET,
      re: /^\/api\/albums$/,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        sendJson(ctx, 200, [albumDto(fakeUuid(`album:${a.user.id}`), a.user)])
      },
    },
    {
      methods: GET,
      re: /^\/api\/albums\/([^/]+)$/,
      sharedLink: true,
      handler: (ctx) => {
        const a = requireAuth(ctx)
        if (!a) return
        sendJson(ctx, 200, albumDto(decodeURIComponent(ctx.match[1]!), a.user))
      },
    },
    {
      methods: GET,
      re: /^\/\.well-known\/immich$/,
      handler: (ctx) => sendJson(ctx, 200, { api: { endpoint: '/api' } }),
    },
    // ----- the web app's sign-in page (web-login.ts), for the console's browser tests -----------
    {
      methods: GET,
      re: /^\/auth\/login$/,
      handler: (ctx) => {
        ctx.record.status = 200
        ctx.record.responseBytes += serveLoginPage(ctx.res, ctx.req.method === 'HEAD')
      },
    },
  ]

  // ----- upload -----------------------------------------------------------------------------

  async function handleUpload(ctx: Ctx): Promise<void> {
    const { req, res, record } = ctx
    const upload: UploadInfo = {
      status: 'receiving',
      bytes: 0,
      sha1: EMPTY_SHA1,
      fields: {},
      files: {},
      fileBytes: 0,
      fileSha1: EMPTY_SHA1,
    }
    record.upload = upload
    const reject = (status: number, message: string) => {
      upload.status = 'rejected'
      upload.error = message
      sendError(ctx, status, message)
    }
    const a = requireAuth(ctx)
    if (!a) {
      upload.status = 'rejected'
      upload.error = 'unauthenticated'
      return
    }
    const checksumHeader = header(req.headers, 'x-immich-checksum')
    if (checksumHeader) {
      const hex = normalizeChecksum(checksumHeader)
      const existing = hex ? checksums.get(hex) : undefined
      if (existing) {
        // Answer before reading the body (and without 100 Continue).
        upload.status = 'duplicate'
        upload.assetId = existing
        return sendJson(ctx, 200, { id: existing, status: 'duplicate' })
      }
    }
    const boundary = boundaryOf(header(req.headers, 'content-type'))
    if (!boundary) return reject(400, 'Expected a multipart/form-data body')
    if (ctx.expectContinue && !record.continueSent) {
      res.writeContinue()
      record.continueSent = true
    }

    let current:
      | {
          name: string
          filename?: string
          contentType?: string
          hash?: Hash
          bytes: number
          text?: Buffer[]
          textBytes: number
        }
      | undefined
    let parseError: string | undefined
    const parser = new MultipartParser(boundary, {
      onPartStart(part) {
        current = { name: part.name, bytes: 0, textBytes: 0 }
        if (part.filename !== undefined) {
          current.filename = part.filename
          current.hash = createHash('sha1')
        } else {
          current.text = []
        }
        if (part.contentType !== undefined) current.contentType = part.contentType
      },
      onPartData(data) {
        if (!current) return
        current.bytes += data.length
        if (current.hash) current.hash.update(data)
        else if (current.text && current.textBytes < MAX_CAPTURED_BODY) {
          const piece = Buffer.from(data.subarray(0, MAX_CAPTURED_BODY - current.textBytes))
          current.text.push(piece)
          current.textBytes += piece.length
        }
      },
      onPartEnd() {
        if (!current) return
        if (current.hash) {
          const info: UploadInfo['files'][string] = {
            bytes: current.bytes,
            sha1: current.hash.digest('hex'),
          }
          if (current.filename !== undefined) info.filename = current.filename
          if (current.contentType !== undefined) info.contentType = current.contentType
          upload.files[current.name] = info
          if (current.name === 'assetData') {
            upload.fileBytes = info.bytes
            upload.fileSha1 = info.sha1
          }
        } else {
          upload.fields[current.name] = Buffer.concat(current.text ?? []).toString('utf8')
        }
        current = undefined
      },
    })

    const complete = await new Promise<boolean>((resolve) => {
      const onData = (chunk: Buffer) => {
        upload.bytes += chunk.length
        if (parseError) return
        try {
          parser.write(chunk)
        } catch (e) {
          parseError = (e as Error).message
        }
      }
      const onEnd = () => {
        cleanup()
        resolve(true)
      }
      const onClose = () => {
        cleanup()
        resolve(req.complete && record.bodyComplete)
      }
      const cleanup = () => {
        req.off('data', onData)
        req.off('end', onEnd)
        req.off('close', onClose)
        req.off('error', onClose)
      }
      req.on('data', onData)
      req.on('end', onEnd)
      req.on('close', onClose)
      req.on('error', onClose)
    })
    upload.bytes = record.bodyBytes
    upload.sha1 = record.bodySha1
    if (!complete) {
      upload.status = 'aborted'
      record.aborted = true
      return
    }
    if (!parseError) {
      try {
        parser.end()
      } catch (e) {
        parseError = (e as Error).message
      }
    }
    if (parseError) return reject(400, parseError)
    if (!upload.files.assetData) return reject(400, 'Validation failed: assetData is required')
    const id = randomUUID()
    checksums.set(upload.fileSha1, id)
    upload.status = 'created'
    upload.assetId = id
    sendJson(ctx, 201, { id, status: 'created' })
  }

  // ----- dispatch ---------------------------------------------------------------------------

  const WEB_HTML = Buffer.from(
    '<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>Immich</title>' +
      '<script type="module" src="/_app/immutable/entry/start.js"></script></head>' +
      '<body><div id="app">fake immich web</div></body></html>\n'
  )
  const WEB_JS = Buffer.from('export const fakeImmich = true;\n')

  function serveWeb(ctx: Ctx): void {
    const { req, res, record } = ctx
    const isJs = ctx.url.pathname.startsWith('/_app/immutable/')
    const body = isJs ? WEB_JS : WEB_HTML
    res.setHeader(
      'Content-Type',
      isJs ? 'text/javascript; charset=utf-8' : 'text/html; charset=utf-8'
    )
    res.setHeader('Cache-Control', isJs ? 'public, max-age=31536000, immutable' : 'no-cache')
    res.setHeader('Content-Length', body.length)
    res.setHeader('ETag', expressEtag(body))
    record.status = 200
    record.responseBytes += req.method === 'HEAD' ? 0 : body.length
    res.writeHead(200)
    res.end(req.method === 'HEAD' ? undefined : body)
  }

  function methodMatches(methods: string[] | '*', method: string): boolean {
    return methods === '*' || methods.includes(method)
  }

  async function dispatch(ctx: Ctx): Promise<void> {
    const { req, res } = ctx
    const method = req.method ?? 'GET'
    const path = ctx.url.pathname
    const immich = path.startsWith('/api/') ? immichRoute(method, path) : undefined
    if (refusedByKeyPermissions(ctx, immich)) return

    for (let i = overrides.length - 1; i >= 0; i--) {
      const o = overrides[i]!
      const m = methodMatches(o.methods, method) ? o.re.exec(path) : null
      if (!m) continue
      ctx.match = m
      if (ctx.expectContinue && !ctx.record.continueSent) {
        res.writeContinue()
        ctx.record.continueSent = true
      }
      await o.handler(req, res, ctx)
      return
    }

    for (const route of routes) {
      const m = methodMatches(route.methods, method) ? route.re.exec(path) : null
      if (!m) continue
      ctx.match = m
      ctx.route = route
      if (!route.stream) {
        if (ctx.expectContinue) {
          res.writeContinue()
          ctx.record.continueSent = true
        }
        try {
          await ctx.readBody()
        } catch {
          return // client went away
        }
      }
      await route.handler(ctx)
      return
    }

    if (ctx.expectContinue) {
      res.writeContinue()
      ctx.record.continueSent = true
    }
    try {
      await ctx.readBody()
    } catch {
      return
    }
    if (immich && opts.answerEveryRoute) {
      const a = immich.public ? undefined : requireAuth(ctx)
      if (!immich.public && !a) return
      const { status, body } = genericAnswer(method)
      if (body !== undefined) return sendJson(ctx, status, body)
      ctx.record.status = status
      res.writeHead(status)
      res.end()
      return
    }
    if (path === '/api' || path.startsWith('/api/') || (method !== 'GET' && method !== 'HEAD')) {
      return sendError(ctx, 404, `Cannot ${method} ${req.url ?? path}`)
    }
    serveWeb(ctx)
  }

  function onRequest(req: IncomingMessage, res: ServerResponse, expectContinue: boolean): void {
    const incomingId = header(req.headers, 'x-correlation-id')
    const correlationId = incomingId && incomingId.length <= 128 ? incomingId : randomId()
    const { rec, done } = newRecord(req, correlationId, expectContinue)
    tapBody(req, rec, res)
    const te = req.headers['transfer-encoding']
    const cl = req.headers['content-length']
    if (te === undefined && (cl === undefined || cl === '0')) {
      // No body: complete right away (the tap will see the `end`).
      rec.bodyComplete = true
    }
    res.on('close', () => {
      if (!res.writableFinished) rec.aborted = true
      if (rec.status === undefined && res.headersSent) rec.status = res.statusCode
      done()
    })
    res.setHeader('X-Powered-By', 'Express')
    res.setHeader('X-Correlation-ID', correlationId)

    let url: URL
    try {
      url = new URL(req.url ?? '/', 'http://fake-immich.local')
    } catch {
      url = new URL('http://fake-immich.local/')
    }
    let cachedAuth: AuthResult | undefined
    const ctx: Ctx = {
      req,
      res,
      url,
      match: /(?:)/.exec('')!,
      record: rec,
      expectContinue,
      auth: () => {
        if (!cachedAuth) {
          // Built-in routes take shared-link credentials only where Immich does; test overrides always.
          cachedAuth = authenticate(
            req.headers,
            url.searchParams,
            ctx.route ? ctx.route.sharedLink === true : true
          )
          if (cachedAuth.ok) rec.user = { ...cachedAuth.user, via: cachedAuth.via }
        }
        return cachedAuth
      },
      sendJson: (status, body, headers) => sendJson(ctx, status, body, headers),
      readBody: () => readBody(req, rec),
    }
    dispatch(ctx).catch((err: unknown) => {
      if (!res.headersSent && !res.destroyed) {
        sendError(ctx, 500, `fake-immich handler error: ${(err as Error)?.message ?? String(err)}`)
      } else {
        res.destroy()
      }
    })
  }

  // ----- the gateway's health probe ------------------------------------------------------------
  // The gateway under test asks `GET /api/server/ping` every few seconds (src/upstream/health.ts,
  // user agent `immich-gateway-health/1`). Answered as Immich answers a ping, but not
  // recorded: tests count and inspect what their own clients sent.
  function answerHealthProbe(req: IncomingMessage, res: ServerResponse): boolean {
    if (req.url !== '/api/server/ping') return false
    if (!header(req.headers, 'user-agent')?.startsWith('immich-gateway-health/')) return false
    const body = '{"res":"pong"}'
    res.writeHead(200, {
      'x-powered-by': 'Express',
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(body.length),
    })
    res.end(body)
    return true
  }

  const server = http.createServer({ requestTimeout: 0, keepAliveTimeout: 5000 }, (req, res) => {
    if (!answerHealthProbe(req, res)) onRequest(req, res, false)
  })
  server.on('checkContinue', (req, res) => onRequest(req, res, true))
  server.on('connection', (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
  })
  server.on('clientError', (err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n')
    else socket.destroy(err)
  })

  // ----- socket.io --------------------------------------------------------------------------

  const io = new SocketIOServer(server, {
    path: SOCKET_IO_PATH,
    transports: ['websocket'],
    serveClient: false,
  })
  io.use((socket, next) => {
    // Like Immich: headers only (no query credentials), shared links refused.
    const r = authenticate(socket.request.headers, undefined, false)
    if (!r.ok) {
      const err = new Error(r.message) as Error & { data?: unknown }
      err.data = { message: r.message, statusCode: r.status }
      next(err)
      return
    }
    socket.data.user = r.user
    next()
  })
  io.on('connection', (socket) => {
    const user = socket.data.user as { id: string } | undefined
    if (user) void socket.join(user.id)
    socket.emit('on_server_version', { ...SERVER_VERSION })
  })
  // Record upgrade requests (and polling attempts, which the engine answers itself).
  server.prependListener('upgrade', (req: IncomingMessage, socket: Socket) => {
    const incomingId = header(req.headers, 'x-correlation-id')
    const { rec, done } = newRecord(req, incomingId ?? randomId(), false)
    rec.upgrade = true
    rec.bodyComplete = true
    const r = authenticate(req.headers, undefined, false)
    if (r.ok) rec.user = { ...r.user, via: r.via }
    socket.once('close', () => done())
  })
  server.prependListener('request', (req: IncomingMessage, res: ServerResponse) => {
    if (!(req.url ?? '').startsWith(SOCKET_IO_PATH)) return
    const { rec, done } = newRecord(req, randomId(), false)
    tapBody(req, rec, res)
    res.on('close', () => {
      rec.status = res.statusCode
      done()
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address()
  if (!address || typeof address === 'string') throw new Error('fake-immich: no address')
  const port = address.port
  const host = opts.host ?? '127.0.0.1'
  const urlHost = host.includes(':') ? `[${host}]` : host === '0.0.0.0' ? '127.0.0.1' : host

  let closing: Promise<void> | undefined

  const fake: FakeImmich = {
    url: `http://${urlHost}:${port}`,
    port,
    requests,
    io,
    server,
    lastRequest: () => {
      const last = requests[requests.length - 1]
      if (!last) throw new Error('fake-immich: no request recorded')
      return last
    },
    requestsTo: (path, method) =>
      requests.filter(
        (r) =>
          (method === undefined || r.method === method.toUpperCase()) &&
          (typeof path === 'string'
            ? path.endsWith('/')
              ? r.path.startsWith(path)
              : r.path === path
            : path.test(r.path))
      ),
    clearRequests: () => {
      requests.length = 0
    },
    emit: (event, payload) => {
      io.emit(event, payload)
    },
    emitToUser: (userId, event, payload) => {
      io.to(userId).emit(event, payload)
    },
    openSockets: () => sockets.size,
    waitForOpenSockets: async (max, timeoutMs = 2000) => {
      const deadline = Date.now() + timeoutMs
      while (sockets.size > max) {
        if (Date.now() > deadline) {
          throw new Error(
            `fake-immich: ${sockets.size} sockets still open (wanted <= ${max}) after ${timeoutMs} ms`
          )
        }
        await sleep(10)
      }
    },
    apiKeys: minted,
    thumbnailHits: (id) => thumbHits.get(id) ?? 0,
    loginAttempts: () => logins,
    setHandler: (method, path, handler) => {
      const entry = {
        methods:
          method === '*'
            ? ('*' as const)
            : method.toUpperCase() === 'GET'
              ? GET
              : [method.toUpperCase()],
        re:
          typeof path === 'string'
            ? new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`)
            : path,
        handler,
      }
      overrides.push(entry)
      return () => {
        overrides = overrides.filter((o) => o !== entry)
      }
    },
    setAssetSize: (id, bytes) => {
      assetSizes.set(id, bytes)
    },
    addKnownChecksum,
    reset: () => {
      overrides = []
      requests.length = 0
      thumbHits = new Map()
      logins = 0
      assetSizes = new Map()
      checksums = new Map()
      for (const c of initialChecksums) addKnownChecksum(c)
      minted.clear()
    },
    close: () => {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.once('close', () => resolve()))
        void io.close()
        const destroyAll = () => {
          for (const s of sockets) s.destroy()
        }
        destroyAll()
        const timer = setInterval(destroyAll, 20)
        try {
          await closed
          for (let i = 0; i < 100 && sockets.size > 0; i++) await sleep(10)
        } finally {
          clearInterval(timer)
        }
      })()
      return closing
    },
  }
  return fake
}
