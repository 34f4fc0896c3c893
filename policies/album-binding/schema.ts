import { z } from 'zod'

const MiB = 1_048_576

/** Options of `policies.album-binding` (keys bound to albums with `albums:` in the keys file). */
export const albumBindingOptions = z
  .object({
    ttlSeconds: z
      .number()
      .int()
      .min(1)
      .max(86_400)
      .default(60)
      .describe(
        "How long an album's membership (its asset ids) is trusted before it is fetched again. A change made through the gateway (PUT/DELETE /api/albums/{id}/assets) is seen at once; one made elsewhere (the Immich app) within this time."
      ),
    maxCachedIds: z
      .number()
      .int()
      .min(1000)
      .max(50_000_000)
      .default(1_000_000)
      .describe(
        'Memory bound: asset ids held over all cached memberships (about 100 bytes each); least recently used albums go first.'
      ),
    maxAlbumAssets: z
      .number()
      .int()
      .min(1)
      .max(10_000_000)
      .default(200_000)
      .describe(
        'A bound album with more assets than this is refused (fail closed) rather than fetched.'
      ),
    fetchTimeoutSeconds: z
      .number()
      .min(0.1)
      .max(120)
      .default(10)
      .describe(
        'Time Immich gets for each page of a membership fetch; past it the request is refused (503).'
      ),
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(10 * MiB)
      .default(64 * 1024)
      .describe(
        'Largest search body read to force its album filter; a larger one is refused (413).'
      ),
    bodyTimeoutSeconds: z
      .number()
      .min(0.1)
      .max(300)
      .default(10)
      .describe('A search body not received within this time is refused (408).'),
    maxResponseBytes: z
      .number()
      .int()
      .min(64 * 1024)
      .max(256 * MiB)
      .default(8 * MiB)
      .describe(
        'Largest answer read whole: an album list to filter, one page of a membership fetch. Larger → 502.'
      ),
    redis: z
      .object({
        enabled: z
          .boolean()
          .default(true)
          .describe('Share memberships and album changes through Redis when REDIS_URL is set.'),
        keyPrefix: z
          .string()
          .min(1)
          .default('igw:albums:')
          .describe('Prefix of every Redis key and channel of this policy.'),
        timeoutMs: z
          .number()
          .int()
          .min(1)
          .max(10_000)
          .default(200)
          .describe('A Redis lookup slower than this counts as a miss (Immich is asked).'),
      })
      .strict()
      .default({ enabled: true, keyPrefix: 'igw:albums:', timeoutMs: 200 })
      .describe('The shared tier.'),
  })
  .strict()

export type AlbumBindingOptions = z.output<typeof albumBindingOptions>
