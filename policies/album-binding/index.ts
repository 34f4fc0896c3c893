import type { Context, Next } from 'hono'
import { queryParams } from '../../src/auth/credentials.js'
import type { Deps } from '../../src/deps.js'
import type { AlbumBinding, AnswerEdit, Env, RouteInfo } from '../../src/env.js'
import { GatewayError } from '../../src/errors.js'
import { answerStatus, writeAnswer } from '../../src/server/answer.js'
import { readRequestBody } from '../../src/upstream/body.js'
import { definePolicy } from '../types.js'
import {
  constrainTimeline,
  emptySearchAnswer,
  parseSearchBody,
  pickWeighted,
  planSearch,
} from './constrain.js'
import {
  albumListEdit,
  assetAnswerEdit,
  EDITED_ASSET_ANSWERS,
  readWhole,
  sendEdited,
  type Visible,
} from './answers.js'
import { MembershipCache, MembershipUnavailable, type Membership } from './membership.js'
import { BOUND_KEY_ROUTES, type BoundTreatment } from './routes.js'
import { albumBindingOptions, type AlbumBindingOptions } from './schema.js'

const TREATMENTS: ReadonlyMap<string, BoundTreatment> = new Map(Object.entries(BOUND_KEY_ROUTES))

/** How an album-bound key may use `method path-template` (unlisted: refused). */
export function treatmentOf(method: string, template: string): BoundTreatment {
  return TREATMENTS.get(`${method === 'HEAD' ? 'GET' : method} ${template}`) ?? 'refuse'
}

/** The treatment per matched route, looked up once per RouteInfo (no string built per request). */
const treatmentCache = new WeakMap<RouteInfo, BoundTreatment>()
function treatmentOfRoute(route: RouteInfo): BoundTreatment {
  let t = treatmentCache.get(route)
  if (t === undefined) {
    t = treatmentOf(route.method, route.path)
    treatmentCache.set(route, t)
  }
  return t
}

/** Treatments a legacy rewrite with its own answer-building step may meet (others are refused). */
const LEGACY_REBUILD_OK: ReadonlySet<BoundTreatment> = new Set(['pass', 'asset', 'album'])

/** Client headers that do not belong on a membership fetch (it has its own body and wants all of it). */
const NOT_ON_FETCH = [
  'content-length',
  'content-type',
  'transfer-encoding',
  'expect',
  'range',
  'if-none-match',
  'if-modified-since',
  'if-range',
  'if-match',
  'if-unmodified-since',
]

/** Changes to an album by anyone (a bound key, another key, the web app) that end its cached membership. */
const CHANGES_ALBUM: ReadonlySet<string> = new Set([
  'PUT /api/albums/{id}/assets',
  'DELETE /api/albums/{id}/assets',
  'DELETE /api/albums/{id}',
])

/** Immich's page size limit for search. */
const PAGE_SIZE = 1000

const refused = () =>
  new GatewayError(403, 'ALBUM_BOUND_REFUSED', 'album-bound keys cannot use this route')
const assetNotFound = () => new GatewayError(404, 'ALBUM_BOUND_NOT_FOUND', 'Asset not found')
const albumNotFound = () => new GatewayError(404, 'ALBUM_BOUND_NOT_FOUND', 'Album not found')

/**
 * Album-bound keys (keys file `albums:`, `keys add --albums`): a gateway key that sees only the
 * assets of its albums, and only those albums. Runs after scopes. Each route of the table has a
 * treatment (routes.ts): by-id routes are checked against the albums' memberships (fetched from
 * Immich with the client's own credential, cached, refreshed at once on a change made through the
 * gateway) and answer 404 for anything else; searches and timelines get the album filter forced;
 * the album list is filtered; everything else that could show an outside asset is refused (403).
 * When a membership cannot be fetched the request is refused (503), never let through.
 */
export const albumBinding = definePolicy({
  name: 'album-binding',
  phase: 'authorize',
  options: albumBindingOptions,
  create(options, { deps, onClose }) {
    const { logger } = deps
    let lastRedisWarning = 0
    const cache = new MembershipCache({
      ttlMs: options.ttlSeconds * 1000,
      maxIds: options.maxCachedIds,
      ...(deps.redis && options.redis.enabled
        ? {
            redis: {
              client: deps.redis,
              keyPrefix: options.redis.keyPrefix,
              timeoutMs: options.redis.timeoutMs,
              onError: (err: unknown) => {
                const now = Date.now()
                if (now - lastRedisWarning < 60_000) return
                lastRedisWarning = now
                logger.warn(
                  { err: (err as Error)?.message },
                  'album binding: Redis unavailable, using this replica only'
                )
              },
            },
          }
        : {}),
    })
    onClose(cache.subscribe())
    const judge = new Judge(cache, deps, options)

    // A request of an unbound principal passes by synchronously, unless it changes an album.
    return (c, next) => {
      const binding = c.get('principal').albums
      if (binding !== undefined) return judge.request(c, next, binding)
      const match = c.get('route')
      if (
        match !== undefined &&
        match.route.method !== 'GET' &&
        CHANGES_ALBUM.has(`${match.route.method} ${match.route.path}`)
      )
        return judge.afterChange(c, next, (match.params.id ?? '').toLowerCase())
      return next()
    }
  },
})

