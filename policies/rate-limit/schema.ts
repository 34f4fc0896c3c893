import { z } from 'zod'
import { storeOptionsShape } from '../../src/limits/limiter.js'

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const

/** Media the Immich apps fetch in bursts (a People page, a timeline scroll, a video's HLS segments). */
export const THUMBNAIL_ROUTES = [
  '/api/assets/{id}/thumbnail',
  '/api/people/{id}/thumbnail',
  '/api/users/{id}/profile-image',
  '/api/assets/{id}/original',
  '/api/assets/{id}/video/playback',
  '/api/assets/{id}/video/stream/main.m3u8',
  '/api/assets/{id}/video/stream/{sessionId}/{variantIndex}/playlist.m3u8',
  '/api/assets/{id}/video/stream/{sessionId}/{variantIndex}/{filename}',
]

const UPLOAD_ROUTES = ['/api/assets']

const CLASS_NAME = /^[a-z][a-z0-9_-]{0,31}$/

const pointsField = z
  .number()
  .int()
  .min(1)
  .max(1_000_000_000)
  .describe('Requests allowed per window.')
const durationField = z
  .number()
  .int()
  .min(1)
  .max(86_400)
  .describe('Window length in seconds (fixed window, starting at the first request).')
const routes = z
  .array(
    z
      .string()
      .regex(
        /^\/api(\/[^/\s?#]+)+$/,
        'expected an Immich route template like /api/assets/{id}/thumbnail'
      )
  )
  .min(1)
  .describe(
    'Route templates of the class, exactly as in config/immich-routes.json; checked against it at boot.'
  )
const methods = z
  .array(z.enum(METHODS))
  .min(1)
  .describe('Methods the class covers on those routes (HEAD counts as HEAD, list it beside GET).')

/** A class with defaults for every field (the built-in ones): a partial entry keeps the other defaults. */
const builtInClass = (p: number, d: number, m: (typeof METHODS)[number][], r: string[]) =>
  z
    .object({
      points: pointsField.default(p),
      durationSeconds: durationField.default(d),
      methods: methods.default(m),
      routes: routes.default(r),
    })
    .strict()

/** A class the user adds: everything spelled out except the methods (all by default). */
const customClass = z
  .object({
    points: pointsField,
    durationSeconds: durationField,
    methods: methods.default([...METHODS]),
    routes,
  })
  .strict()

const override = z
  .union([
    z.literal(false),
    z
      .object({ points: pointsField.optional(), durationSeconds: durationField.optional() })
      .strict(),
  ])
  .describe(
    "This client's budget for the class (fields left out keep the class's), or false for no limit."
  )

export const rateLimitOptions = z
  .object({
    ...storeOptionsShape,
    keyPrefix: storeOptionsShape.keyPrefix.default('igw:rl'),
    classes: z
      .object({
        thumbnails: builtInClass(3000, 60, ['GET', 'HEAD'], THUMBNAIL_ROUTES)
          .prefault({})
          .describe(
            'Thumbnails and media: generous, a People page loads hundreds at once (a 100/s limit broke it).'
          ),
        uploads: builtInClass(1800, 60, ['POST'], UPLOAD_ROUTES)
          .prefault({})
          .describe('Asset uploads (mobile backup, immich-go).'),
        api: z
          .object({ points: pointsField.default(600), durationSeconds: durationField.default(60) })
          .strict()
          .prefault({})
          .describe('Every other /api request (and web UI paths when webUi is on).'),
      })
      .catchall(customClass)
      .prefault({})
      .superRefine((classes, ctx) => {
        for (const name of Object.keys(classes)) {
          if (!CLASS_NAME.test(name))
            ctx.addIssue({
              code: 'custom',
              path: [name],
              message: 'class names are lower-case letters, digits, _ and - (up to 32)',
            })
        }
      })
      .describe(
        'Route classes, each with its own budget per principal. A request belongs to the class listing its route and method, else to `api`.'
      ),
    clients: z
      .record(z.string().min(1), z.record(z.string(), override))
      .default({})
      .describe(
        'Per-client budgets by gateway client name, e.g. `{frame: {thumbnails: {points: 20000}}}`.'
      ),
    addressFactor: z
      .number()
      .min(0)
      .max(1000)
      .default(4)
      .describe(
        'The gateway cannot verify native Immich credentials and shared links, and anyone can make up new ones for a ' +
          "fresh budget: such requests also spend from their client address's budget, this many times the class budget " +
          '(room for a household behind one NAT), counted per replica in memory. 0 turns the address ceiling off.'
      ),
    webUi: z
      .boolean()
      .default(false)
      .describe('Also limit web UI paths (not /api) under the api class.'),
    headers: z
      .boolean()
      .default(true)
      .describe(
        'Send the RateLimit-Policy and RateLimit fields (draft-ietf-httpapi-ratelimit-headers-10) on limited routes.'
      ),
  })
  .strict()

export type RateLimitOptions = z.output<typeof rateLimitOptions>
