import { GatewayError } from '../errors.js'

const UNRESERVED = /^[A-Za-z0-9\-._~]$/

/**
 * The one path every phase judges and the upstream receives. A path that Immich (Express) or a
 * later proxy could read differently from the gateway is refused, so no trick reaches a route
 * without its permission: dot segments (raw or `%2e`), empty segments (`//`), encoded slashes or
 * backslashes, NUL and control bytes, non-ASCII. Percent-encoded unreserved characters are decoded
 * (RFC 3986 §6.2.2.2) so `/api/%61ssets` is judged and forwarded as `/api/assets`.
 * Returns the canonical path, or throws 400.
 */
export function canonicalPath(raw: string): string {
  if (raw.charCodeAt(0) !== 47 /* / */) throw bad()
  let path = raw
  if (raw.indexOf('%') !== -1) {
    path = raw.replace(/%([0-9A-Fa-f]{2})/g, (escape, hex: string) => {
      const ch = String.fromCharCode(parseInt(hex, 16))
      return UNRESERVED.test(ch) ? ch : escape.toUpperCase()
    })
    // Anything still encoded that could change the path's structure is refused.
    if (/%(2F|5C|00|2E)/.test(path) || /%(?![0-9A-F]{2})/.test(path)) throw bad()
  }
  for (let i = 0; i < path.length; i++) {
    const code = path.charCodeAt(i)
    if (code <= 0x20 || code >= 0x7f || code === 92 /* \ */) throw bad()
  }
  if (path.length > 1 && (path.includes('//') || /\/\.\.?(\/|$)/.test(path))) throw bad()
  return path
}

/** Is this an Immich API path? Case-insensitive, as Express routes `/API/...` to the API too. */
export function isApiPath(path: string): boolean {
  return (
    (path.length === 4 || path.charCodeAt(4) === 47) && path.slice(0, 4).toLowerCase() === '/api'
  )
}

function bad(): GatewayError {
  return new GatewayError(400, 'BAD_PATH', 'Invalid request path')
}
