// The console over real sockets: a real gateway with the console on, in front of the fake Immich
// (sessions for an admin and a non-admin), and a real keys file that every write must change.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import { parse } from 'yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { keyHash } from '../../src/auth/hash.js'
import { GATEWAY_KEY_PATTERN } from '../../src/auth/keygen.js'
import type { ClientEntry } from '../../src/auth/keys-file.js'
import { FAKE_SESSION_TOKEN, startFakeImmich } from '../fake-immich/server.js'
import { startStack, type Stack } from '../support/stack.js'
import {
  client,
  leakedSecrets,
  remember,
  tempDir,
  USER_KEY_ENV,
  writeKeys,
} from '../policies/api-key-auth/support.js'
import { runCli } from '../support/cli.js'

const ASSET = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
const USER_SESSION = 'fake-user-session-token'
const CONSOLE_TOKEN = remember('console-token-0123456789abcdefghijklmnopqrstuvwxyz')
const ADMIN = `immich_access_token=${FAKE_SESSION_TOKEN}`

const dir = tempDir()
const keysFile = join(dir, 'keys.yaml')
const frame = client({ name: 'frame', scopes: ['photo-frame'], createdAt: '2026-11-01T00:00:00Z' })
const busy = client({ name: 'busy', scopes: ['asset.view'], createdAt: '2026-10-01T00:00:00Z' })

let stack: Stack

beforeAll(async () => {
  writeKeys(keysFile, [frame.entry, busy.entry])
  const immich = await startFakeImmich({
    sessions: {
      [FAKE_SESSION_TOKEN]: { userId: 'u-admin', name: 'Admin', isAdmin: true },
      [USER_SESSION]: { userId: 'u-user', name: 'User' },
    },
  })
  stack = await startStack(
    {
      console: { enabled: true, token: CONSOLE_TOKEN },
      policies: { 'api-key-auth': { keysFile, reloadCheckMs: 100 } },
    },
    { immich }
  )
})
afterAll(async () => {
  await stack?.close()
  await stack?.immich.close()
})

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  text: string
}

async function call(
  method: 'GET' | 'POST',
  path: string,
  headers: Record<string, string> = {},
  form?: URLSearchParams
): Promise<Answer> {
  const res = await request(`${stack.url}${path}`, {
    method,
    headers: form ? { 'content-type': 'application/x-www-form-urlencoded', ...headers } : headers,
    body: form?.toString(),
  })
  return { status: res.statusCode, headers: res.headers, text: await res.body.text() }
}

/** An admin's browser: its Immich session plus the console cookie from a first page. */
async function adminSession(): Promise<{ cookie: string; csrf: string }> {
  const page = await call('GET', '/gateway/clients/new', { cookie: ADMIN })
  expect(page.status).toBe(200)
  const setCookie = String(page.headers['set-cookie'])
  const consoleCookie = /igw_console=([^;]+)/.exec(setCookie)![1]!
  return { cookie: `${ADMIN}; igw_console=${consoleCookie}`, csrf: csrfOf(page.text) }
}

function csrfOf(html: string): string {
  return /name="_csrf" value="([^"]+)"/.exec(html)![1]!
}

function keyOf(html: string): string {
  return remember(/id="new-key" value="([^"]+)"/.exec(html)![1]!)
}

function entries(): ClientEntry[] {
  return (parse(readFileSync(keysFile, 'utf8')) as { clients: ClientEntry[] }).clients
}

async function apiStatus(key: string, path = `/api/assets/${ASSET}/thumbnail`): Promise<number> {
  const res = await request(`${stack.url}${path}`, { headers: { 'x-api-key': key } })
  await res.body.dump()
  return res.statusCode
}

