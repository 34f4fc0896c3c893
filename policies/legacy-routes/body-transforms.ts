/** Body transforms: edit a small JSON request body (never an upload; see transforms.ts). */
import { GatewayError } from '../../src/errors.js'
import {
  type BodyTransform,
  FollowUp,
  type Obj,
  type Step,
  type TransformContext,
  type UpstreamReply,
  gone,
  isObj,
  ok,
} from './transforms.js'

// Body transforms

/** Applies `edit` to a JSON object body; anything else (no body, an array) passes unchanged. */
function objectBody(edit: (body: Obj, ctx: TransformContext) => Step<unknown>): BodyTransform {
  return (body, ctx) => (isObj(body) ? edit({ ...body }, ctx) : body)
}

function userIdsToAlbumUsers(body: Obj, field: string): Obj {
  const ids = body[field]
  delete body[field]
  if (!Array.isArray(ids)) return body
  const existing = Array.isArray(body['albumUsers']) ? body['albumUsers'] : []
  body['albumUsers'] = [...existing, ...ids.map((userId) => ({ userId, role: 'editor' }))]
  return body
}

/** `""` → `null` for the named fields (v3 rejects empty strings there). */
function emptyToNull(...fields: string[]): BodyTransform {
  return objectBody((body) => {
    for (const f of fields) if (body[f] === '') body[f] = null
    return body
  })
}

/** `{isArchived}` → `{visibility}` (removed 1.133). */
function archivedFlagToVisibility(body: Obj): Obj {
  if (typeof body['isArchived'] === 'boolean') {
    if (body['visibility'] === undefined)
      body['visibility'] = body['isArchived'] ? 'archive' : 'timeline'
    delete body['isArchived']
  }
  return body
}

/**
 * #22 PUT /api/asset: `isArchived` → `visibility`; `stackParentId` (gone 1.112) → POST /api/stacks
 * `{assetIds: [parent, ...ids]}` first; `removeParent` → each asset leaves its stack
 * (GET /api/assets/{id}, DELETE /api/stacks/{stackId}/assets/{id}). The rest goes to PUT /api/assets.
 */
const assetBulkUpdate: BodyTransform = objectBody((body) => {
  archivedFlagToVisibility(body)
  const ids = Array.isArray(body['ids'])
    ? body['ids'].filter((x): x is string => typeof x === 'string')
    : []
  const parent = body['stackParentId']
  const removeParent = body['removeParent'] === true
  delete body['stackParentId']
  delete body['removeParent']

  const failed = (reply: UpstreamReply, what: string): GatewayError =>
    new GatewayError(
      reply.status >= 400 && reply.status < 500 ? reply.status : 502,
      'LEGACY_STEP_FAILED',
      `${what} failed (${reply.status})`
    )

  const unstack = (i: number): Step<unknown> => {
    if (i >= ids.length) return body
    const id = ids[i]!
    return new FollowUp(
      { method: 'GET', path: `/api/assets/${encodeURIComponent(id)}` },
      (reply) => {
        if (!ok(reply.status)) throw failed(reply, 'Reading the asset')
        const stack =
          isObj(reply.body) && isObj(reply.body['stack']) ? reply.body['stack']['id'] : undefined
        if (typeof stack !== 'string') return unstack(i + 1)
        const call = {
          method: 'DELETE',
          path: `/api/stacks/${encodeURIComponent(stack)}/assets/${encodeURIComponent(id)}`,
        }
        return new FollowUp(call, (removed) => {
          if (!ok(removed.status)) throw failed(removed, 'Removing the asset from its stack')
          return unstack(i + 1)
        })
      }
    )
  }

  if (typeof parent === 'string') {
    const call = {
      method: 'POST',
      path: '/api/stacks',
      jsonBody: { assetIds: [parent, ...ids.filter((id) => id !== parent)] },
    }
    return new FollowUp(call, (reply) => {
      if (!ok(reply.status)) throw failed(reply, 'Creating the stack')
      return body
    })
  }
  return removeParent ? unstack(0) : body
})

export const bodyTransforms: Readonly<Record<string, BodyTransform>> = {
  /** #11/#12/#99: pre-1.9x `{assetIds}` → `{ids}`. */
  'asset-ids': objectBody((body) => {
    if (Array.isArray(body['assetIds']) && body['ids'] === undefined) body['ids'] = body['assetIds']
    delete body['assetIds']
    return body
  }),
  /** #6: `sharedWithUserIds` → `albumUsers[{userId, role: editor}]`. */
  'album-create': objectBody((body) => userIdsToAlbumUsers(body, 'sharedWithUserIds')),
  /** #15: `sharedUserIds` → `albumUsers[{userId, role: editor}]`. */
  'album-users': objectBody((body) => userIdsToAlbumUsers(body, 'sharedUserIds')),
  /** #17: `permissions` is required since #11824; `["all"]` keeps the old behaviour. */
  'api-key-create': objectBody((body) => {
    if (body['permissions'] === undefined) body['permissions'] = ['all']
    return body
  }),
  'asset-bulk-update': assetBulkUpdate,
  /** #25: `isArchived` → `visibility`. */
  'asset-update': objectBody(archivedFlagToVisibility),
  /** #55: `type`, `isVisible`, `isWatched` are gone; UPLOAD libraries no longer exist. */
  'library-create': objectBody((body) => {
    if (typeof body['type'] === 'string' && body['type'].toUpperCase() === 'UPLOAD') {
      throw gone('Upload libraries no longer exist; only external libraries can be created')
    }
    delete body['type']
    delete body['isVisible']
    delete body['isWatched']
    return body
  }),
  /** #57: `isVisible` is gone. */
  'library-update': objectBody((body) => {
    delete body['isVisible']
    return body
  }),
  /** #59: one scan type since 1.116: the `refresh*` body is dropped. */
  'library-scan': () => ({}),
  /** #67/#70 */
  'person-update': emptyToNull('birthDate', 'color'),
  /** #89 */
  'shared-link-create': emptyToNull('description', 'password', 'slug'),
  /** #92: `changeExpiryTime` without `expiresAt` meant "never expires"; `""` → `null`. */
  'shared-link-update': objectBody((body) => {
    if (body['changeExpiryTime'] === true && body['expiresAt'] === undefined)
      body['expiresAt'] = null
    delete body['changeExpiryTime']
    for (const f of ['description', 'password', 'slug']) if (body[f] === '') body[f] = null
    return body
  }),
  /** #95: tag `type` (OBJECT/FACE/CUSTOM) is gone. */
  'tag-create': objectBody((body) => {
    delete body['type']
    return body
  }),
}
