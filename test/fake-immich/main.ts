// Run the fake Immich standalone (benchmarks, manual use):
//   npx tsx test/fake-immich/main.ts            # http://127.0.0.1:2283
//   PORT=3001 HOST=0.0.0.0 ORIGINAL_SIZE=10485760 npx tsx test/fake-immich/main.ts
import { startFakeImmich } from './server.js'

const port = Number(process.env.PORT ?? 2283)
const host = process.env.HOST ?? '127.0.0.1'
const originalSize = process.env.ORIGINAL_SIZE ? Number(process.env.ORIGINAL_SIZE) : undefined
const thumbnailSize = process.env.THUMBNAIL_SIZE ? Number(process.env.THUMBNAIL_SIZE) : undefined

const fake = await startFakeImmich({
  port,
  host,
  // Keep memory flat under benchmark load.
  maxRecordedRequests: Number(process.env.MAX_RECORDED_REQUESTS ?? 1000),
  maxCapturedBody: 64 * 1024,
  ...(originalSize !== undefined ? { originalSize } : {}),
  ...(thumbnailSize !== undefined ? { thumbnailSize } : {}),
})
console.log(
  `fake immich listening on ${fake.url} (api keys: fake-admin-key, fake-user-key; session: fake-session-token)`
)

let stopping = false
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) process.exit(1)
    stopping = true
    void fake.close().then(() => process.exit(0))
  })
}
