/**
 * The console's only stylesheet and script, served by the console itself (no external asset: it works
 * offline on a LAN) under a content hash, so the Content-Security-Policy can be `'self'` without
 * `unsafe-inline` and browsers may cache them for good.
 */
import { createHash } from 'node:crypto'

const CSS = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #57606a; --bg: #fff; --line: #d0d7de;
  --accent: #2f5fd0; --accent-fg: #fff; --bad: #b42318; --ok: #1a7f37; --chip: #eef2ff; --warn: #7a4b00; }
@media (prefers-color-scheme: dark) {
  :root { --fg: #e6edf3; --muted: #9ea7b3; --bg: #0d1117; --line: #30363d; --accent: #7aa2ff;
    --accent-fg: #0d1117; --bad: #ff7b72; --ok: #56d364; --chip: #1f2a44; --warn: #e3b341; }
}
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
a { color: var(--accent); }
header { display: flex; flex-wrap: wrap; gap: 1rem; align-items: center; padding: .75rem 1.25rem; border-bottom: 1px solid var(--line); }
header .brand { font-weight: 700; margin-right: 1rem; }
header nav { display: flex; gap: 1rem; flex: 1; }
header nav a[aria-current="page"] { font-weight: 700; text-decoration: none; }
header .who { color: var(--muted); font-size: .9rem; }
main { padding: 1.25rem; max-width: 90rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
h2 { font-size: 1.1rem; margin: 1.5rem 0 .5rem; }
table { border-collapse: collapse; width: 100%; font-size: .92rem; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th a { text-decoration: none; color: inherit; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.chip { display: inline-block; padding: 0 .45rem; margin: 0 .25rem .25rem 0; border-radius: .6rem; background: var(--chip); font-size: .85rem; }
.chip.preset { font-weight: 600; }
.muted { color: var(--muted); }
.bad { color: var(--bad); }
.ok { color: var(--ok); }
.warn { color: var(--warn); }
.notice { padding: .75rem 1rem; border: 1px solid var(--line); border-left: 4px solid var(--accent); margin: 0 0 1rem; }
.notice.error { border-left-color: var(--bad); }
form.rotate { display: flex; flex-wrap: wrap; gap: .5rem; align-items: center; }
form.rotate label { margin: 0; }
form.rotate select { width: auto; }
fieldset { border: 1px solid var(--line); margin: 0 0 1rem; padding: .5rem 1rem 1rem; }
legend { font-weight: 600; padding: 0 .25rem; }
label { display: block; margin: .5rem 0 .2rem; font-weight: 600; }
.check { display: flex; gap: .5rem; align-items: baseline; font-weight: 400; margin: .2rem 0; }
.check small { color: var(--muted); }
.areas { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr)); gap: 0 1rem; }
input[type="text"], input[type="password"], select { font: inherit; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: .3rem; background: var(--bg); color: var(--fg); width: min(32rem, 100%); }
.hint { color: var(--muted); font-size: .85rem; margin: .1rem 0 0; }
.field-error { color: var(--bad); font-size: .9rem; margin: .2rem 0 0; }
button, .button { font: inherit; padding: .4rem .9rem; border-radius: .3rem; border: 1px solid var(--accent); background: var(--accent); color: var(--accent-fg); cursor: pointer; text-decoration: none; display: inline-block; }
button.secondary, .button.secondary { background: transparent; color: var(--accent); }
button.danger { background: var(--bad); border-color: var(--bad); color: #fff; }
.key { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; width: min(40rem, 100%); }
.actions { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin: 1rem 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1rem; margin: 0; }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: 1rem; }
figure { margin: 0; border: 1px solid var(--line); padding: .75rem; }
figcaption { font-weight: 600; margin-bottom: .4rem; }
svg.chart { width: 100%; height: auto; display: block; }
svg.chart .bar { fill: var(--accent); }
svg.chart .bar.bad { fill: var(--bad); }
svg.chart .axis { stroke: var(--line); }
svg.chart text { fill: var(--muted); font-size: 10px; }
.sr-only { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`

/**
 * The copy button of the once-shown key: the Clipboard API where the page is a secure context
 * (https, localhost), else a selection and execCommand (plain http on a LAN).
 */
const JS = `
document.querySelectorAll('button[data-copy]').forEach(function (button) {
  button.addEventListener('click', function () {
    var field = document.getElementById(button.getAttribute('data-copy'));
    var status = document.getElementById(button.getAttribute('data-status'));
    var done = function (ok) { if (status) status.textContent = ok ? 'Copied.' : 'Select the key and copy it by hand.'; };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(field.value).then(function () { done(true); }, function () { done(false); });
    } else {
      field.focus(); field.select();
      var ok = false; try { ok = document.execCommand('copy'); } catch (e) { ok = false; }
      done(ok);
    }
  });
});
`

function asset(body: string, type: string): { body: string; type: string; name: string } {
  const hash = createHash('sha256').update(body).digest('base64url').slice(0, 12)
  return { body, type, name: `${hash}.${type === 'text/css' ? 'css' : 'js'}` }
}

export const STYLESHEET = asset(CSS, 'text/css')
export const SCRIPT = asset(JS, 'text/javascript')
