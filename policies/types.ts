import type { MiddlewareHandler } from 'hono'
import type { z } from 'zod'
import type { GatewayConfig } from '../src/config/schema.js'
import type { Deps } from '../src/deps.js'
import type { Env } from '../src/env.js'

/** Pipeline positions, front to back (ARCHITECTURE.md). A policy names the one it runs in. */
export const PHASES = ['legacy', 'authenticate', 'authorize', 'rate-limit', 'cache'] as const
export type Phase = (typeof PHASES)[number]

export interface PolicyContext {
  config: GatewayConfig
  deps: Deps
  /** Resources to release on shutdown (timers, watchers, connections). */
  onClose(fn: () => void | Promise<void>): void
}

/** A policy: options validated once at boot by its own schema, then a middleware built once. */
export interface PolicyDefinition<S extends z.ZodType = z.ZodType> {
  name: string
  phase: Phase
  options: S
  create(
    options: z.output<S>,
    ctx: PolicyContext
  ): MiddlewareHandler<Env> | Promise<MiddlewareHandler<Env>>
}

export function definePolicy<S extends z.ZodType>(def: PolicyDefinition<S>): PolicyDefinition<S> {
  return def
}
