import { z } from 'zod'

const envName = z
  .string()
  .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name')

export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const
export const HMAC_ALGORITHMS = ['HS256', 'HS384', 'HS512'] as const

const issuerSchema = z
  .object({
    name: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, '1–64 letters, digits, ".", "_" or "-"')
      .describe(
        'Client label in logs and metrics for every token of this issuer (never the raw subject).'
      ),
    issuer: z
      .string()
      .min(1)
      .describe(
        'Expected `iss` claim, exactly (e.g. https://auth.example.com/application/o/immich/).'
      ),
    audience: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)])
      .describe('Accepted `aud` value(s): the token must name one of them.'),
    jwksUri: z
      .url({ protocol: /^https?$/, error: 'expected an http:// or https:// URL' })
      .optional()
      .describe(
        'JWKS endpoint of the issuer (cached; refetched when a token names an unknown `kid`).'
      ),
    publicKeyEnv: envName
      .optional()
      .describe('Env var holding a static public key: PEM (SPKI) or a JWK as JSON.'),
    secretEnv: envName
      .optional()
      .describe('Env var holding an HMAC secret (HS256/384/512), at least 32 bytes.'),
    algorithms: z
      .array(z.enum([...ASYMMETRIC_ALGORITHMS, ...HMAC_ALGORITHMS]))
      .min(1)
      .optional()
      .describe(
        'Accepted `alg` values. Default RS256+ES256 for jwksUri/publicKeyEnv, HS256 for secretEnv. `none` is never accepted; HS* is refused for an issuer with public keys.'
      ),
    clockToleranceSeconds: z
      .number()
      .int()
      .min(0)
      .max(300)
      .default(30)
      .describe('Leeway for `exp` and `nbf`.'),
    jwksCacheSeconds: z
      .number()
      .int()
      .min(10)
      .max(86_400)
      .default(600)
      .describe('How long fetched JWKS keys are trusted before a refetch.'),
    jwksTimeoutMs: z
      .number()
      .int()
      .min(100)
      .max(60_000)
      .default(5000)
      .describe(
        'A JWKS fetch that has not completed within this time fails (counted and logged as `timeout`).'
      ),
    jwksCooldownSeconds: z
      .number()
      .int()
      .min(0)
      .max(3600)
      .default(30)
      .describe('Least time between two JWKS fetches triggered by unknown `kid`s.'),
    scopeClaims: z
      .boolean()
      .default(true)
      .describe(
        'Read scopes from the `scope` (space-separated) and `scp` (array) claims; entries that are not permissions, wildcards, `all` or presets (openid, email...) are ignored.'
      ),
    groupsClaim: z
      .string()
      .min(1)
      .default('groups')
      .describe("Claim holding the user's groups (array of strings)."),
    groupScopes: z
      .record(z.string(), z.array(z.string().min(1)))
      .default({})
      .describe('Group → scopes (permissions, wildcards, presets) granted to members.'),
    defaultScopes: z
      .array(z.string().min(1))
      .default([])
      .describe('Scopes every valid token of this issuer gets.'),
    upstreamKeyEnv: envName.describe(
      'Env var holding the Immich API key injected for tokens of this issuer.'
    ),
    upstreamKeyEnvByGroup: z
      .record(z.string(), envName)
      .default({})
      .describe(
        'Group → env var of the Immich key to inject instead (first matching group, in this order).'
      ),
    upstreamKeyEnvBySubject: z
      .record(z.string(), envName)
      .default({})
      .describe('Subject (`sub`) → env var of the Immich key to inject; wins over groups.'),
  })
  .strict()
  .superRefine((issuer, ctx) => {
    const sources = [issuer.jwksUri, issuer.publicKeyEnv, issuer.secretEnv].filter(
      (s) => s !== undefined
    ).length
    if (sources !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['jwksUri'],
        message: 'set exactly one of jwksUri, publicKeyEnv, secretEnv',
      })
      return
    }
    const hmac = issuer.secretEnv !== undefined
    for (const [i, alg] of (issuer.algorithms ?? []).entries()) {
      if (hmac !== alg.startsWith('HS')) {
        ctx.addIssue({
          code: 'custom',
          path: ['algorithms', i],
          message: hmac
            ? `${alg} needs a public key, but this issuer has an HMAC secret`
            : `${alg} is an HMAC algorithm: never accepted for an issuer with public keys (key confusion)`,
        })
      }
    }
  })

/** Options of the jwt-auth policy (`policies: { jwt-auth: {...} }`). */
export const jwtAuthOptions = z
  .object({
    issuers: z
      .array(issuerSchema)
      .default([])
      .describe('Trusted token issuers (OIDC providers). None → the policy does nothing.'),
    presetsFile: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Scope presets (YAML). Default: env GATEWAY_SCOPES_FILE, else the shipped config/scopes.yaml.'
      ),
    maxTokenBytes: z
      .number()
      .int()
      .min(256)
      .max(65_536)
      .default(8192)
      .describe('A longer bearer token gets 401 without being parsed.'),
  })
  .strict()
  .superRefine((options, ctx) => {
    const seen = new Map<string, number>()
    options.issuers.forEach((issuer, i) => {
      if (seen.has(issuer.issuer))
        ctx.addIssue({
          code: 'custom',
          path: ['issuers', i, 'issuer'],
          message: `same issuer as issuers[${seen.get(issuer.issuer)}]`,
        })
      seen.set(issuer.issuer, i)
    })
  })

export type JwtAuthOptions = z.output<typeof jwtAuthOptions>
export type JwtIssuerOptions = JwtAuthOptions['issuers'][number]
