import { z } from 'zod'

const MiB = 1_048_576

/** Options of `policies.thumbnail-cache`. */
export const thumbnailCacheOptions = z
  .object({
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .default(3600)
      .describe(
        "Longest time an entry is kept; Immich's own max-age (86400 for thumbnails) lowers it, never raises it."
      ),
    nativeTtlSeconds: z
      .number()
      .int()
      .min(0)
      .max(7 * 86_400)
      .default(300)
      .describe(
        'Cap for principals only Immich can judge (native sessions and API keys, shared links): a credential revoked in Immich still gets its own cached images for at most this long. 0 → never cached.'
      ),
    heuristicTtlSeconds: z
      .number()
      .int()
      .min(0)
      .max(7 * 86_400)
      .default(300)
      .describe(
        'TTL for a 200 image without Cache-Control or max-age (Immich sends none for profile images). 0 → not cached.'
      ),
    revalidateNoCache: z
      .boolean()
      .default(true)
      .describe(
        'Store `no-cache` answers (Immich person thumbnails) and confirm each use with a conditional request to Immich (a 304 saves the bytes). false → not cached.'
      ),
    minUses: z
      .number()
      .int()
      .min(1)
      .max(2)
      .default(2)
      .describe(
        "Store an answer the Nth time its key is asked for (nginx's proxy_cache_min_uses). 2: one-off requests — most thumbnails, which the client then keeps itself for a day — are not stored, so they neither churn the cache nor cost a miss anything; concurrent requests count as uses. 1: store every miss."
      ),
    maxEntryBytes: z
      .number()
      .int()
      .min(1024)
      .max(64 * MiB)
      .default(2 * MiB)
      .describe('Larger answers stream through uncached.'),
    invalidationHoldSeconds: z
      .number()
      .min(0)
      .max(3600)
      .default(30)
      .describe(
        'After an asset is changed through the gateway (edit, regenerate-thumbnail job...), its answers are served but not stored for this long, so bytes Immich has not regenerated yet are not cached as current.'
      ),
    staleIfErrorSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .default(30 * 86_400)
      .describe(
        "Cap of Immich's `stale-if-error` (2592000 s on thumbnails): how long past its TTL an entry is kept in memory and on disk (within their byte bounds; Redis keeps entries for their TTL only) and served, marked `X-Cache: STALE`, while Immich is unreachable, its breaker open, or it answers 5xx. 0 → never serve stale."
      ),
    memory: z
      .object({
        maxBytes: z
          .number()
          .int()
          .min(MiB)
          .default(256 * MiB)
          .describe('Byte bound of the in-memory LRU (bodies plus bookkeeping).'),
      })
      .strict()
      .default({ maxBytes: 256 * MiB })
      .describe('The in-memory tier, one per replica.'),
    redis: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe('Use Redis as a shared second tier when REDIS_URL is set.'),
        keyPrefix: z
          .string()
          .min(1)
          .max(100)
          .default('immich-gateway:cache:')
          .describe('Prefix of every cache key in Redis.'),
        timeoutMs: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(100)
          .describe('A Redis lookup slower than this counts as a miss.'),
      })
      .strict()
      .default({ enabled: true, keyPrefix: 'immich-gateway:cache:', timeoutMs: 100 })
      .describe(
        'The shared tier for replicas (binary values with a TTL; invalidation by generation keys and pub/sub).'
      ),
    disk: z
      .object({
        dir: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Directory of the disk tier; unset → no disk tier. Created if missing (mode 0700); the gateway must be its only user.'
          ),
        maxBytes: z
          .number()
          .int()
          .min(MiB)
          .default(1024 * MiB)
          .describe('Byte bound of the files; the least recently used are removed beyond it.'),
      })
      .strict()
      .default({ maxBytes: 1024 * MiB })
      .describe(
        'Optional third tier on disk, for hosts without Redis: survives restarts (entries kept for their TTL plus stale-if-error), atomic writes, file names are hashes of the cache key.'
      ),
  })
  .strict()
  .refine((o) => o.maxEntryBytes <= o.memory.maxBytes, {
    message: 'maxEntryBytes must not exceed memory.maxBytes',
    path: ['maxEntryBytes'],
  })

export type ThumbnailCacheOptions = z.output<typeof thumbnailCacheOptions>
