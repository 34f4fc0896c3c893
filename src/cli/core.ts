/** The gateway's own commands: serve, config check/reference/example/docs, routes generate. */
import { DEFAULT_ROUTES_FILE } from '../gateway.js'
import { writeRouteTable } from '../routing/generate-routes.js'
import { flag, registerCommand, UsageError } from './index.js'

const CONFIG_FLAGS = `--file FILE   the config file (YAML or JSON; default: env GATEWAY_CONFIG, else built-in defaults)
--keys FILE   the keys file (default: env GATEWAY_KEYS_FILE, else config/keys.yaml)`

registerCommand('serve', {
  summary: 'Run the gateway (SIGTERM drains in-flight requests, then exits)',
  usage: '[--file CONFIG] [--keys KEYS_FILE]',
  details: `${CONFIG_FLAGS}
Environment: IMMICH_URL, PORT, HOST, REDIS_URL, LOG_LEVEL, METRICS_PORT, METRICS_HOST.`,
  example: 'IMMICH_URL=http://immich-server:2283 immich-gateway serve',
  options: { file: { type: 'string' }, keys: { type: 'string' } },
  async run(parsed) {
    const { serve } = await import('../main.js')
    await serve({ file: flag(parsed, 'file'), keys: flag(parsed, 'keys') })
    return -1 // keeps running
  },
})

registerCommand('config check', {
  summary:
    'Check everything serve checks (config, keys, secrets, presets, policies); list every problem',
  usage: '[--file CONFIG] [--keys KEYS_FILE]',
  details: `${CONFIG_FLAGS}
Exit status: 0 when serve would start with no problem, 2 otherwise (every problem is printed).`,
  example: 'immich-gateway config check --file /etc/immich-gateway/gateway.yaml',
  options: { file: { type: 'string' }, keys: { type: 'string' } },
  async run(parsed) {
    const { checkConfiguration, formatCheck } = await import('../config/check.js')
    const result = await checkConfiguration(undefined, {
      file: flag(parsed, 'file'),
      keys: flag(parsed, 'keys'),
    })
    const { stdout, stderr, ok } = formatCheck(result)
    process.stdout.write(stdout)
    process.stderr.write(stderr)
    return ok ? 0 : 2
  },
})

registerCommand('config reference', {
  summary: 'Print the configuration reference (Markdown), generated from the schemas',
  usage: '',
  example: 'immich-gateway config reference > configuration.md',
  async run() {
    const { configReference } = await import('../config/reference.js')
    process.stdout.write(`${configReference()}\n`)
    return 0
  },
})

registerCommand('config example', {
  summary: 'Print an example config file with every option and its default',
  usage: '',
  example: 'immich-gateway config example > gateway.yaml',
  async run() {
    const { configExample } = await import('../config/reference.js')
    process.stdout.write(configExample())
    return 0
  },
})

registerCommand('config docs', {
  summary: "Rewrite the repository's generated docs (example config, configuration reference)",
  usage: '',
  example: 'npm run docs',
  async run() {
    const { writeConfigDocs } = await import('../config/reference.js')
    process.stdout.write(`updated ${writeConfigDocs().join(', ')}\n`)
    return 0
  },
})

registerCommand('routes generate', {
  summary: "Regenerate the route table from Immich's OpenAPI spec",
  usage: '--spec FILE [--out FILE]',
  details: `--spec FILE   Immich's open-api/immich-openapi-specs.json
--out FILE    where to write (default: config/immich-routes.json)`,
  example: 'immich-gateway routes generate --spec ../immich/open-api/immich-openapi-specs.json',
  options: { spec: { type: 'string' }, out: { type: 'string' } },
  run(parsed) {
    const spec = flag(parsed, 'spec')
    if (!spec) throw new UsageError('--spec is required')
    const out = flag(parsed, 'out') ?? DEFAULT_ROUTES_FILE
    const { count } = writeRouteTable(spec, out)
    process.stdout.write(`wrote ${count} routes to ${out}\n`)
    return 0
  },
})
