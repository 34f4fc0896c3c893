import type { Context } from 'hono'
import type { Env } from '../env.js'
import { isApiPath } from '../routing/path.js'
import { writeAnswer } from '../server/answer.js'

/**
 * A person opening the web app (GET of a page, `Accept: text/html`, outside /api), not an API
 * client: while Immich is down they get a page that explains and retries by itself, not JSON.
 */
export function isBrowserNavigation(c: Context<Env>): boolean {
  if (c.get('upstream').method !== 'GET' || isApiPath(c.get('path'))) return false
  const accept = c.env.incoming.headers.accept
  return typeof accept === 'string' && accept.includes('text/html')
}

function page(retryAfter: string): Buffer {
  // Self-contained (no script, font, image or stylesheet to fetch from a server that is down):
  // the meta refresh reloads the same address once Immich may be back.
  return Buffer.from(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="${retryAfter}">
<title>Immich is restarting</title>
<style>
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;font:16px/1.5 system-ui,sans-serif;background:#f6f6f4;color:#222}
main{max-width:32rem;padding:2rem;text-align:center}
h1{font-size:1.4rem;margin:0 0 .5rem}
p{margin:.25rem 0;color:#555}
@media (prefers-color-scheme:dark){body{background:#111;color:#eee}p{color:#aaa}}
</style>
</head>
<body>
<main>
<h1>Immich is restarting</h1>
<p>The photo server is not answering right now, usually during an update or a reboot.</p>
<p>This page tries again by itself every ${retryAfter} seconds.</p>
</main>
</body>
</html>
`)
}

const pages = new Map<string, Buffer>()

/** Writes the maintenance page (503, Retry-After, never cached) through the answer writer. */
export function writeMaintenancePage(c: Context<Env>, retryAfter: string): Response {
  let body = pages.get(retryAfter)
  if (body === undefined) pages.set(retryAfter, (body = page(retryAfter)))
  c.get('notes').error = 'UPSTREAM_DOWN'
  return writeAnswer(
    c,
    503,
    {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      'retry-after': retryAfter,
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'",
      'x-correlation-id': c.get('requestId'),
    },
    body
  )
}
