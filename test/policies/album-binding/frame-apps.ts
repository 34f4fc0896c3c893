/**
 * What photo-frame apps call in album mode, written down as test data from reading their public
 * source (no code of theirs is copied; bodies carry the fields they send). Placeholders: `{album}`
 * the album the frame is set to show, `{asset}` each asset id a listing returned, `{bucket}` each
 * `timeBucket` a bucket listing returned. A step with `{asset}` or `{bucket}` runs once per value.
 */
export interface FrameStep {
  method: 'GET' | 'POST'
  path: string
  body?: Record<string, unknown>
}

export interface FrameApp {
  name: string
  /** Where the calls were read (repository, file). */
  source: string
  steps: FrameStep[]
  /** The app shows assets on Immich 3 (MMM-ImmichSlideShow's album mode reads inline album assets, gone in v3). */
  showsAssets: boolean
}

export const FRAME_APPS: FrameApp[] = [
  {
    name: 'ImmichFrame (album pool, search-based)',
    source:
      'immichFrame/ImmichFrame ImmichFrame.Core/Logic/Pool/Remote/SingleAlbumRemotePool.cs, SearchBasedRemotePool.cs',
    steps: [
      { method: 'GET', path: '/api/server/version' },
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: '/api/albums/{album}' },
      { method: 'POST', path: '/api/search/statistics', body: { albumIds: ['{album}'] } },
      { method: 'POST', path: '/api/search/metadata', body: { size: 25, albumIds: ['{album}'] } },
      { method: 'GET', path: '/api/assets/{asset}' },
      { method: 'GET', path: '/api/assets/{asset}/thumbnail?size=preview' },
    ],
    showsAssets: true,
  },
  {
    name: 'immich-kiosk (album source)',
    source: 'damongolding/immich-kiosk internal/immich/immich_album.go, immich_faces.go',
    steps: [
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: '/api/albums?shared=true' },
      { method: 'GET', path: '/api/albums/{album}' },
      {
        method: 'POST',
        path: '/api/search/metadata',
        body: { albumIds: ['{album}'], page: 1, size: 1000, withExif: true, withPeople: true },
      },
      { method: 'GET', path: '/api/assets/{asset}' },
      { method: 'GET', path: '/api/albums?assetId={asset}' },
      { method: 'GET', path: '/api/faces?id={asset}' },
      { method: 'GET', path: '/api/assets/{asset}/thumbnail?size=preview' },
    ],
    showsAssets: true,
  },
  {
    name: 'MMM-ImmichSlideShow (album mode, API level v1_133)',
    source: 'pelaxa/MMM-ImmichSlideShow immichApi.js',
    steps: [
      { method: 'GET', path: '/api/server/version' },
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: '/api/albums/{album}' },
      { method: 'GET', path: '/api/assets/{asset}' },
      { method: 'GET', path: '/api/assets/{asset}/thumbnail?size=preview' },
    ],
    showsAssets: false,
  },
  {
    name: 'espframe (album source: statistics, metadata page, random, timeline)',
    source: 'jtenniswood/espframe components/espframe/immich_helpers.h',
    steps: [
      {
        method: 'POST',
        path: '/api/search/statistics',
        body: { type: 'IMAGE', visibility: 'timeline', albumIds: ['{album}'] },
      },
      {
        method: 'POST',
        path: '/api/search/metadata',
        body: {
          page: 1,
          size: 5,
          type: 'IMAGE',
          visibility: 'timeline',
          withExif: true,
          albumIds: ['{album}'],
        },
      },
      {
        method: 'POST',
        path: '/api/search/random',
        body: {
          size: 5,
          type: 'IMAGE',
          visibility: 'timeline',
          withExif: true,
          albumIds: ['{album}'],
        },
      },
      { method: 'GET', path: '/api/timeline/buckets?albumId={album}&visibility=timeline' },
      {
        method: 'GET',
        path: '/api/timeline/bucket?albumId={album}&visibility=timeline&timeBucket={bucket}',
      },
      { method: 'GET', path: '/api/assets/{asset}/thumbnail?size=preview' },
    ],
    showsAssets: true,
  },
]
