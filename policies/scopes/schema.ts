import { z } from 'zod'

/** Options of the scopes policy (`policies: { scopes: {...} }`). */
export const scopesOptions = z
  .object({
    websocketPermission: z
      .string()
      .min(1)
      .default('all')
      .describe(
        'Permission a gateway principal needs to open the websocket (/api/socket.io). Immich requires `all` of an API key there; its events describe every asset change of the user.'
      ),
    learn: z
      .object({
        stateFile: z
          .string()
          .min(1)
          .optional()
          .describe(
            'Where learn mode keeps what keys used, without Redis. Default: beside the keys file (keys.yaml → keys.usage.json).'
          ),
        redisKeyPrefix: z
          .string()
          .min(1)
          .default('igw:usage:')
          .describe(
            'With Redis: learned usage is the hash `<prefix><client>`, shared (and summed) by every gateway using that Redis.'
          ),
        flushSeconds: z
          .number()
          .min(0.05)
          .max(3600)
          .default(10)
          .describe(
            'How often the calls counted in memory are written to Redis or the state file (and always on shutdown).'
          ),
      })
      .strict()
      .default({ redisKeyPrefix: 'igw:usage:', flushSeconds: 10 })
      .describe('Learn mode (`keys learn`, `keys usage`, `keys tighten`): where usage is kept.'),
  })
  .strict()

export type ScopesOptions = z.output<typeof scopesOptions>
