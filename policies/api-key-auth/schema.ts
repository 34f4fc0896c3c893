import { z } from 'zod'

/** Options of the api-key-auth policy (`policies: { api-key-auth: {...} }`). */
export const apiKeyAuthOptions = z
  .object({
    keysFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'The keys file (YAML). Default: env GATEWAY_KEYS_FILE, else config/keys.yaml in the working directory (a missing default file means no keys yet; a missing configured file stops the boot).'
      ),
    presetsFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Scope presets (YAML). Default: env GATEWAY_SCOPES_FILE, else the shipped config/scopes.yaml.'
      ),
    allowQuery: z
      .boolean()
      .default(true)
      .describe(
        'Accept the key in the `apiKey` / `x-api-key` query parameter, for clients that can only set a URL. It is stripped before forwarding and redacted in logs. When false such a request gets 401.'
      ),
    reloadCheckMs: z
      .number()
      .int()
      .min(50)
      .max(60_000)
      .default(500)
      .describe(
        'How often the keys file is stat-ed for changes, besides fs.watch (milliseconds). A revocation takes effect within this time plus a read.'
      ),
  })
  .strict()

export type ApiKeyAuthOptions = z.output<typeof apiKeyAuthOptions>
