// The console in a real browser (Debian's chromium, driven by playwright-core): sign in through the
// fake Immich's login page, add a client, copy its key, call the API with it, revoke it. Screenshots
// of every page go to test-artifacts/console/ (gitignored); axe-core checks each page.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parse } from 'yaml'
import { ADMIN_EMAIL, ADMIN_PASSWORD } from '../fake-immich/server.js'
import { packageFile } from '../../src/paths.js'
import { startStack, type Stack } from '../support/stack.js'
import {
  client,
  leakedSecrets,
  remember,
  tempDir,
  USER_KEY_ENV,
  writeKeys,
} from '../policies/api-key-auth/support.js'

const CHROMIUM = '/usr/bin/chromium'
const ARTIFACTS = packageFile('test-artifacts/console')
const ASSET = '5e1b7b7e-2b64-4b9c-9a57-1f7d3c1e2a10'
const axeSource = readFileSync(
  createRequire(import.meta.url).resolve('axe-core/axe.min.js'),
  'utf8'
)

// CI installs chromium (.ci/run) and requires this suite; elsewhere it runs when chromium is there.
const available = existsSync(CHROMIUM)
if (!available && process.env.CI_REQUIRE_BROWSER)
  throw new Error(`${CHROMIUM} is missing but CI_REQUIRE_BROWSER is set`)

describe.skipIf(!available)('the console in a real browser', () => {
  const dir = tempDir()
  const keysFile = join(dir, 'keys.yaml')
  const profile = mkdtempSync(join(tmpdir(), 'igw-chromium-'))
  let stack: Stack
  let context: BrowserContext
  let page: Page
  const cspViolations: string[] = []

  beforeAll(async () => {
    writeKeys(keysFile, [client({ name: 'existing', scopes: ['read-only'] }).entry])
    mkdirSync(ARTIFACTS, { recursive: true })
    stack = await startStack({
      console: { enabled: true },
      policies: { 'api-key-auth': { keysFile, reloadCheckMs: 100 } },
    })
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1280, height: 900 },
    })
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: stack.url })
    page = context.pages()[0] ?? (await context.newPage())
    page.on('console', (message) => {
      if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text())
    })
  }, 60_000)

  afterAll(async () => {
    await context?.close()
    await stack?.close()
    rmSync(profile, { recursive: true, force: true })
  })

  /** Screenshot and accessibility check of the page as it is now. */
  async function check(name: string): Promise<void> {
    await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true })
    await page.evaluate(axeSource)
    const result = (await page.evaluate(() =>
      (
        globalThis as unknown as {
          axe: { run: (ctx: unknown, opts: unknown) => Promise<unknown> }
        }
      ).axe.run(document, { resultTypes: ['violations'] })
    )) as { violations: { id: string; impact: string; help: string; nodes: unknown[] }[] }
    const serious = result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help} ×${v.nodes.length}`)
    expect(serious, name).toEqual([])
  }

  /**
   * The API as a device would call it with the key: from a tab on Immich's web app (the console's CSP
   * allows no fetch), without the session cookie.
   */
  let device: Page | undefined
  async function apiStatus(key: string): Promise<number> {
    if (!device) {
      device = await context.newPage()
      await device.goto(`${stack.url}/photos`)
    }
    return device.evaluate(
      async ([path, k]) =>
        (
          await fetch(path!, {
            headers: { 'x-api-key': k! },
            credentials: 'omit',
            cache: 'no-store',
          })
        ).status,
      [`/api/assets/${ASSET}/thumbnail`, key]
    )
  }

  let key = ''

  it('signs in through Immich’s own login and lands on the console', async () => {
    await page.goto(`${stack.url}/gateway/`)
    expect(new URL(page.url()).pathname).toBe('/auth/login')
    expect(new URL(page.url()).searchParams.get('continue')).toBe('/gateway/')
    await page.screenshot({ path: join(ARTIFACTS, '0-immich-login.png') })
    await page.fill('#email', ADMIN_EMAIL)
    await page.fill('#password', ADMIN_PASSWORD)
    await Promise.all([page.waitForURL(`${stack.url}/gateway/`), page.click('button[type=submit]')])
    expect(await page.textContent('h1')).toBe('Clients')
    expect(await page.textContent('header')).toContain(`Signed in as ${ADMIN_EMAIL}`)
    expect(await page.locator('td a', { hasText: 'existing' }).count()).toBe(1)
    await check('1-clients')
  })

  it('adds a client with the scope picker and shows its key once, with a copy button', async () => {
    await page.getByRole('link', { name: 'Add a client' }).click()
    await check('2-add-form')
    await page.fill('#name', 'browser-frame')
    await page.fill('#description', 'Added from the browser test')
    await page.check('input[name=scope][value=photo-frame]')
    await page.fill('#expires', '30d')
    await page.fill('#upstreamKeyEnv', USER_KEY_ENV)
    await Promise.all([
      page.waitForURL(`${stack.url}/gateway/clients`),
      page.getByRole('button', { name: 'Create the key' }).click(),
    ])
    expect(await page.textContent('h1')).toBe('Key for browser-frame')
    key = remember(await page.inputValue('#new-key'))
    expect(key).toMatch(/^igw_/)
    await page.getByRole('button', { name: 'Copy the key' }).click()
    await expect.poll(() => page.textContent('#copy-status')).toBe('Copied.')
    expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(key)
    await check('3-new-key')
    const entry = (
      parse(readFileSync(keysFile, 'utf8')) as { clients: { name: string; scopes: string[] }[] }
    ).clients.find((c) => c.name === 'browser-frame')
    expect(entry?.scopes).toEqual(['photo-frame'])
  })

  it('the copied key calls the API (200)', async () => {
    await expect.poll(() => apiStatus(key), { timeout: 3000, interval: 50 }).toBe(200)
  })

  it('the client page shows its use; revoking asks first; then the key gets 401', async () => {
    await page.getByRole('link', { name: 'Done: show the client' }).click()
    expect(await page.textContent('h1')).toBe('Client browser-frame')
    expect(await page.content()).not.toContain(key)
    await check('4-client')
    await page.getByRole('link', { name: 'Revoke…' }).click()
    expect(await page.textContent('h1')).toBe('Revoke browser-frame?')
    await check('5-revoke-confirm')
    await Promise.all([page.waitForURL(/\/gateway\/\?revoked=/), page.click('button.danger')])
    expect(await page.textContent('[role=status]')).toContain('Revoked browser-frame')
    expect(await page.locator('td a', { hasText: 'browser-frame' }).count()).toBe(0)
    await check('6-after-revoke')
    await expect.poll(() => apiStatus(key), { timeout: 3000, interval: 50 }).toBe(401)
  })

  it('the health page renders its charts', async () => {
    await page.getByRole('link', { name: 'Health' }).click()
    expect(await page.locator('svg.chart').count()).toBe(3)
    await check('7-health')
  })

  it('nothing broke the Content-Security-Policy and no secret was logged', () => {
    expect(cspViolations).toEqual([])
    expect(leakedSecrets()).toEqual([])
  })
})