class Judge {
  constructor(
    private readonly cache: MembershipCache,
    private readonly deps: Deps,
    private readonly options: AlbumBindingOptions
  ) {}

  request(c: Context<Env>, next: Next, binding: AlbumBinding): Promise<Response | void> {
    // The websocket tells of every asset change of the user.
    if (c.env.upgrade !== undefined) throw refused()
    const match = c.get('route')
    // Not an Immich route: the web app's files (an unknown /api path was refused by scopes).
    if (match === undefined) return next()
    // The route was matched for this method (HEAD matches the GET route).
    const treatment = treatmentOfRoute(match.route)
    if (c.get('terminal') !== undefined && !LEGACY_REBUILD_OK.has(treatment)) throw refused()
    c.get('notes').albumBinding = treatment
    switch (treatment) {
      case 'pass':
        return next()
      case 'asset':
        this.editAssetAnswer(c, binding, match.route)
        return this.requireAsset(c, next, binding, [match.params.id ?? ''])
      case 'asset-query': {
        const ids = queryParams(c.get('query'))
          .filter((p) => p.name === 'id')
          .map((p) => p.value)
        return ids.length === 0 ? next() : this.requireAsset(c, next, binding, ids)
      }
      case 'album':
        if (!binding.ids.has((match.params.id ?? '').toLowerCase())) throw albumNotFound()
        return next()
      case 'album-assets':
        return this.changeAlbum(c, next, binding, (match.params.id ?? '').toLowerCase())
      case 'album-list':
        this.editAnswer(c, albumListEdit(binding))
        return next()
      case 'search':
        return this.search(c, next, binding, match.route.path)
      case 'timeline': {
        const up = c.get('upstream')
        up.url = constrainTimeline(up.url, c.get('query'), binding)
        const q = up.url.indexOf('?')
        c.set('query', q === -1 ? '' : up.url.slice(q))
        return next()
      }
      case 'refuse':
        throw refused()
    }
  }

  /**
   * Immich's answer is read whole and edited before it goes out (answers.ts); a legacy rebuild
   * already in place reads it through the same edit.
   */
  private editAnswer(c: Context<Env>, edit: AnswerEdit): void {
    readWhole(c, edit)
    if (c.get('terminal') === undefined)
      c.set('terminal', (ctx) => sendEdited(ctx, this.deps, this.options.maxResponseBytes))
  }

  /**
   * An asset answer (asset info, a search) loses the ids of assets outside the albums. Called for
   * the `asset` and `search` treatments only; a thumbnail's path is one Set lookup, no string built.
   */
  private editAssetAnswer(c: Context<Env>, binding: AlbumBinding, route: RouteInfo): void {
    if (!EDITED_ASSET_ANSWERS.has(route.path)) return
    if (c.get('upstream').method === 'HEAD') return
    this.editAnswer(
      c,
      assetAnswerEdit(binding, () => this.visible(c, binding))
    )
  }

  /** Whether an asset is in one of the bound albums (memberships fetched when not cached). */
  private async visible(c: Context<Env>, binding: AlbumBinding): Promise<Visible> {
    const all = await this.memberships(c, binding)
    return (id) => {
      const lower = id.toLowerCase()
      return all.some((m) => m.ids.has(lower))
    }
  }

  /** Lets the request through when every id is in a bound album; 404 otherwise. */
  private requireAsset(
    c: Context<Env>,
    next: Next,
    binding: AlbumBinding,
    ids: string[]
  ): Promise<Response | void> {
    const identity = c.get('principal').upstreamIdentity
    // The hot path (a thumbnail of a cached album): memory only, no async frame.
    if (ids.length === 1) {
      const id = ids[0]!.toLowerCase()
      let missing = false
      for (const albumId of binding.ids) {
        const m = this.cache.peek(identity, albumId)
        if (m === undefined) missing = true
        else if (m.ids.has(id)) return next()
      }
      if (!missing) throw assetNotFound()
    }
    return this.visible(c, binding).then((isVisible) => {
      for (const id of ids) if (!isVisible(id)) throw assetNotFound()
      return next()
    })
  }

  /** Every bound album's membership; a failure refuses the request (503), it never lets it through. */
  private async memberships(c: Context<Env>, binding: AlbumBinding): Promise<Membership[]> {
    const identity = c.get('principal').upstreamIdentity
    const fetch = (albumId: string) => this.fetchMembership(c, albumId)
    try {
      return await Promise.all([...binding.ids].map((id) => this.cache.get(identity, id, fetch)))
    } catch (err) {
      if (!(err instanceof MembershipUnavailable)) throw err
      this.deps.logger.warn(
        { requestId: c.get('requestId'), reason: err.message },
        'album binding: membership unavailable, request refused'
      )
      throw new GatewayError(503, 'ALBUM_MEMBERSHIP_UNAVAILABLE', 'Album membership unavailable', {
        'Retry-After': '5',
      })
    }
  }

