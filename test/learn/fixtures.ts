// Call sequences of real Immich clients, written from their public source (and, where noted, the
// gateway access log of a real run in /work/shared/immich/client-calls.md). Ids are made up; the
// method and path shape, which decide the route template and so the permission, are the clients'.

export interface Call {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'PATCH'
  path: string
  /** JSON body, when the client sends one. */
  json?: unknown
  /** An asset upload (multipart form with one small file). */
  upload?: true
}

export interface ClientFixture {
  name: string
  /** Where the sequence comes from. */
  source: string
  calls: Call[]
}

const ASSET = '6f1c2b6e-3c1d-4a8e-9b2f-0c1d2e3f4a5b'
const ASSET2 = '0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d'
const ALBUM = '2b3c4d5e-6f70-4812-9a3b-4c5d6e7f8091'
const PERSON = '9e8d7c6b-5a49-4382-a716-5b4c3d2e1f00'
const TAG = '4d3c2b1a-0f9e-4d8c-b7a6-958473625140'

export const FIXTURES: ClientFixture[] = [
  {
    name: 'immich-cli',
    source:
      'immich-app/immich cli/src/commands/asset.ts `immich upload --album` (@immich/cli 3.2.2); first five calls as in client-calls.md',
    calls: [
      { method: 'GET', path: '/api/users/me' },
      { method: 'GET', path: '/api/api-keys/me' },
      { method: 'GET', path: '/api/server/media-types' },
      {
        method: 'POST',
        path: '/api/assets/bulk-upload-check',
        json: {
          assets: [{ id: 'IMG_0001.jpg', checksum: 'da39a3ee5e6b4b0d3255bfef95601890afd80709' }],
        },
      },
      { method: 'POST', path: '/api/assets', upload: true },
      { method: 'GET', path: '/api/albums' },
      { method: 'POST', path: '/api/albums', json: { albumName: 'Holidays' } },
      { method: 'PUT', path: `/api/albums/${ALBUM}/assets`, json: { ids: [ASSET] } },
    ],
  },
  {
    name: 'immich-go',
    source:
      'simulot/immich-go immich/*.go: `immich-go upload from-folder --into-album --tag` (ping, ValidateConnection, GetAboutInfo, GetSupportedMediaTypes, GetAssetStatistics, GetAllAssets, GetAllAlbums, GetAllTags, AssetUpload, CreateAlbum, AddAssetToAlbum, UpsertTags, BulkTagAssets, stacks)',
    calls: [
      { method: 'GET', path: '/api/server/ping' },
      { method: 'GET', path: '/api/users/me' },
      { method: 'GET', path: '/api/server/about' },
      { method: 'GET', path: '/api/server/media-types' },
      { method: 'GET', path: '/api/assets/statistics' },
      {
        method: 'POST',
        path: '/api/search/metadata',
        json: { page: 1, size: 1000, withExif: true },
      },
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: '/api/tags' },
      { method: 'POST', path: '/api/assets', upload: true },
      { method: 'POST', path: '/api/albums', json: { albumName: '2024 - Trip' } },
      { method: 'PUT', path: `/api/albums/${ALBUM}/assets`, json: { ids: [ASSET] } },
      { method: 'PUT', path: '/api/tags', json: { tags: ['immich-go/2024'] } },
      { method: 'PUT', path: '/api/tags/assets', json: { tagIds: [TAG], assetIds: [ASSET] } },
      { method: 'POST', path: '/api/stacks', json: { assetIds: [ASSET, ASSET2] } },
    ],
  },
  {
    name: 'photo-frame',
    source:
      'immichFrame/ImmichFrame ImmichFrame.Core (album, memories, people and random pools; preview images), as recorded in client-calls.md',
    calls: [
      { method: 'GET', path: '/api/server/version' },
      { method: 'POST', path: '/api/search/random', json: { size: 50 } },
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: `/api/albums/${ALBUM}` },
      { method: 'POST', path: '/api/search/metadata', json: { albumIds: [ALBUM] } },
      { method: 'GET', path: `/api/assets/${ASSET}` },
      { method: 'GET', path: `/api/assets/${ASSET}/thumbnail?size=preview` },
      { method: 'GET', path: '/api/memories' },
      { method: 'GET', path: '/api/people' },
    ],
  },
  {
    name: 'home-assistant',
    source:
      'home-assistant/core homeassistant/components/immich (aioimmich): setup (users/me), coordinator (server about, storage, version-check), media source (albums, tags, people, favorites; thumbnails, fullsize, video)',
    calls: [
      { method: 'GET', path: '/api/users/me' },
      { method: 'GET', path: '/api/server/about' },
      { method: 'GET', path: '/api/server/storage' },
      { method: 'GET', path: '/api/server/version-check' },
      { method: 'GET', path: '/api/albums' },
      { method: 'GET', path: `/api/albums/${ALBUM}` },
      { method: 'POST', path: '/api/search/metadata', json: { albumIds: [ALBUM], page: 1 } },
      { method: 'GET', path: '/api/tags' },
      { method: 'GET', path: `/api/tags/${TAG}` },
      { method: 'GET', path: '/api/people' },
      { method: 'GET', path: `/api/people/${PERSON}` },
      { method: 'GET', path: `/api/people/${PERSON}/thumbnail` },
      { method: 'GET', path: `/api/assets/${ASSET}/thumbnail` },
      { method: 'GET', path: `/api/assets/${ASSET}/thumbnail?size=fullsize` },
      { method: 'GET', path: `/api/assets/${ASSET2}/video/playback` },
    ],
  },
]

/** What learning each fixture must yield (checked by hand against config/immich-routes.json). */
export const EXPECTED: Record<string, string[]> = {
  'immich-cli': ['album.create', 'album.read', 'albumAsset.create', 'asset.upload', 'user.read'],
  'immich-go': [
    'album.create',
    'album.read',
    'albumAsset.create',
    'asset.read',
    'asset.statistics',
    'asset.upload',
    'server.about',
    'stack.create',
    'tag.asset',
    'tag.create',
    'tag.read',
    'user.read',
  ],
  'photo-frame': ['album.read', 'asset.read', 'asset.view', 'memory.read', 'person.read'],
  'home-assistant': [
    'album.read',
    'asset.read',
    'asset.view',
    'person.read',
    'server.about',
    'server.storage',
    'server.versionCheck',
    'tag.read',
    'user.read',
  ],
}