describe('sign-in with Immich', () => {
  it('without a session: to Immich’s login with the way back; /gateway → /gateway/', async () => {
    const page = await call('GET', '/gateway/clients/frame?x=1')
    expect(page.status).toBe(302)
    expect(page.headers.location).toBe(
      `/auth/login?continue=${encodeURIComponent('/gateway/clients/frame?x=1')}`
    )
    const bare = await call('GET', '/gateway')
    expect(bare.status).toBe(308)
    expect(bare.headers.location).toBe('/gateway/')
    // The console answers itself: nothing under /gateway reaches Immich.
    expect(stack.immich.requestsTo('/gateway/')).toEqual([])
  })

  it('a non-admin gets a clear 403 page', async () => {
    const page = await call('GET', '/gateway/', { cookie: `immich_access_token=${USER_SESSION}` })
    expect(page.status).toBe(403)
    expect(page.text).toContain('Administrators only')
    expect(page.text).toContain('user@example.com')
    expect(page.text).not.toContain('frame')
  })

  it('an expired session goes back to the login; a write with it changes nothing (401)', async () => {
    const expired = 'immich_access_token=expired-session-token'
    const page = await call('GET', '/gateway/', { cookie: expired })
    expect(page.status).toBe(302)
    const before = readFileSync(keysFile, 'utf8')
    const post = await call(
      'POST',
      '/gateway/clients/frame/revoke',
      { cookie: expired },
      new URLSearchParams({ _csrf: 'x' })
    )
    expect(post.status).toBe(401)
    expect(post.text).toContain('Sign in to Immich')
    expect(readFileSync(keysFile, 'utf8')).toBe(before)
  })

  it('an admin sees the clients; Immich is asked once per session while cached', async () => {
    stack.immich.clearRequests()
    const page = await call('GET', '/gateway/', { cookie: ADMIN })
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toMatch(/^text\/html/)
    expect(page.text).toContain('href="/gateway/clients/frame"')
    expect(page.text).toContain('photo-frame')
    expect(page.text).toContain('Signed in as admin@example.com')
    await call('GET', '/gateway/health', { cookie: ADMIN })
    expect(stack.immich.requestsTo('/api/users/me')).toHaveLength(1)
  })

  it('the console token works headless (Bearer), a wrong one does not', async () => {
    const ok = await call('GET', '/gateway/', { authorization: `Bearer ${CONSOLE_TOKEN}` })
    expect(ok.status).toBe(200)
    expect(ok.text).toContain('Signed in as console-token')
    const wrong = await call('GET', '/gateway/', { authorization: `Bearer ${'x'.repeat(51)}` })
    expect(wrong.status).toBe(302)
  })
})

