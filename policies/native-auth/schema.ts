import { z } from 'zod'

/** Options of the native-auth policy (`policies: { native-auth: {...} }`). */
export const nativeAuthOptions = z
  .object({
    allow: z
      .object({
        session: z
          .boolean()
          .default(true)
          .describe(
            'Immich session tokens: cookie immich_access_token, x-immich-user-token, x-immich-session-token, sessionKey query, opaque bearer (web and mobile apps).'
          ),
        apiKey: z
          .boolean()
          .default(true)
          .describe(
            "Immich's own API keys (x-api-key header or apiKey query without the igw_ prefix; an x-api-key query parameter, which Immich never read, is moved into the header)."
          ),
        sharedLink: z
          .boolean()
          .default(true)
          .describe(
            'Shared-link keys and slugs (x-immich-share-key/-slug headers, key/slug query).'
          ),
      })
      .strict()
      .default({ session: true, apiKey: true, sharedLink: true })
      .describe(
        'Which native Immich credentials pass through untouched. A refused kind gets 401 at the edge on any route where Immich would read it.'
      ),
    maxCredentialBytes: z
      .number()
      .int()
      .min(64)
      .max(65_536)
      .default(8192)
      .describe(
        'A longer credential (or one with bytes outside visible ASCII) gets 401 without reaching Immich.'
      ),
  })
  .strict()

export type NativeAuthOptions = z.output<typeof nativeAuthOptions>
