#!/usr/bin/env node
// The `immich-gateway` command. In a clone (src/ and the dev dependency tsx present) it runs the
// TypeScript source, so it works right after `npm install` and never runs a stale build; in an
// installed package or the container image (no tsx) it runs the compiled dist/.
import { existsSync } from 'node:fs'
import { URL } from 'node:url'

const root = new URL('../', import.meta.url)
const source = new URL('src/cli/index.ts', root)

async function loadTsx() {
  try {
    return await import('tsx/esm/api')
  } catch {
    return undefined
  }
}

const tsx = existsSync(source) ? await loadTsx() : undefined
let cli
if (tsx) {
  tsx.register()
  cli = await import(source.href)
} else {
  const built = new URL('dist/src/cli/index.js', root)
  if (!existsSync(built)) {
    process.stderr.write(
      'immich-gateway: neither dist/ (npm run build) nor the dev dependencies (npm install) are here\n'
    )
    process.exit(1)
  }
  cli = await import(built.href)
}
cli.main(process.argv.slice(2))
