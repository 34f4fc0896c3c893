// The fake Immich as its own process, so it never shares an event loop with what is measured.
// Prints `READY <url>` on stdout once listening. Env: PORT (default: a free one).
import { startFakeImmich } from '../test/fake-immich/server.js'
import { installLibrary } from '../test/fake-immich/library.js'
import { BENCH_ALBUM_ID, BENCH_ALBUM_SIZE, BENCH_ASSET_ID } from './album.js'

const immich = await startFakeImmich({
  port: Number(process.env.PORT ?? 0),
  // A benchmark sends millions of requests: keep the recorder from growing without bound.
  maxRecordedRequests: 16,
})
// The album of the album-bound key: the benchmarked asset and others, owned by the injected key's user.
const library = installLibrary(immich)
const ids = [library.addAsset('bench', 'u-admin', { id: BENCH_ASSET_ID }).id]
for (let i = 1; i < BENCH_ALBUM_SIZE; i++) ids.push(library.addAsset(`bench-${i}`, 'u-admin').id)
library.addAlbum('bench', 'u-admin', ids, { id: BENCH_ALBUM_ID })
process.stdout.write(`READY ${immich.url}\n`)
const stop = () => void immich.close().then(() => process.exit(0))
process.on('SIGTERM', stop)
process.on('SIGINT', stop)
