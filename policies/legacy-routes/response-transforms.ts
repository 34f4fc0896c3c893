/** Response transforms: turn the current answer back into the old shape (see transforms.ts). */
import {
  FollowUp,
  type Obj,
  type ResponseResult,
  type ResponseTransform,
  SEARCH_PAGE_SIZE,
  type Step,
  type TransformContext,
  bool,
  gone,
  int,
  isObj,
  legacyAlbum,
  legacyAsset,
  legacyAssets,
  notHidden,
  ok,
  rawQuery,
  searchAllPages,
  splitCredentials,
  zipTimeBucket,
} from './transforms.js'

// Response transforms

/** Applies `map` to a 2xx body; any other answer passes unchanged. */
function onSuccess(
  map: (body: unknown, ctx: TransformContext, status: number) => Step<ResponseResult>
): ResponseTransform {
  return (status, body, ctx) => (ok(status) ? map(body, ctx, status) : { status, body })
}

function searchItems(body: unknown): unknown[] {
  const assets = isObj(body) && isObj(body['assets']) ? body['assets'] : undefined
  return assets !== undefined && Array.isArray(assets['items']) ? assets['items'] : []
}

/**
 * #9/#6 album with its assets: v3 dropped `assets`; rebuild them from POST /api/search/metadata
 * `{albumIds:[id]}` (all pages), or for a shared-link caller (`key`/`slug`, which search does not
 * accept) from the album's timeline buckets. `withoutAssets=true` skips the fan-out.
 */
const albumDetail: ResponseTransform = onSuccess((album, ctx, status) => {
  if (!isObj(album) || typeof album['id'] !== 'string') return { status, body: album }
  if (bool(ctx.query.get('withoutAssets')) === true) return { status, body: legacyAlbum(album, []) }
  const id = album['id']
  const shared = new URLSearchParams()
  for (const k of ['key', 'slug']) {
    const v = ctx.query.get(k)
    if (v !== null) shared.set(k, v)
  }
  if (shared.size === 0) {
    const order = album['order'] === 'asc' ? 'asc' : 'desc'
    return searchAllPages({ albumIds: [id], withExif: true, order }, '', (items) => ({
      status,
      body: legacyAlbum(album, items.map(legacyAsset)),
    }))
  }
  const base = new URLSearchParams(shared)
  base.set('albumId', id)
  return new FollowUp(
    { method: 'GET', path: '/api/timeline/buckets', query: rawQuery(base) },
    (reply) => {
      if (!ok(reply.status)) return { status: reply.status, body: reply.body }
      const buckets = Array.isArray(reply.body)
        ? reply.body
            .filter(isObj)
            .map((b) => b['timeBucket'])
            .filter((b) => typeof b === 'string')
        : []
      const assets: unknown[] = []
      const next = (i: number): Step<ResponseResult> => {
        if (i >= buckets.length) return { status, body: legacyAlbum(album, assets) }
        const q = new URLSearchParams(base)
        q.set('timeBucket', buckets[i]!)
        return new FollowUp(
          { method: 'GET', path: '/api/timeline/bucket', query: rawQuery(q) },
          (bucket) => {
            if (!ok(bucket.status)) return { status: bucket.status, body: bucket.body }
            assets.push(...zipTimeBucket(bucket.body))
            return next(i + 1)
          }
        )
      }
      return next(0)
    }
  )
})

/** #21/#44: search envelope → the bare asset array the old route returned, without hidden parts. */
const searchItemsResponse: ResponseTransform = onSuccess((body, ctx, status) => {
  const items = searchItems(body)
  const userId = ctx.query.get('userId')
  if (userId !== null && items.some((a) => isObj(a) && a['ownerId'] !== userId)) {
    // Search only returns the caller's own assets: another user's list has no translation.
    throw gone(
      "Listing another user's assets is no longer possible; search returns your own assets"
    )
  }
  const wantsHidden = bool(ctx.query.get('isVisible')) === false
  return { status, body: (wantsHidden ? items : items.filter(notHidden)).map(legacyAsset) }
})

