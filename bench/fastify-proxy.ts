// The reference: a bare @fastify/http-proxy (one process, defaults, no logging) in front of the
// same upstream. Env: UPSTREAM (URL), PORT.
import proxy from '@fastify/http-proxy'
import Fastify from 'fastify'

const app = Fastify({ logger: false })
await app.register(proxy, {
  upstream: process.env.UPSTREAM ?? 'http://127.0.0.1:2283',
  prefix: '/',
  websocket: false,
})
await app.listen({ port: Number(process.env.PORT ?? 8081), host: '127.0.0.1' })
process.stdout.write(`READY http://127.0.0.1:${process.env.PORT ?? 8081}\n`)
const stop = () => void app.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