  /**
   * One album's asset ids, from Immich's own search (`albumIds:[id]`, every visibility but locked),
   * page by page, with the request's upstream credential. The motion part of a live photo in the
   * album counts as in it (clients play it by its own id).
   */
  private async fetchMembership(c: Context<Env>, albumId: string): Promise<Set<string>> {
    const { forwarder } = this.deps
    const headers = forwarder.upstreamHeaders(c)
    for (const name of NOT_ON_FETCH) delete headers[name]
    headers['content-type'] = 'application/json'
    headers['accept-encoding'] = 'identity'
    const timeout = this.options.fetchTimeoutSeconds * 1000
    const ids = new Set<string>()
    for (let page = 1; ; page++) {
      const res = await forwarder.agent.request({
        origin: forwarder.origin,
        method: 'POST',
        path: '/api/search/metadata',
        headers,
        body: JSON.stringify({ albumIds: [albumId], page, size: PAGE_SIZE }),
        headersTimeout: timeout,
        bodyTimeout: timeout,
      })
      const text = await readBounded(res.body, this.options.maxResponseBytes)
      if (res.statusCode !== 200)
        throw new MembershipUnavailable(`Immich answered ${res.statusCode} to the album search`)
      const assets = (JSON.parse(text) as { assets?: { items?: unknown; nextPage?: unknown } })
        ?.assets
      if (!Array.isArray(assets?.items))
        throw new MembershipUnavailable('unexpected album search answer')
      for (const item of assets.items as { id?: unknown; livePhotoVideoId?: unknown }[]) {
        if (typeof item?.id === 'string') ids.add(item.id.toLowerCase())
        if (typeof item?.livePhotoVideoId === 'string') ids.add(item.livePhotoVideoId.toLowerCase())
      }
      if (ids.size > this.options.maxAlbumAssets)
        throw new MembershipUnavailable('album larger than maxAlbumAssets')
      if (assets.nextPage === null || assets.nextPage === undefined || assets.items.length === 0)
        return ids
    }
  }

  /**
   * Adding to or removing from a bound album. Added assets must already be visible to the key (else
   * adding would be a way to reach any asset); the album's membership is dropped once Immich took
   * the change, so the next request sees it.
   */
  private async changeAlbum(
    c: Context<Env>,
    next: Next,
    binding: AlbumBinding,
    albumId: string
  ): Promise<Response | void> {
    if (!binding.ids.has(albumId)) throw albumNotFound()
    if (c.get('upstream').method === 'PUT') {
      const body = parseSearchBody(await this.readBody(c))
      const ids = body.ids
      if (!Array.isArray(ids) || ids.some((id) => typeof id !== 'string'))
        throw new GatewayError(400, 'BAD_IDS', 'ids must be an array of asset ids')
      const isVisible = await this.visible(c, binding)
      for (const id of ids as string[]) if (!isVisible(id)) throw assetNotFound()
    }
    return this.afterChange(c, next, albumId)
  }

  /** Lets a change to an album through; once Immich took it, the album's membership is dropped. */
  async afterChange(c: Context<Env>, next: Next, albumId: string): Promise<Response | void> {
    try {
      return await next()
    } finally {
      if (answerStatus(c) < 400) await this.cache.changed(albumId)
    }
  }

  private readBody(c: Context<Env>): Promise<Buffer> {
    return readRequestBody(c, {
      maxBytes: this.options.maxBodyBytes,
      timeoutMs: this.options.bodyTimeoutSeconds * 1000,
    })
  }

  /** A search: its body read (small JSON only), its album filter forced, then forwarded. */
  private async search(
    c: Context<Env>,
    next: Next,
    binding: AlbumBinding,
    route: string
  ): Promise<Response | void> {
    const body = parseSearchBody(await this.readBody(c))
    const plan = planSearch(body, binding, route)
    if (plan.kind === 'empty') {
      return writeAnswer(
        c,
        200,
        { 'content-type': 'application/json; charset=utf-8' },
        JSON.stringify(emptySearchAnswer(route))
      )
    }
    const forwarded = plan.body
    // Smart search "like this asset": the asset must be one the key may see.
    const like = forwarded.queryAssetId
    if (like !== undefined && like !== null) {
      if (typeof like !== 'string' || !(await this.visible(c, binding))(like)) throw assetNotFound()
    }
    if (plan.kind === 'pick') {
      const ids = [...binding.ids]
      const all = await this.memberships(c, binding)
      forwarded.albumIds = [
        pickWeighted(
          ids,
          all.map((m) => m.ids.size)
        ),
      ]
    }
    const up = c.get('upstream')
    up.body = Buffer.from(JSON.stringify(forwarded))
    up.headerEdits['content-type'] = 'application/json'
    this.editAssetAnswer(c, binding, c.get('route')!.route)
    return next()
  }
}

async function readBounded(
  body: AsyncIterable<Buffer> & { dump(): Promise<void> },
  maxBytes: number
): Promise<string> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of body) {
    size += chunk.length
    if (size > maxBytes) {
      await body.dump().catch(() => {})
      throw new MembershipUnavailable('album search answer too large')
    }
    chunks.push(chunk)
  }
  return Buffer.concat(chunks, size).toString('utf8')
}
