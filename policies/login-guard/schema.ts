import { z } from 'zod'
import { storeOptionsShape } from '../../src/limits/limiter.js'

const count = (def: number, what: string) =>
  z.number().int().min(1).max(1_000_000).default(def).describe(what)
const seconds = (def: number, what: string) =>
  z
    .number()
    .int()
    .min(1)
    .max(86_400 * 7)
    .default(def)
    .describe(what)

export const loginGuardOptions = z
  .object({
    ...storeOptionsShape,
    keyPrefix: storeOptionsShape.keyPrefix.default('igw:login'),
    maxFailuresPerAccount: count(
      10,
      'Failed attempts (upstream 401) per client address and account before that pair is blocked.'
    ),
    maxFailuresPerIp: count(
      30,
      'Failed attempts per client address, over all accounts, before the address is blocked.'
    ),
    windowSeconds: seconds(900, 'Failures are counted over this window, from the first one.'),
    blockSeconds: seconds(
      900,
      'How long a blocked address or address+account is refused (429, Immich not asked).'
    ),
    passwordLogin: z
      .boolean()
      .default(true)
      .describe('Guard POST /api/auth/login (account: the lower-cased `email` of the JSON body).'),
    sharedLinkLogin: z
      .boolean()
      .default(true)
      .describe('Guard POST /api/shared-links/login (account: the shared link `key` or `slug`).'),
    maxBodyBytes: z
      .number()
      .int()
      .min(256)
      .max(1_048_576)
      .default(16_384)
      .describe(
        'Largest login body read to find the account; a larger one is refused with 413 (a real one is < 1 KiB).'
      ),
    bodyTimeoutSeconds: seconds(
      10,
      'A login body not received within this time is refused with 408.'
    ),
  })
  .strict()

export type LoginGuardOptions = z.output<typeof loginGuardOptions>
