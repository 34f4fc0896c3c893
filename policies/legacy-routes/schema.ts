import { z } from 'zod'

export const legacyRoutesOptions = z
  .object({
    enabled: z
      .boolean()
      .default(true)
      .describe(
        'Translate legacy (pre-rename) Immich API calls. false → they reach Immich as they are (and get its 404).'
      ),
    file: z
      .string()
      .optional()
      .describe('The legacy table (YAML). Default: the shipped config/legacy-routes.yaml.'),
    disabledRules: z
      .array(z.string())
      .default([])
      .describe('Rule ids to switch off (each must exist in the table).'),
    maxBodyBytes: z
      .number()
      .int()
      .min(1024)
      .max(16 * 1024 * 1024)
      .default(1024 * 1024)
      .describe('Largest JSON request body a body rewrite reads (larger → 413).'),
    maxResponseBytes: z
      .number()
      .int()
      .min(1024)
      .max(256 * 1024 * 1024)
      .default(32 * 1024 * 1024)
      .describe('Largest upstream answer a response rewrite buffers (larger → 502).'),
    maxFollowUpCalls: z
      .number()
      .int()
      .min(1)
      .max(1000)
      .default(100)
      .describe(
        'Most extra upstream calls one legacy request may make (paging through search results...).'
      ),
    bodyTimeoutSeconds: z
      .number()
      .positive()
      .max(600)
      .default(30)
      .describe('A JSON body to rewrite not received within this time → 408.'),
  })
  .strict()

export type LegacyRoutesOptions = z.infer<typeof legacyRoutesOptions>
