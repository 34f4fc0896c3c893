// The fake Immich's sign-in page (`GET /auth/login?continue=<path>`), as the web app behaves: a form
// whose script posts `{email, password}` to `POST /api/auth/login` (which sets the session cookies),
// then goes to the `continue` path. Used by the console's browser tests.
import type { ServerResponse } from 'node:http'

/** Where Immich's web app signs users in; `?continue=` is where it goes afterwards. */
export const LOGIN_PAGE_PATH = '/auth/login'

const SCRIPT = `
document.getElementById('login').addEventListener('submit', function (event) {
  event.preventDefault();
  var form = event.target;
  fetch('/api/auth/login', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ email: form.email.value, password: form.password.value }),
  }).then(function (res) {
    if (res.status !== 201) {
      document.getElementById('error').textContent = 'Incorrect email or password';
      return;
    }
    var next = new URLSearchParams(location.search).get('continue') || '/photos';
    location.href = next.charAt(0) === '/' && next.charAt(1) !== '/' ? next : '/photos';
  });
});
`

const PAGE = Buffer.from(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Login - Immich</title></head>
<body><main>
<h1>Immich</h1>
<form id="login">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username">
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password">
<button type="submit">Login</button>
<p id="error" role="alert"></p>
</form>
</main><script>${SCRIPT}</script></body></html>
`)

/** Writes the sign-in page; returns the body length (the fake records it). */
export function serveLoginPage(res: ServerResponse, head: boolean): number {
  res.setHeader('Content-Type', 'text/html; charset=utf-8')
  res.setHeader('Cache-Control', 'no-cache')
  res.setHeader('Content-Length', PAGE.length)
  res.writeHead(200)
  res.end(head ? undefined : PAGE)
  return head ? 0 : PAGE.length
}
