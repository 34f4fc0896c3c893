import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Duplex, Readable } from 'node:stream'
import type { Context } from 'hono'

/** What the route table knows about an Immich operation (generated from Immich's OpenAPI spec). */
export interface RouteInfo {
  method: string
  /** Path template with the /api prefix, Immich style: `/api/assets/{id}/thumbnail`. */
  path: string
  operationId: string
  /** `x-immich-permission`; `all` for an authenticated operation that names none; null for none needed. */
  permission: string | null
  adminOnly: boolean
  /** No authentication at all (`/api/server/ping`, login...). */
  public: boolean
  /** Accepts a shared-link `key`/`slug`. */
  sharedLink: boolean
  deprecated: boolean
}

export interface RouteMatch {
  route: RouteInfo
  params: Record<string, string>
}

/** A legacy call translated before routing. */
export interface LegacyMatch {
  /** Rule id from config/legacy-routes.yaml. */
  rule: string
  originalMethod: string
  originalPath: string
  /** Current path (with query) the client should move to, for the `Link` header. */
  successor: string
  /** Named response transform, if any. */
  responseTransform?: string
}

/** The albums a gateway key is bound to (keys file `albums`): it sees only their assets. */
export interface AlbumBinding {
  /** Lower-case album ids. */
  ids: ReadonlySet<string>
  /** Short digest of the sorted ids: what cache keys hold instead of the list. */
  tag: string
}

export type PrincipalKind = 'gateway-key' | 'jwt' | 'native' | 'shared-link' | 'anonymous'

/** Exactly one per request, set by the authenticate phase. */
export interface Principal {
  kind: PrincipalKind
  /** Bounded label for metrics and logs: a configured client name, `native`, or `anonymous`. Never a secret. */
  client: string
  /** Gateway principals only: the granted Immich permissions (already expanded from presets). */
  scopes?: ReadonlySet<string>
  /** Gateway keys in learn mode: the scopes policy records each call (src/auth/usage.ts). */
  learning?: boolean
  /** Gateway keys with `reportOnly`: calls outside the scopes are forwarded and counted, not refused. */
  reportOnly?: boolean
  /**
   * Identity as the upstream sees it: a hash of the injected or native credential. Cache keys and
   * rate-limit keys use it, so nothing crosses users. Never the credential itself.
   */
  upstreamIdentity: string
  /** Set for an album-bound gateway key (policies/album-binding judges its requests). */
  albums?: AlbumBinding
}

/**
 * The upstream request being built. Phases edit it; the forward phase sends it.
 * Header names are lower-case; a `null` value removes the header.
 */
export interface UpstreamRequest {
  method: string
  /** Path plus query, byte-for-byte what goes upstream. */
  url: string
  headerEdits: Record<string, string | null>
  /**
   * Rewrites the client's body as it streams (legacy multipart backfill). The result goes upstream
   * chunked, since its length is not known in advance.
   */
  bodyTransform?: (body: Readable) => Readable
  /** Replacement body for small JSON rewrites (legacy query → body translations). Never an upload. */
  body?: Buffer
}

/**
 * The one declaration of the typed context shared by all phases. Read it with `c.get('x')`, never
 * through `c.var`: Hono's `c.var` copies the whole variable map on every access (measured at 14-22% of the
 * gateway's CPU on a cache hit). test/style.test.ts keeps it that way.
 */
export type Variables = {
  requestId: string
  clientIp: string
  /** The direct TCP peer, and whether it is a configured trusted proxy. */
  peer: { address: string; trusted: boolean }
  /** process.hrtime.bigint() at arrival. */
  startedAt: bigint
  /** The path the phases judge: after legacy translation and canonicalisation, without the query. */
  path: string
  /** Raw query string including the leading `?`, or ''. */
  query: string
  route?: RouteMatch
  /** Template or `unmatched`/`web` — what metrics and logs label the request by. */
  routeLabel: string
  legacy?: LegacyMatch
  /**
   * Replaces the plain forward as the last step (a legacy rule that rewrites bodies or answers).
   * Runs after authentication, authorization and limits, like the forward it replaces.
   */
  terminal?: (c: Context<Env>) => Promise<Response>
  /**
   * An edit of Immich's answer where it is read whole (the forwarder's capture), before anything
   * reads it: album-binding takes out what a bound key may not see, under a legacy rebuild too.
   */
  answerEdit?: AnswerEdit
  principal: Principal
  upstream: UpstreamRequest
  /** Route class for limits (`thumbnails`, `uploads`, `api`, `login`...). */
  routeClass: string
  /** Extra headers to add to whatever response goes back (RateLimit, Deprecation...). */
  responseHeaders: Record<string, string>
  /**
   * Stock Hono middleware runs in this pipeline (GatewayOptions.middleware): headers it set on c.res
   * before the answer go out with streamed answers too. Without it nothing reads c.res, which spares
   * creating a Response per request.
   */
  stockMiddleware: boolean
  /** The status of the answer sent, set by the one answer writer (src/server/answer.ts). */
  status?: number
  /** Response body bytes sent. */
  bytesOut?: number
  /** Outcome notes for the access log (cache: HIT/MISS, limiter...). */
  notes: Record<string, string>
}

/** Immich's answer read whole, as the forwarder's capture hands it on. */
export interface CapturedAnswer {
  status: number
  headers: OutgoingHttpHeaders
  body: Buffer
}

export type AnswerEdit = (answer: CapturedAnswer) => CapturedAnswer | Promise<CapturedAnswer>

/** Node's request and response (@hono/node-server's HttpBindings), plus the socket of an upgrade. */
export type Bindings = {
  incoming: IncomingMessage
  outgoing: ServerResponse | undefined
  /** Set only for a websocket upgrade: the raw client socket and the bytes read past the headers. */
  upgrade?: { socket: Duplex; head: Buffer }
}

export type Env = { Variables: Variables; Bindings: Bindings }
