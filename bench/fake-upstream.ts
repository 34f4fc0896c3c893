// The fake Immich as its own process, so it never shares an event loop with what is measured.
// Prints `READY <url>` on stdout once listening. Env: PORT (default: a free one).
import { startFakeImmich } from '../test/fake-immich/server.js'

const immich = await startFakeImmich({
  port: Number(process.env.PORT ?? 0),
  // A benchmark sends millions of requests: keep the recorder from growing without bound.
  maxRecordedRequests: 16,
})
process.stdout.write(`READY ${immich.url}\n`)
const stop = () => void immich.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