/** All pages of `{personIds|tagIds: [id]}`; the first page is the primary response. */
function assetsOfResponse(field: 'personIds' | 'tagIds'): ResponseTransform {
  return onSuccess((body, ctx, status) => {
    const first = searchItems(body)
    const assets = isObj(body) && isObj(body['assets']) ? body['assets'] : {}
    const finish = (items: unknown[]): ResponseResult => ({
      status,
      body: items.filter(notHidden).map(legacyAsset),
    })
    const next = Number(assets['nextPage'])
    if (assets['nextPage'] == null || !Number.isInteger(next) || next <= 1) return finish(first)
    const { kept } = splitCredentials(ctx.query)
    return searchAllPages(
      { [field]: [ctx.params['id']], withExif: true },
      rawQuery(kept),
      finish,
      next,
      [...first]
    )
  })
}

export const responseTransforms: Readonly<Record<string, ResponseTransform>> = {
  /** #5: album list items backfilled; the list never carried assets. */
  'album-list': onSuccess((body, _ctx, status) => ({
    status,
    body: Array.isArray(body) ? body.map((a) => legacyAlbum(a, [])) : body,
  })),
  /** #10/#15: one album without assets (the old update calls returned none). */
  album: onSuccess((body, _ctx, status) => ({ status, body: legacyAlbum(body, []) })),
  'album-detail': albumDetail,
  /** #24/#25/#45: one asset. */
  asset: onSuccess((body, _ctx, status) => ({ status, body: legacyAsset(body) })),
  /** #36: a bare asset array. */
  'asset-list': onSuccess((body, _ctx, status) => ({ status, body: legacyAssets(body) })),
  'search-items': searchItemsResponse,
  'person-assets': assetsOfResponse('personIds'),
  'tag-assets': assetsOfResponse('tagIds'),
  /** #110: same `{albums, assets:{items}}` envelope, items backfilled, hidden parts left out as the old search did. */
  'search-envelope': onSuccess((body, _ctx, status) => {
    if (!isObj(body) || !isObj(body['assets'])) return { status, body }
    const items = searchItems(body).filter(notHidden).map(legacyAsset)
    return { status, body: { ...body, assets: { ...body['assets'], items, count: items.length } } }
  }),
  /** #26: `{id, status: created|duplicate}` → `{id, duplicate}` (status code unchanged: 201 new, 200 duplicate). */
  'asset-upload': onSuccess((body, ctx, status) => {
    if (!isObj(body)) return { status, body }
    const result = { status, body: { id: body['id'], duplicate: body['status'] === 'duplicate' } }
    const description = ctx.fields?.['description']
    if (
      typeof body['id'] !== 'string' ||
      description === undefined ||
      body['status'] === 'duplicate'
    )
      return result
    // The asset exists whatever the follow-up's outcome: the old client still gets its id.
    return new FollowUp(
      {
        method: 'PUT',
        path: `/api/assets/${encodeURIComponent(body['id'])}`,
        jsonBody: { description },
      },
      () => result
    )
  }),
  /**
   * #35: `MemoryResponseDto[]` → `[{yearsAgo, title, assets}]` as the old live query built them,
   * youngest first; memories of this year or later are skipped.
   */
  'memory-lane': onSuccess((body, ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    const thisYear = (ctx.now ?? new Date()).getUTCFullYear()
    const byYears = new Map<number, unknown[]>()
    for (const memory of body) {
      if (!isObj(memory) || !isObj(memory['data']) || typeof memory['data']['year'] !== 'number')
        continue
      const yearsAgo = thisYear - memory['data']['year']
      if (yearsAgo < 1) continue
      byYears.set(yearsAgo, [...(byYears.get(yearsAgo) ?? []), ...legacyAssets(memory['assets'])])
    }
    const lanes = [...byYears.entries()]
      .filter(([, assets]) => assets.length > 0)
      .sort(([a], [b]) => a - b)
      .map(([yearsAgo, assets]) => ({
        yearsAgo,
        title: `${yearsAgo} year${yearsAgo > 1 ? 's' : ''} since...`,
        assets,
      }))
    return { status, body: lanes }
  }),
  /** #40: columnar bucket → asset objects (the fields the bucket carries; see the rule note). */
  'timeline-bucket': onSuccess((body, _ctx, status) => ({ status, body: zipTimeBucket(body) })),
  /** #42 partial: one asset per city → `{id, city, resizePath, deviceAssetId, deviceId}`. */
  'curated-locations': onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.filter(isObj).map((a) => ({
        id: a['id'],
        city: isObj(a['exifInfo']) ? (a['exifInfo']['city'] ?? null) : null,
        resizePath: '',
        deviceAssetId: '',
        deviceId: '',
      })),
    }
  }),
  /** #54/#56/#57: libraries lost `type`; every remaining one is EXTERNAL. */
  library: onSuccess((body, _ctx, status) => {
    const add = (l: unknown): unknown => (isObj(l) ? { type: 'EXTERNAL', ...l } : l)
    return { status, body: Array.isArray(body) ? body.map(add) : add(body) }
  }),
  /**
   * #66: the people list is paginated since 1.112 (500 by default): fetch every page so the old
   * client gets the complete `{total, hidden, people}` it always got (never a bare array).
   */
  'people-all-pages': onSuccess((body, ctx, status) => {
    if (!isObj(body) || !Array.isArray(body['people'])) return { status, body }
    const people = [...body['people']]
    const finish = (): ResponseResult => {
      const out: Obj = { ...body, people }
      delete out['hasNextPage']
      return { status, body: out }
    }
    const fetch = (page: number): Step<ResponseResult> => {
      const q = new URLSearchParams(ctx.query)
      q.set('page', String(page))
      if (!q.has('size')) q.set('size', String(SEARCH_PAGE_SIZE))
      return new FollowUp({ method: 'GET', path: '/api/people', query: rawQuery(q) }, (reply) => {
        if (!ok(reply.status)) return { status: reply.status, body: reply.body }
        const more =
          isObj(reply.body) && Array.isArray(reply.body['people']) ? reply.body['people'] : []
        people.push(...more)
        return isObj(reply.body) && reply.body['hasNextPage'] === true && more.length > 0
          ? fetch(page + 1)
          : finish()
      })
    }
    const current = int(ctx.query.get('page')) ?? 1
    return body['hasNextPage'] === true && people.length > 0 ? fetch(current + 1) : finish()
  }),
  /**
   * #94/#95/#96: tags lost `type` and `userId`: add `type: "CUSTOM"` (the only kind left) and the
   * caller's id from GET /api/users/me (`""` when that call is not allowed).
   */
  tag: onSuccess((body, _ctx, status) => {
    if (!isObj(body) && !Array.isArray(body)) return { status, body }
    return new FollowUp({ method: 'GET', path: '/api/users/me' }, (me) => {
      const userId =
        ok(me.status) && isObj(me.body) && typeof me.body['id'] === 'string' ? me.body['id'] : ''
      const add = (t: unknown): unknown => (isObj(t) ? { type: 'CUSTOM', userId, ...t } : t)
      return { status, body: Array.isArray(body) ? body.map(add) : add(body) }
    })
  }),
  /** #99: `[{id, success, error}]` → `[{assetId, success, error}]`. */
  'tag-assets-result': onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.map((r) => {
        if (!isObj(r)) return r
        const { id, ...rest } = r
        return { assetId: id, ...rest }
      }),
    }
  }),
  /** #100: `isAll=false` listed everyone but the caller. */
  'user-list': onSuccess((body, ctx, status) => {
    if (!Array.isArray(body) || bool(ctx.query.get('isAll')) !== false) return { status, body }
    return new FollowUp({ method: 'GET', path: '/api/users/me' }, (me) => {
      if (!ok(me.status)) return { status: me.status, body: me.body }
      const self = isObj(me.body) ? me.body['id'] : undefined
      return { status, body: body.filter((u) => !isObj(u) || u['id'] !== self) }
    })
  }),
  /** #86: `/custom.css` text → the old `{customCss}`. */
  theme: onSuccess((body, _ctx, status) => ({
    status,
    body: { customCss: typeof body === 'string' ? body : '' },
  })),
  /**
   * §1.5 alias GET /api/asset/{id}/faces: the items keep every current field and gain the
   * `personId` and `boundingBox` the calling bot reads. An empty list stays an empty list.
   */
  faces: onSuccess((body, _ctx, status) => {
    if (!Array.isArray(body)) return { status, body }
    return {
      status,
      body: body.map((f) => {
        if (!isObj(f)) return f
        const person = isObj(f['person']) ? f['person']['id'] : null
        return {
          ...f,
          personId: person ?? null,
          boundingBox: {
            x1: f['boundingBoxX1'],
            y1: f['boundingBoxY1'],
            x2: f['boundingBoxX2'],
            y2: f['boundingBoxY2'],
          },
        }
      }),
    }
  }),
}