describe('safety of every page', () => {
  it('CSP without unsafe-inline, no caching, the console cookie HttpOnly and SameSite=Strict', async () => {
    const page = await call('GET', '/gateway/', { cookie: ADMIN })
    const csp = String(page.headers['content-security-policy'])
    expect(csp).toContain("default-src 'none'")
    expect(csp).toContain("script-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    expect(page.headers['cache-control']).toBe('no-store')
    expect(page.headers['x-frame-options']).toBe('DENY')
    const cookie = String(page.headers['set-cookie'])
    expect(cookie).toMatch(
      /^igw_console=[A-Za-z0-9_-]{43}; Path=\/gateway; HttpOnly; SameSite=Strict$/
    )
    expect(page.text).not.toMatch(/<script>|style="/)
  })

  it('serves its stylesheet itself (no external asset), cacheable for good', async () => {
    const page = await call('GET', '/gateway/', { cookie: ADMIN })
    const href = /<link rel="stylesheet" href="([^"]+)"/.exec(page.text)![1]!
    expect(href).toMatch(/^\/gateway\/static\/[\w-]+\.css$/)
    const css = await call('GET', href)
    expect(css.status).toBe(200)
    expect(css.headers['content-type']).toMatch(/^text\/css/)
    expect(css.headers['cache-control']).toContain('immutable')
    expect(page.text).not.toMatch(/(src|href)="(https?:)?\/\//)
  })

  it('no page holds a key or a key hash', async () => {
    for (const path of ['/gateway/', '/gateway/clients/frame', '/gateway/health']) {
      const page = await call('GET', path, { cookie: ADMIN })
      expect(page.status).toBe(200)
      expect(page.text).not.toContain('igw_')
      expect(page.text).not.toContain('sha256:')
      expect(page.text).not.toContain(frame.entry.keyHash.slice(7, 30))
      expect(page.text).not.toContain(FAKE_SESSION_TOKEN)
    }
  })

  it('a write without the CSRF token, with a wrong one, without the console cookie or from another site is refused', async () => {
    const { cookie, csrf } = await adminSession()
    const before = readFileSync(keysFile, 'utf8')
    const attempts = [
      await call('POST', '/gateway/clients/frame/revoke', { cookie }, new URLSearchParams({})),
      await call(
        'POST',
        '/gateway/clients/frame/revoke',
        { cookie },
        new URLSearchParams({ _csrf: csrf.replace(/^./, (c) => (c === 'A' ? 'B' : 'A')) })
      ),
      await call(
        'POST',
        '/gateway/clients/frame/revoke',
        { cookie: ADMIN },
        new URLSearchParams({ _csrf: csrf })
      ),
      await call(
        'POST',
        '/gateway/clients/frame/revoke',
        { cookie, 'sec-fetch-site': 'cross-site' },
        new URLSearchParams({ _csrf: csrf })
      ),
    ]
    for (const answer of attempts) {
      expect(answer.status).toBe(403)
      expect(answer.text).toContain('Change refused')
    }
    expect(readFileSync(keysFile, 'utf8')).toBe(before)
  })

  it('console requests are rate-limited like every other route', async () => {
    const limited = await startStack({
      console: { enabled: true },
      policies: {
        'api-key-auth': { keysFile },
        'rate-limit': { classes: { api: { points: 3, durationSeconds: 60 } } },
      },
    })
    try {
      const statuses: number[] = []
      for (let i = 0; i < 5; i++) {
        const res = await request(`${limited.url}/gateway/`, { headers: { cookie: ADMIN } })
        await res.body.dump()
        statuses.push(res.statusCode)
        if (i === 0) expect(res.headers['ratelimit-policy']).toContain('"api";q=3')
      }
      expect(statuses).toEqual([200, 200, 200, 429, 429])
    } finally {
      await limited.close()
    }
  })
})

describe('add, rotate, revoke: the keys file changes and the gateway follows at once', () => {
  let key: string

  it('add: the key is shown once, the file holds its hash, the API accepts it', async () => {
    const { cookie, csrf } = await adminSession()
    const form = new URLSearchParams({
      _csrf: csrf,
      name: 'kitchen-frame',
      description: 'The frame in the kitchen',
      expires: '90d',
      allowFrom: '127.0.0.1, 10.0.0.0/8',
      upstreamKeyEnv: USER_KEY_ENV,
    })
    form.append('scope', 'photo-frame')
    form.append('scope', 'tag.read')
    const page = await call('POST', '/gateway/clients', { cookie }, form)
    expect(page.status).toBe(200)
    key = keyOf(page.text)
    expect(key).toMatch(GATEWAY_KEY_PATTERN)
    expect(page.text).toContain('shown only once')
    expect(page.headers['cache-control']).toBe('no-store')
    const entry = entries().find((e) => e.name === 'kitchen-frame')!
    expect(entry).toMatchObject({
      keyHash: keyHash(key),
      scopes: ['photo-frame', 'tag.read'],
      upstreamKeyEnv: USER_KEY_ENV,
      allowFrom: ['127.0.0.1', '10.0.0.0/8'],
      description: 'The frame in the kitchen',
    })
    expect((Date.parse(entry.expiresAt!) - Date.now()) / 86_400_000).toBeCloseTo(90, 1)
    expect(readFileSync(keysFile, 'utf8')).not.toContain(key)
    await expect.poll(() => apiStatus(key), { timeout: 2000, interval: 20 }).toBe(200)
    // The key's scopes hold: photo-frame does not upload.
    expect(await apiStatus(key, '/api/admin/users')).toBe(403)
    // Never again: the client's page shows no key.
    const detail = await call('GET', '/gateway/clients/kitchen-frame', { cookie: ADMIN })
    expect(detail.text).not.toContain(key)
  })

  it('a bad form is answered with what to fix, and the file is untouched', async () => {
    const { cookie, csrf } = await adminSession()
    const before = readFileSync(keysFile, 'utf8')
    const cases: [Record<string, string>, string[], RegExp][] = [
      [{ name: 'bad name!' }, ['asset.view'], /Name: 1–64 letters/],
      [
        { name: 'x1' },
        ['asset.veiw'],
        /unknown scope &quot;asset.veiw&quot;|unknown scope "asset.veiw"/,
      ],
      [{ name: 'x2' }, [], /Pick at least one scope/],
      [{ name: 'x3', allowFrom: '10.0.0.0/99' }, ['asset.view'], /Allowed addresses:/],
      [{ name: 'x4', expires: 'next tuesday' }, ['asset.view'], /Expires:/],
      [
        { name: 'x5', upstreamKeyEnv: 'IGW_TEST_NOT_SET_ANYWHERE' },
        ['asset.view'],
        /IGW_TEST_NOT_SET_ANYWHERE is not set/,
      ],
      [{ name: 'frame' }, ['asset.view'], /already exists/],
      [
        { name: 'x6', albums: 'hallway' },
        ['asset.view'],
        /Albums: &quot;hallway&quot; is not|Albums: "hallway" is not/,
      ],
    ]
    for (const [fields, scopes, message] of cases) {
      const form = new URLSearchParams({ _csrf: csrf, ...fields })
      for (const s of scopes) form.append('scope', s)
      const page = await call('POST', '/gateway/clients', { cookie }, form)
      expect(page.status, JSON.stringify(fields)).toBe(400)
      expect(page.text).toMatch(message)
      expect(page.text).not.toContain('igw_')
    }
    expect(readFileSync(keysFile, 'utf8')).toBe(before)
  })

  it('rotate: a new key at once; without grace the old one stops', async () => {
    const { cookie, csrf } = await adminSession()
    const page = await call(
      'POST',
      '/gateway/clients/kitchen-frame/rotate',
      { cookie },
      new URLSearchParams({ _csrf: csrf, grace: '0s' })
    )
    expect(page.status).toBe(200)
    const fresh = keyOf(page.text)
    expect(fresh).not.toBe(key)
    expect(entries().find((e) => e.name === 'kitchen-frame')!.keyHash).toBe(keyHash(fresh))
    await expect.poll(() => apiStatus(fresh), { timeout: 2000, interval: 20 }).toBe(200)
    expect(await apiStatus(key)).toBe(401)
    key = fresh
  })

  it('rotate with a grace period keeps the old key working until then', async () => {
    const { cookie, csrf } = await adminSession()
    const page = await call(
      'POST',
      '/gateway/clients/kitchen-frame/rotate',
      { cookie },
      new URLSearchParams({ _csrf: csrf, grace: '1h' })
    )
    const fresh = keyOf(page.text)
    expect(page.text).toMatch(/The old key keeps working until/)
    const entry = entries().find((e) => e.name === 'kitchen-frame')!
    expect(entry.previous).toEqual([{ keyHash: keyHash(key), validUntil: expect.any(String) }])
    await expect.poll(() => apiStatus(fresh), { timeout: 2000, interval: 20 }).toBe(200)
    expect(await apiStatus(key)).toBe(200)
    key = fresh
  })

  it('revoke: asks first, then the client is gone from the file and its key refused', async () => {
    const { cookie, csrf } = await adminSession()
    const confirm = await call('GET', '/gateway/clients/kitchen-frame/revoke', { cookie })
    expect(confirm.status).toBe(200)
    expect(confirm.text).toContain('Revoke kitchen-frame')
    expect(entries().some((e) => e.name === 'kitchen-frame')).toBe(true)
    const done = await call(
      'POST',
      '/gateway/clients/kitchen-frame/revoke',
      { cookie },
      new URLSearchParams({ _csrf: csrf })
    )
    expect(done.status).toBe(303)
    expect(done.headers.location).toBe('/gateway/?revoked=kitchen-frame')
    expect(entries().some((e) => e.name === 'kitchen-frame')).toBe(false)
    await expect.poll(() => apiStatus(key), { timeout: 2000, interval: 20 }).toBe(401)
    const gone = await call('GET', '/gateway/clients/kitchen-frame', { cookie })
    expect(gone.status).toBe(404)
  })

  it('the console token writes without a CSRF token (no ambient credential)', async () => {
    const form = new URLSearchParams({ name: 'headless', upstreamKeyEnv: USER_KEY_ENV })
    form.append('scope', 'asset.view')
    const page = await call(
      'POST',
      '/gateway/clients',
      { authorization: `Bearer ${CONSOLE_TOKEN}` },
      form
    )
    expect(page.status).toBe(200)
    keyOf(page.text)
    expect(entries().some((e) => e.name === 'headless')).toBe(true)
  })

  it('every change left one audit line (who, what, when) and no secret in any log line', () => {
    const audit = stack.logs
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.audit === 'console' && l.action !== 'csrf-refused')
    expect(audit.map((l) => [l.action, l.client, l.who])).toEqual([
      ['add', 'kitchen-frame', 'admin@example.com'],
      ['rotate', 'kitchen-frame', 'admin@example.com'],
      ['rotate', 'kitchen-frame', 'admin@example.com'],
      ['revoke', 'kitchen-frame', 'admin@example.com'],
      ['add', 'headless', 'console-token'],
    ])
    for (const line of audit) expect(new Date(line.time as string).getTime()).toBeGreaterThan(0)
    expect(leakedSecrets()).toEqual([])
  })
})

