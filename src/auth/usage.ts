/**
 * Learn mode's memory: what each learning client actually called, as (Immich permission, route
 * template) pairs with a count of granted and refused calls and the first and last time seen.
 *
 * Bounded by construction: a route template comes from the route table (a few hundred), never a raw
 * path, and each template has one permission; clients are the keys file's entries.
 *
 * The gateway counts in memory (one Map update per request) and flushes every few seconds and on
 * shutdown, to Redis when configured (one hash per client, merged atomically so several gateways
 * sharing Redis add up their learning) or else to a JSON state file beside the keys file.
 */
import { readFileSync } from 'node:fs'
import { basename, dirname, extname, join } from 'node:path'
import type { Redis } from 'ioredis'
import type { Logger } from 'pino'
import { writeFileAtomic } from './keys-file.js'

/** One (permission, route) cell of a client's usage. Times are epoch ms. */
export interface UsageCell {
  /** Calls the scopes allowed. */
  granted: number
  /** Calls refused (outside the learning base). */
  refused: number
  first: number
  last: number
}

/** Keyed by `<permission> <METHOD> <template>`. */
export type ClientUsage = Map<string, UsageCell>

export interface UsageEntry extends UsageCell {
  permission: string
  method: string
  route: string
}

/** The key of a usage cell: `<permission> <METHOD> <template>` (none of them contains a space). */
export function usageField(permission: string, method: string, route: string): string {
  return `${permission} ${method} ${route}`
}

/** The parts of a usageField key. */
function parseUsageField(field: string): {
  permission: string
  method: string
  route: string
} {
  const [permission = '', method = '', ...rest] = field.split(' ')
  return { permission, method, route: rest.join(' ') }
}

/** A client's usage as a list of cells with their permission and route. */
export function usageEntries(usage: ClientUsage): UsageEntry[] {
  return [...usage].map(([field, cell]) => ({ ...parseUsageField(field), ...cell }))
}

function merge(into: ClientUsage, field: string, cell: UsageCell): void {
  const have = into.get(field)
  if (!have) {
    into.set(field, { ...cell })
    return
  }
  have.granted += cell.granted
  have.refused += cell.refused
  have.first = Math.min(have.first, cell.first)
  have.last = Math.max(have.last, cell.last)
}

/** Where learned usage is kept: shared by the gateway (writes) and the CLI (reads, clears). */
export interface UsageStore {
  /** Adds counts (sums counts, keeps the earliest first and latest last). */
  add(client: string, usage: ClientUsage): Promise<void>
  read(client: string): Promise<ClientUsage>
  clear(client: string): Promise<void>
  close(): Promise<void>
}

/** The state file used without Redis: `keys.yaml` → `keys.usage.json`, in the same directory. */
export function usageStateFile(keysFile: string): string {
  const ext = extname(keysFile)
  return join(dirname(keysFile), `${basename(keysFile, ext)}.usage.json`)
}

interface StateFileShape {
  version: 1
  clients: Record<
    string,
    Record<string, [granted: number, refused: number, first: number, last: number]>
  >
}

/** A JSON file, rewritten atomically on each flush (the gateway is its only regular writer). */
export class FileUsageStore implements UsageStore {
  constructor(readonly file: string) {}

  private load(): StateFileShape {
    let text: string
    try {
      text = readFileSync(this.file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, clients: {} }
      throw err
    }
    const parsed = JSON.parse(text) as Partial<StateFileShape>
    return { version: 1, clients: parsed.clients ?? {} }
  }

  private save(state: StateFileShape): void {
    writeFileAtomic(this.file, `${JSON.stringify(state)}\n`)
  }

  async add(client: string, usage: ClientUsage): Promise<void> {
    const state = this.load()
    const current = this.toUsage(state.clients[client])
    for (const [field, cell] of usage) merge(current, field, cell)
    state.clients[client] = Object.fromEntries(
      [...current].map(([f, c]) => [f, [c.granted, c.refused, c.first, c.last]])
    )
    this.save(state)
  }

  async read(client: string): Promise<ClientUsage> {
    return this.toUsage(this.load().clients[client])
  }

  async clear(client: string): Promise<void> {
    const state = this.load()
    if (!(client in state.clients)) return
    delete state.clients[client]
    this.save(state)
  }

  async close(): Promise<void> {}

  private toUsage(raw: StateFileShape['clients'][string] | undefined): ClientUsage {
    const out: ClientUsage = new Map()
    for (const [field, [granted, refused, first, last]] of Object.entries(raw ?? {}))
      out.set(field, { granted, refused, first, last })
    return out
  }
}

/**
 * Merges one client's counts into its hash: `g|<field>` and `r|<field>` are HINCRBY-ed, `f|` keeps
 * the minimum and `l|` the maximum, all in one atomic script, so concurrent gateways add up.
 */
