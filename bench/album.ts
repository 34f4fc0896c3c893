// The album the album-bound benchmark key is bound to: the asset every thumbnail scenario asks for,
// among a thousand others (a membership of realistic size). The fake upstream serves it
// (test/fake-immich/library.ts); the bound variant's key names it.
export const BENCH_ASSET_ID = '8f2c4e1a-3b5d-4c7e-9f10-2a3b4c5d6e7f'
export const BENCH_ALBUM_ID = '3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f'
export const BENCH_ALBUM_SIZE = 1000
