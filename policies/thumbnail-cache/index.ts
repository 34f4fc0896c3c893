import { definePolicy } from '../types.js'
import { ThumbnailCache } from './cache.js'
import { thumbnailCacheOptions } from './schema.js'

/** The thumbnail cache policy (phase `cache`); the cache itself is policies/thumbnail-cache/cache.ts. */
export const thumbnailCache = definePolicy({
  name: 'thumbnail-cache',
  phase: 'cache',
  options: thumbnailCacheOptions,
  async create(options, { deps, onClose }) {
    const cache = await ThumbnailCache.open(options, deps, onClose)
    return cache.middleware
  },
})