const MERGE_SCRIPT = `
for i = 1, #ARGV, 5 do
  local field = ARGV[i]
  redis.call('HINCRBY', KEYS[1], 'g|' .. field, ARGV[i + 1])
  redis.call('HINCRBY', KEYS[1], 'r|' .. field, ARGV[i + 2])
  local first = redis.call('HGET', KEYS[1], 'f|' .. field)
  if not first or tonumber(first) > tonumber(ARGV[i + 3]) then
    redis.call('HSET', KEYS[1], 'f|' .. field, ARGV[i + 3])
  end
  local last = redis.call('HGET', KEYS[1], 'l|' .. field)
  if not last or tonumber(last) < tonumber(ARGV[i + 4]) then
    redis.call('HSET', KEYS[1], 'l|' .. field, ARGV[i + 4])
  end
end
return 1
`

/** One Redis hash per client, `<prefix><client>`. */
export class RedisUsageStore implements UsageStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly ownsConnection = false
  ) {}

  async add(client: string, usage: ClientUsage): Promise<void> {
    if (usage.size === 0) return
    const args: (string | number)[] = []
    for (const [field, c] of usage) args.push(field, c.granted, c.refused, c.first, c.last)
    await this.redis.eval(MERGE_SCRIPT, 1, this.prefix + client, ...args)
  }

  async read(client: string): Promise<ClientUsage> {
    const raw = await this.redis.hgetall(this.prefix + client)
    const out: ClientUsage = new Map()
    for (const [key, value] of Object.entries(raw)) {
      const kind = key.slice(0, 2)
      const field = key.slice(2)
      let cell = out.get(field)
      if (!cell) out.set(field, (cell = { granted: 0, refused: 0, first: 0, last: 0 }))
      const n = Number(value)
      if (kind === 'g|') cell.granted = n
      else if (kind === 'r|') cell.refused = n
      else if (kind === 'f|') cell.first = n
      else if (kind === 'l|') cell.last = n
    }
    return out
  }

  async clear(client: string): Promise<void> {
    await this.redis.del(this.prefix + client)
  }

  async close(): Promise<void> {
    if (this.ownsConnection) this.redis.disconnect()
  }
}

/** What a call is recorded under: a route of the table (or the websocket), by identity. */
export interface RecordedRoute {
  readonly method: string
  /** The template, `/api/assets/{id}/thumbnail`. */
  readonly path: string
}

interface PendingCell extends UsageCell {
  permission: string
  route: RecordedRoute
}

/**
 * The gateway side: counts calls in memory and hands them to the store every `flushMs` and on
 * close. A failed flush keeps the counts for the next attempt (nothing learned is lost to a Redis
 * blip); the number of pending cells stays bounded by clients × routes.
 *
 * Per call: two Map lookups keyed by the client name and the route object (no string is built).
 */
export class UsageRecorder {
  private pending = new Map<string, Map<RecordedRoute, PendingCell>>()
  private timer: NodeJS.Timeout
  private flushing: Promise<void> | undefined

  constructor(
    private readonly store: UsageStore,
    flushMs: number,
    private readonly logger: Logger
  ) {
    this.timer = setInterval(() => void this.flush(), flushMs)
    this.timer.unref()
  }

  /** `route` must be a stable object per route (the route table's entry): it is the key. */
  record(client: string, permission: string, route: RecordedRoute, granted: boolean): void {
    let cells = this.pending.get(client)
    if (cells === undefined) this.pending.set(client, (cells = new Map()))
    const now = Date.now()
    const cell = cells.get(route)
    if (cell === undefined) {
      cells.set(route, {
        permission,
        route,
        granted: granted ? 1 : 0,
        refused: granted ? 0 : 1,
        first: now,
        last: now,
      })
      return
    }
    if (granted) cell.granted++
    else cell.refused++
    cell.last = now
  }

  /** Writes what was counted since the last flush. */
  flush(): Promise<void> {
    this.flushing ??= this.doFlush().finally(() => (this.flushing = undefined))
    return this.flushing
  }

  private async doFlush(): Promise<void> {
    if (this.pending.size === 0) return
    const batch = this.pending
    this.pending = new Map()
    for (const [client, cells] of batch) {
      const usage: ClientUsage = new Map()
      for (const c of cells.values())
        merge(usage, usageField(c.permission, c.route.method, c.route.path), {
          granted: c.granted,
          refused: c.refused,
          first: c.first,
          last: c.last,
        })
      try {
        await this.store.add(client, usage)
      } catch (err) {
        // Put the counts back, merged with whatever arrived meanwhile.
        let now = this.pending.get(client)
        if (!now) this.pending.set(client, (now = new Map()))
        for (const cell of cells.values()) {
          const have = now.get(cell.route)
          if (!have) now.set(cell.route, cell)
          else {
            have.granted += cell.granted
            have.refused += cell.refused
            have.first = Math.min(have.first, cell.first)
          }
        }
        this.logger.warn(
          { client, error: (err as Error).message },
          'learn mode: usage flush failed, retrying later'
        )
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.timer)
    await this.flush()
    // A flush that raced with the one above may have left counts behind.
    if (this.pending.size) await this.flush()
    await this.store.close()
  }
}
