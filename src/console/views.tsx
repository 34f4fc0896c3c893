/** The console's pages (hono/jsx, rendered on the server). No inline script or style: see assets.ts. */
import type { Child } from 'hono/jsx'
import type { ClientEntry } from '../auth/keys-file.js'
import type { Preset } from '../auth/scopes.js'
import { SCRIPT, STYLESHEET } from './assets.js'
import { BarChart } from './charts.js'
import type { ClientStats, Refusal } from './recorder.js'

export interface PageContext {
  base: string
  /** Who is signed in (shown in the header), or undefined on sign-in errors. */
  who?: string
  /** The current section, for `aria-current`. */
  section?: 'clients' | 'add' | 'health'
  /** Ask for the copy-button script. */
  script?: boolean
}

export function Layout(props: PageContext & { title: string; children?: Child }) {
  const { base, who, section, title } = props
  const nav = (name: PageContext['section'], href: string, label: string) => (
    <a href={href} aria-current={section === name ? 'page' : undefined}>
      {label}
    </a>
  )
  return (
    <html lang='en'>
      <head>
        <meta charset='utf-8' />
        <meta name='viewport' content='width=device-width, initial-scale=1' />
        <meta name='referrer' content='no-referrer' />
        <title>{`${title} · immich-gateway`}</title>
        <link rel='stylesheet' href={`${base}/static/${STYLESHEET.name}`} />
      </head>
      <body>
        <header>
          <span class='brand'>immich-gateway</span>
          {who !== undefined && (
            <nav aria-label='Console'>
              {nav('clients', `${base}/`, 'Clients')}
              {nav('add', `${base}/clients/new`, 'Add a client')}
              {nav('health', `${base}/health`, 'Health')}
              <a href='/'>Immich</a>
            </nav>
          )}
          {who !== undefined && <span class='who'>Signed in as {who}</span>}
        </header>
        <main>
          <h1>{title}</h1>
          {props.children}
        </main>
        {props.script && <script src={`${base}/static/${SCRIPT.name}`} defer />}
      </body>
    </html>
  )
}

/** A refusal or problem page: what happened and what to do. */
export function Problem(props: PageContext & { title: string; message: string; link?: Child }) {
  return (
    <Layout {...props}>
      <p class='notice error' role='alert'>
        {props.message}
      </p>
      {props.link}
    </Layout>
  )
}

export function time(ms: number | undefined, now: number): string {
  if (ms === undefined) return '—'
  const d = Math.round((now - ms) / 1000)
  const abs = Math.abs(d)
  const text =
    abs < 60
      ? `${abs} s`
      : abs < 3600
        ? `${Math.round(abs / 60)} min`
        : abs < 172_800
          ? `${Math.round(abs / 3600)} h`
          : `${Math.round(abs / 86_400)} days`
  return d >= 0 ? `${text} ago` : `in ${text}`
}

function When({ iso, now }: { iso?: string; now: number }) {
  if (iso === undefined) return <span class='muted'>never</span>
  const ms = Date.parse(iso)
  return (
    <time datetime={new Date(ms).toISOString()} title={new Date(ms).toISOString()}>
      {time(ms, now)}
    </time>
  )
}

export function ScopeChips({
  scopes,
  presets,
}: {
  scopes: readonly string[]
  presets: ReadonlyMap<string, Preset>
}) {
  return (
    <>
      {scopes.map((s) =>
        presets.has(s) ? (
          <span class='chip preset' title={presets.get(s)!.description ?? ''}>
            {s}
          </span>
        ) : (
          <span class='chip'>{s}</span>
        )
      )}
    </>
  )
}

/** Learning state and album binding, where the keys file sets them. */
function ClientState({ entry, now }: { entry: ClientEntry; now: number }) {
  const learning =
    entry.learn !== undefined &&
    (entry.learn.until === undefined || Date.parse(entry.learn.until) > now)
  return (
    <>
      {learning && (
        <span
          class='chip warn'
          title={entry.learn?.base?.join(', ') ?? 'every non-admin permission'}
        >
          learning{entry.learn?.until ? ` until ${entry.learn.until.slice(0, 10)}` : ''}
        </span>
      )}
      {entry.reportOnly && <span class='chip warn'>report-only</span>}
      {entry.albums && entry.albums.length > 0 && (
        <span class='chip' title={entry.albums.join(', ')}>
          {entry.albums.length === 1 ? '1 album' : `${entry.albums.length} albums`}
        </span>
      )}
    </>
  )
}

export type SortKey =
  | 'name'
  | 'created'
  | 'expires'
  | 'lastSeen'
  | 'requests'
  | 'unauthorized'
  | 'forbidden'
  | 'limited'
  | 'legacy'

