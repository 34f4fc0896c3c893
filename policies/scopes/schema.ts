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
  })
  .strict()

export type ScopesOptions = z.output<typeof scopesOptions>