describe('what the console shows about traffic', () => {
  it('add with albums: the key is bound to them (a frame), as `keys add --albums` binds it', async () => {
    const { cookie, csrf } = await adminSession()
    const album = '0b9e8c3e-5a1d-4c2b-9f3e-7d6a5b4c3d2e'
    const form = new URLSearchParams({
      _csrf: csrf,
      name: 'hall-frame',
      albums: album,
      upstreamKeyEnv: USER_KEY_ENV,
    })
    form.append('scope', 'photo-frame')
    const page = await call('POST', '/gateway/clients', { cookie }, form)
    expect(page.status).toBe(200)
    const frameKey = keyOf(page.text)
    expect(entries().find((e) => e.name === 'hall-frame')!.albums).toEqual([album])
    // Bound: people (which photo-frame's person.read allows) are refused to it as to any bound key.
    const people = async () => {
      const res = await request(`${stack.url}/api/people`, { headers: { 'x-api-key': frameKey } })
      return `${res.statusCode} ${((await res.body.json()) as { message?: string }).message}`
    }
    await expect
      .poll(people, { timeout: 2000, interval: 20 })
      .toBe('403 album-bound keys cannot use this route')
    const detail = await call('GET', '/gateway/clients/hall-frame', { cookie: ADMIN })
    expect(detail.text).toContain(album)
    const done = await call(
      'POST',
      '/gateway/clients/hall-frame/revoke',
      { cookie },
      new URLSearchParams({ _csrf: csrf })
    )
    expect(done.status).toBe(303)
  })

  it('the CLI and the console write alike: one revokes what the other added, and rotates it', async () => {
    const added = await runCli([
      'keys',
      'add',
      '--name',
      'from-cli',
      '--scopes',
      'asset.view',
      '--upstream-key-env',
      USER_KEY_ENV,
      '--file',
      keysFile,
    ])
    expect(added.code, added.stderr).toBe(0)
    const cliKey = remember(added.stdout.trimEnd().split('\n').pop()!)
    await expect.poll(() => apiStatus(cliKey), { timeout: 2000, interval: 20 }).toBe(200)
    const listed = await call('GET', '/gateway/', { cookie: ADMIN })
    expect(listed.text).toContain('from-cli')
    const { cookie, csrf } = await adminSession()
    const rotated = await call(
      'POST',
      '/gateway/clients/from-cli/rotate',
      { cookie },
      new URLSearchParams({ _csrf: csrf, grace: '0s' })
    )
    const consoleKey = keyOf(rotated.text)
    await expect.poll(() => apiStatus(cliKey), { timeout: 2000, interval: 20 }).toBe(401)
    expect(await apiStatus(consoleKey)).toBe(200)
    const again = await runCli(['keys', 'rotate', 'from-cli', '--grace', '0', '--file', keysFile])
    expect(again.code, again.stderr).toBe(0)
    const cliAgain = remember(again.stdout.trimEnd().split('\n').pop()!)
    await expect.poll(() => apiStatus(consoleKey), { timeout: 2000, interval: 20 }).toBe(401)
    expect(await apiStatus(cliAgain)).toBe(200)
    const revoked = await call(
      'POST',
      '/gateway/clients/from-cli/revoke',
      { cookie },
      new URLSearchParams({ _csrf: csrf })
    )
    expect(revoked.status).toBe(303)
    await expect.poll(() => apiStatus(cliAgain), { timeout: 2000, interval: 20 }).toBe(401)
    expect(entries().some((e) => e.name === 'from-cli')).toBe(false)
  })

  it('the table counts requests and refusals per client; sortable on the server', async () => {
    for (let i = 0; i < 3; i++) expect(await apiStatus(busy.key)).toBe(200)
    expect(await apiStatus(busy.key, '/api/people')).toBe(403)
    expect(await apiStatus(frame.key)).toBe(200)
    const page = await call('GET', '/gateway/?sort=requests&dir=desc', { cookie: ADMIN })
    expect(page.status).toBe(200)
    const order = [...page.text.matchAll(/<td><a href="\/gateway\/clients\/([\w.-]+)"/g)].map(
      (m) => m[1]
    )
    expect(order.slice(0, 2)).toEqual(['busy', 'frame'])
    const busyRow = /<tr><td><a href="\/gateway\/clients\/busy">[\s\S]*?<\/tr>/.exec(page.text)![0]
    const numbers = [...busyRow.matchAll(/<td class="num">(\d+)<\/td>/g)].map((m) => Number(m[1]))
    expect(numbers).toEqual([4, 0, 1, 0, 0])
    const byName = await call('GET', '/gateway/?sort=name&dir=asc', { cookie: ADMIN })
    const names = [...byName.text.matchAll(/<td><a href="\/gateway\/clients\/([\w.-]+)"/g)].map(
      (m) => m[1]
    )
    expect(names).toEqual([...names].sort())
    expect(byName.text).toContain('aria-sort="ascending"')
  })

  it('a client page: granted permissions, which were used, and its recent refusals', async () => {
    const page = await call('GET', '/gateway/clients/busy', { cookie: ADMIN })
    expect(page.status).toBe(200)
    expect(page.text).toMatch(/<code>asset\.view<\/code><\/td><td class="ok">\d+ s ago/)
    expect(page.text).toMatch(/GET \/api\/people/)
    expect(page.text).toContain('<code>person.read</code>')
    expect(page.text).toContain('MISSING_PERMISSION')
  })

  it('health: Immich reachable with its latency, cache, charts as inline SVG', async () => {
    const page = await call('GET', '/gateway/health', { cookie: ADMIN })
    expect(page.status).toBe(200)
    expect(page.text).toMatch(/reachable<\/span> \(status 200, [\d.]+ ms\)/)
    expect(page.text).toContain('not configured')
    expect(page.text).toMatch(/lookups, hit ratio/)
    expect((page.text.match(/<svg class="chart"/g) ?? []).length).toBe(3)
    expect(page.text).toMatch(/aria-label="Refusals per minute: peak [1-9]/)
  })

  it('the console is off unless enabled: /gateway/ is then Immich’s', async () => {
    const off = await startStack({ policies: { 'api-key-auth': { keysFile } } })
    try {
      const res = await request(`${off.url}/gateway/`, { headers: { cookie: ADMIN } })
      await res.body.dump()
      expect(off.immich.requestsTo('/gateway/')).toHaveLength(1)
    } finally {
      await off.close()
    }
  })
})