export interface ClientRow {
  entry: ClientEntry
  stats?: ClientStats
  requests: number
  unauthorized: number
  forbidden: number
  limited: number
  legacy: number
}

const COLUMNS: { key: SortKey; label: string; num?: boolean }[] = [
  { key: 'name', label: 'Name' },
  { key: 'created', label: 'Created' },
  { key: 'expires', label: 'Expires' },
  { key: 'lastSeen', label: 'Last seen' },
  { key: 'requests', label: 'Requests (24 h)', num: true },
  { key: 'unauthorized', label: '401', num: true },
  { key: 'forbidden', label: '403', num: true },
  { key: 'limited', label: '429', num: true },
  { key: 'legacy', label: 'Legacy calls', num: true },
]

export function ClientsPage(
  props: PageContext & {
    rows: ClientRow[]
    presets: ReadonlyMap<string, Preset>
    sort: SortKey
    dir: 'asc' | 'desc'
    now: number
    file: string
    notice?: string
  }
) {
  const { base, rows, sort, dir, now, presets } = props
  const header = (col: (typeof COLUMNS)[number]) => {
    const active = col.key === sort
    const next = active && dir === 'asc' ? 'desc' : 'asc'
    return (
      <th
        scope='col'
        class={col.num ? 'num' : undefined}
        aria-sort={active ? (dir === 'asc' ? 'ascending' : 'descending') : undefined}
      >
        <a href={`${base}/?sort=${col.key}&dir=${next}`}>
          {col.label}
          {active ? (dir === 'asc' ? ' ▲' : ' ▼') : ''}
        </a>
      </th>
    )
  }
  return (
    <Layout {...props} title='Clients' section='clients'>
      {props.notice && (
        <p class='notice' role='status'>
          {props.notice}
        </p>
      )}
      {rows.length === 0 ? (
        <p>
          No clients yet in <code>{props.file}</code>. <a href={`${base}/clients/new`}>Add one</a>.
        </p>
      ) : (
        <table>
          <caption class='sr-only'>Gateway clients, sorted by {sort}</caption>
          <thead>
            <tr>
              {header(COLUMNS[0]!)}
              <th scope='col'>Scopes</th>
              {COLUMNS.slice(1).map(header)}
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => (
              <tr>
                <td>
                  <a href={`${base}/clients/${encodeURIComponent(r.entry.name)}`}>{r.entry.name}</a>
                </td>
                <td>
                  <ScopeChips scopes={r.entry.scopes} presets={presets} />
                  <ClientState entry={r.entry} now={now} />
                </td>
                <td>
                  <When iso={r.entry.createdAt} now={now} />
                </td>
                <td>
                  {r.entry.expiresAt && Date.parse(r.entry.expiresAt) <= now ? (
                    <span class='bad'>expired</span>
                  ) : (
                    <When iso={r.entry.expiresAt} now={now} />
                  )}
                </td>
                <td>{r.stats?.lastSeen ? time(r.stats.lastSeen, now) : '—'}</td>
                <td class='num'>{r.requests}</td>
                <td class='num'>{r.unauthorized}</td>
                <td class='num'>{r.forbidden}</td>
                <td class='num'>{r.limited}</td>
                <td class='num'>{r.legacy}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class='hint'>
        Traffic counts are this gateway process's own (since it started, at most 24 h); Grafana
        keeps the history.
      </p>
    </Layout>
  )
}

export function ClientPage(
  props: PageContext & {
    entry: ClientEntry
    presets: ReadonlyMap<string, Preset>
    granted: string[]
    stats?: ClientStats
    now: number
    csrf: string
    notice?: string
  }
) {
  const { base, entry, stats, now, csrf } = props
  const path = `${base}/clients/${encodeURIComponent(entry.name)}`
  const grace = (entry.previous ?? []).filter((p) => Date.parse(p.validUntil) > now)
  const refusals = [...(stats?.refusals ?? [])].reverse()
  return (
    <Layout {...props} title={`Client ${entry.name}`} section='clients'>
      {props.notice && (
        <p class='notice' role='status'>
          {props.notice}
        </p>
      )}
      <dl class='facts'>
        <dt>Scopes</dt>
        <dd>
          <ScopeChips scopes={entry.scopes} presets={props.presets} />
          <ClientState entry={entry} now={now} />
        </dd>
        {entry.albums && entry.albums.length > 0 && (
          <>
            <dt>Albums</dt>
            <dd>{entry.albums.join(', ')}</dd>
          </>
        )}
        {entry.description && (
          <>
            <dt>Description</dt>
            <dd>{entry.description}</dd>
          </>
        )}
        <dt>Created</dt>
        <dd>
          <When iso={entry.createdAt} now={now} />
        </dd>
        <dt>Expires</dt>
        <dd>
          <When iso={entry.expiresAt} now={now} />
        </dd>
        <dt>Allowed addresses</dt>
        <dd>{entry.allowFrom?.join(', ') ?? 'any'}</dd>
        <dt>Immich key from</dt>
        <dd>
          {entry.upstreamKeyEnv ? (
            <code>${entry.upstreamKeyEnv}</code>
          ) : (
            `minted for this client (Immich key id ${entry.immichKey?.id ?? '?'})`
          )}
        </dd>
        <dt>Last seen</dt>
        <dd>{time(stats?.lastSeen, now)}</dd>
        {grace.length > 0 && (
          <>
            <dt>Rotated key</dt>
            <dd>
              the old key works until{' '}
              {grace.map((p) => (
                <When iso={p.validUntil} now={now} />
              ))}
            </dd>
          </>
        )}
      </dl>

      <div class='actions'>
        <form class='rotate' method='post' action={`${path}/rotate`}>
          <input type='hidden' name='_csrf' value={csrf} />
          <label for='grace'>Old key keeps working for</label>
          <select id='grace' name='grace'>
            <option value='0s'>no time (stops now)</option>
            <option value='1h'>1 hour</option>
            <option value='24h' selected>
              24 hours
            </option>
            <option value='7d'>7 days</option>
          </select>{' '}
          <button type='submit'>Rotate key</button>
        </form>
        <a class='button secondary' href={`${path}/revoke`}>
          Revoke…
        </a>
      </div>

      <h2>Granted permissions</h2>
      <table>
        <caption class='sr-only'>Permissions granted to {entry.name} and their recent use</caption>
        <thead>
          <tr>
            <th scope='col'>Permission</th>
            <th scope='col'>Last used (this process)</th>
          </tr>
        </thead>
        <tbody>
          {props.granted.map((p) => {
            const used = stats?.used.get(p)
            return (
              <tr>
                <td>
                  <code>{p}</code>
                </td>
                <td class={used ? 'ok' : 'muted'}>{used ? time(used, now) : 'not used'}</td>
              </tr>
            )
          })}
        </tbody>
      </table>

      <h2>Recent refusals</h2>
      {refusals.length === 0 ? (
        <p class='muted'>None since the gateway started.</p>
      ) : (
        <RefusalTable refusals={refusals} now={now} />
      )}
    </Layout>
  )
}

function RefusalTable({ refusals, now }: { refusals: Refusal[]; now: number }) {
  return (
    <table>
      <thead>
        <tr>
          <th scope='col'>When</th>
          <th scope='col'>Status</th>
          <th scope='col'>Route</th>
          <th scope='col'>Permission</th>
          <th scope='col'>Reason</th>
        </tr>
      </thead>
      <tbody>
        {refusals.map((r) => (
          <tr>
            <td>
              <time datetime={new Date(r.at).toISOString()}>{time(r.at, now)}</time>
            </td>
            <td class='bad'>{r.status}</td>
            <td>
              <code>
                {r.method} {r.route}
              </code>
            </td>
            <td>{r.permission ? <code>{r.permission}</code> : '—'}</td>
            <td>{r.code ?? '—'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  )
}

export interface AddForm {
  name: string
  description: string
  scopes: string[]
  expires: string
  allowFrom: string
  albums: string
  upstreamKeyEnv: string
}

export interface PermissionArea {
  area: string
  permissions: { name: string; adminOnly: boolean }[]
}

export function AddPage(
  props: PageContext & {
    csrf: string
    form: AddForm
    presets: ReadonlyMap<string, Preset>
    areas: PermissionArea[]
    errors: Partial<Record<keyof AddForm | 'form', string>>
  }
) {
  const { base, form, errors, csrf } = props
  const checked = new Set(form.scopes)
  const described = (field: keyof AddForm, hint?: string) =>
    [hint ? `${field}-hint` : '', errors[field] ? `${field}-error` : ''].join(' ').trim() ||
    undefined
  const fieldError = (field: keyof AddForm) =>
    errors[field] && (
      <p class='field-error' id={`${field}-error`}>
        {errors[field]}
      </p>
    )
  /** A labelled text input with its hint and, after a refused submission, what to fix. */
  const textField = (
    field: 'name' | 'expires' | 'allowFrom' | 'albums' | 'upstreamKeyEnv',
    label: string,
    hint: string,
    extra: { required?: boolean; pattern?: string } = {}
  ) => (
    <>
      <label for={field}>{label}</label>
      <input
        type='text'
        id={field}
        name={field}
        value={form[field]}
        {...extra}
        aria-describedby={described(field, 'hint')}
        aria-invalid={errors[field] ? 'true' : undefined}
      />
      <p class='hint' id={`${field}-hint`}>
        {hint}
      </p>
      {fieldError(field)}
    </>
  )
  return (
    <Layout {...props} title='Add a client' section='add'>
      {errors.form && (
        <p class='notice error' role='alert'>
          {errors.form}
        </p>
      )}
      <form method='post' action={`${base}/clients`}>
        <input type='hidden' name='_csrf' value={csrf} />
        {textField(
          'name',
          'Name',
          'Letters, digits, ".", "_" or "-": it labels the client in logs and metrics (e.g. living-room-frame).',
          { required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]{0,63}' }
        )}
        <label for='description'>Description (optional)</label>
        <input type='text' id='description' name='description' value={form.description} />

        <fieldset aria-describedby={errors.scopes ? 'scopes-error' : undefined}>
          <legend>Scopes</legend>
          {fieldError('scopes')}
          <p class='hint'>
            A preset grants a list of Immich permissions; or pick permissions one by one below.
            Admin-only routes need their permission named exactly (a wildcard never reaches them).
          </p>
          <h2>Presets</h2>
          {[...props.presets].map(([name, preset]) => (
            <label class='check'>
              <input type='checkbox' name='scope' value={name} checked={checked.has(name)} />
              <span>
                <strong>{name}</strong> <small>{preset.description ?? ''}</small>
              </span>
            </label>
          ))}
          <h2>Immich permissions by area</h2>
          <div class='areas'>
            {props.areas.map((a) => (
              <fieldset>
                <legend>{a.area}</legend>
                {a.permissions.length > 1 && a.permissions.some((p) => !p.adminOnly) && (
                  <label class='check'>
                    <input
                      type='checkbox'
                      name='scope'
                      value={`${a.area}.*`}
                      checked={checked.has(`${a.area}.*`)}
                    />
                    <span>
                      every <code>{a.area}</code> permission <small>({a.area}.*)</small>
                    </span>
                  </label>
                )}
                {a.permissions.map((p) => (
                  <label class='check'>
                    <input
                      type='checkbox'
                      name='scope'
                      value={p.name}
                      checked={checked.has(p.name)}
                    />
                    <span>
                      <code>{p.name}</code>
                      {p.adminOnly && <small> admin</small>}
                    </span>
                  </label>
                ))}
              </fieldset>
            ))}
          </div>
          <label class='check'>
            <input type='checkbox' name='scope' value='all' checked={checked.has('all')} />
            <span>
              <strong>all</strong>{' '}
              <small class='warn'>
                everything the Immich key can do, admin routes and the websocket included
              </small>
            </span>
          </label>
        </fieldset>

        {textField(
          'expires',
          'Expires (optional)',
          'A duration from now (90d, 12h, 2w) or a date (2027-06-30). Empty: never.'
        )}
        {textField(
          'allowFrom',
          'Allowed addresses (optional)',
          'Addresses or CIDRs, comma-separated (192.168.1.0/24, 10.0.0.7). Empty: any address.'
        )}
        {textField(
          'albums',
          'Only these albums (optional)',
          "Album ids, comma-separated (the last part of the album's address in Immich). The key then sees only the photos of these albums, whatever its scopes allow: for a photo frame. Empty: no album limit."
        )}
        {textField(
          'upstreamKeyEnv',
          'Immich API key from the environment variable',
          "The gateway injects this Immich key for the client; it must be set in the gateway's environment."
        )}
        <div class='actions'>
          <button type='submit'>Create the key</button>
        </div>
      </form>
    </Layout>
  )
}

/** The only page that ever shows a key: right after it is made, never again. */
export function NewKeyPage(
  props: PageContext & { client: string; newKey: string; what: string; oldValidUntil?: string }
) {
  const { base, client, newKey } = props
  return (
    <Layout {...props} title={`Key for ${client}`} section='clients' script>
      <p class='notice' role='status'>
        {props.what} Copy the key now: it is shown only once, and the gateway keeps only its hash.
      </p>
      <label for='new-key'>Gateway key for {client}</label>
      <input class='key' type='text' id='new-key' value={newKey} readonly />
      <div class='actions'>
        <button type='button' data-copy='new-key' data-status='copy-status'>
          Copy the key
        </button>
        <span id='copy-status' role='status' aria-live='polite'></span>
      </div>
      {props.oldValidUntil && (
        <p>The old key keeps working until {new Date(props.oldValidUntil).toUTCString()}.</p>
      )}
      <p>
        The client sends it as <code>x-api-key</code>, <code>Authorization: Bearer</code> or, if it
        can only set a URL, the <code>apiKey</code> query parameter.
      </p>
      <p>
        <a href={`${base}/clients/${encodeURIComponent(client)}`}>Done: show the client</a>
      </p>
    </Layout>
  )
}

export function RevokePage(props: PageContext & { client: string; csrf: string }) {
  const { base, client, csrf } = props
  const path = `${base}/clients/${encodeURIComponent(client)}`
  return (
    <Layout {...props} title={`Revoke ${client}?`} section='clients'>
      <p>
        The key of <strong>{client}</strong> (and any rotated-out key still in its grace period)
        stops working within a second, and the client is removed from the keys file. This cannot be
        undone: a new key would have to be added and configured on the device.
      </p>
      <form method='post' action={`${path}/revoke`} class='actions'>
        <input type='hidden' name='_csrf' value={csrf} />
        <button type='submit' class='danger'>
          Revoke {client}
        </button>
        <a class='button secondary' href={path}>
          Cancel
        </a>
      </form>
    </Layout>
  )
}

export interface HealthView {
  immich: { ok: boolean; detail: string; ms?: number }
  redis?: { ok: boolean; detail: string; ms?: number }
  cache?: { hitRatio?: number; lookups: number; storedBytes: Record<string, number> }
  requestsPerMinute: number[]
  refusalsPerMinute: number[]
  latency: (number | undefined)[]
  legacy: { client: string; calls: number }[]
  clients: number
}

export function HealthPage(props: PageContext & { health: HealthView }) {
  const h = props.health
  const state = (ok: boolean, text: string) => <span class={ok ? 'ok' : 'bad'}>{text}</span>
  return (
    <Layout {...props} title='Health' section='health'>
      <dl class='facts'>
        <dt>Immich</dt>
        <dd>
          {state(h.immich.ok, h.immich.ok ? 'reachable' : 'unreachable')} ({h.immich.detail}
          {h.immich.ms !== undefined ? `, ${h.immich.ms.toFixed(1)} ms` : ''})
        </dd>
        <dt>Redis</dt>
        <dd>
          {h.redis
            ? [
                state(h.redis.ok, h.redis.ok ? 'up' : 'down'),
                ` (${h.redis.detail}${h.redis.ms !== undefined ? `, ${h.redis.ms.toFixed(1)} ms` : ''})`,
              ]
            : 'not configured (limits and cache in memory)'}
        </dd>
        <dt>Thumbnail cache</dt>
        <dd>
          {h.cache
            ? `${h.cache.lookups} lookups, hit ratio ${h.cache.hitRatio === undefined ? '—' : `${(h.cache.hitRatio * 100).toFixed(1)} %`}; stored ${
                Object.entries(h.cache.storedBytes)
                  .map(([tier, bytes]) => `${tier} ${formatBytes(bytes)}`)
                  .join(', ') || '0 B'
              }`
            : 'off'}
        </dd>
        <dt>Clients</dt>
        <dd>{h.clients} in the keys file</dd>
      </dl>
      <h2>Last hour</h2>
      <div class='charts'>
        <figure>
          <figcaption>Requests per minute</figcaption>
          <BarChart
            values={h.requestsPerMinute}
            title='Requests per minute'
            from='60 min ago'
            to='now'
          />
        </figure>
        <figure>
          <figcaption>Refusals (401, 403, 429) per minute</figcaption>
          <BarChart
            values={h.refusalsPerMinute}
            title='Refusals per minute'
            from='60 min ago'
            to='now'
            tone='bad'
          />
        </figure>
        <figure>
          <figcaption>Immich latency (ping, ms)</figcaption>
          <BarChart
            values={h.latency}
            title='Immich ping latency'
            from='oldest probe'
            to='latest'
            unit=' ms'
          />
        </figure>
      </div>
      <h2>Legacy calls per client (24 h)</h2>
      {h.legacy.length === 0 ? (
        <p class='muted'>No legacy calls.</p>
      ) : (
        <table>
          <thead>
            <tr>
              <th scope='col'>Client</th>
              <th scope='col' class='num'>
                Calls
              </th>
            </tr>
          </thead>
          <tbody>
            {h.legacy.map((l) => (
              <tr>
                <td>{l.client}</td>
                <td class='num'>{l.calls}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </Layout>
  )
}

function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MiB`
  return `${(n / 1024 ** 3).toFixed(2)} GiB`
}
