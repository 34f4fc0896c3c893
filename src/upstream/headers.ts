import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http'

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) belong to one connection and are never forwarded.
 * `expect` is handled by the gateway itself (undici refuses to send it; Node answers 100-continue
 * when the forward phase starts reading the body). `host` is set explicitly.
 */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'expect',
  'http2-settings',
])

/**
 * Method-override headers: some frameworks let them turn the request's method into another one. Immich
 * honours none today; dropped anyway, so a release that did could not turn a GET the scopes allowed
 * into a DELETE they would have refused.
 */
const METHOD_OVERRIDE = new Set(['x-http-method-override', 'x-http-method', 'x-method-override'])

/** Header names a `Connection` header lists are hop-by-hop for this message too. */
function connectionListed(value: string | string[] | undefined): Set<string> | undefined {
  if (!value) return undefined
  // What nearly every message says (Immich answers `Connection: keep-alive`): nothing listed.
  if (value === 'keep-alive' || value === 'close' || value === 'Keep-Alive' || value === 'Close')
    return undefined
  const names = (Array.isArray(value) ? value.join(',') : value).split(',')
  const listed = new Set<string>()
  for (const name of names) {
    const n = name.trim().toLowerCase()
    if (n && n !== 'close' && n !== 'keep-alive') listed.add(n)
  }
  return listed.size ? listed : undefined
}

function isHopByHop(name: string, listed: Set<string> | undefined): boolean {
  return (
    HOP_BY_HOP.has(name) ||
    name.startsWith('proxy-') ||
    METHOD_OVERRIDE.has(name) ||
    (listed !== undefined && listed.has(name))
  )
}

/** Copy of the headers with hop-by-hop and method-override ones removed (request or response direction). */
/** The first value of a header as Node hands it over (a list for repeated ones, a number for some). */
export function firstValue(value: string | string[] | number | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value === undefined ? undefined : String(value)
}

export function endToEndHeaders(
  headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>
): Record<string, string | string[]> {
  const listed = connectionListed(headers.connection)
  const out: Record<string, string | string[]> = {}
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || isHopByHop(name, listed)) continue
    // HTTP/2 pseudo-headers (:method, :path, :scheme, :authority) are not headers of the request.
    if (name.charCodeAt(0) === 58) continue
    out[name] = value
  }
  // An HTTP/2 request names its host in :authority (RFC 9113 §8.3.1); Immich reads Host.
  const authority = headers[':authority']
  if (out.host === undefined && typeof authority === 'string') out.host = authority
  return out
}

/** Response headers from undici, cleaned for the client. `set-cookie` stays an array: 3 cookies stay 3. */
export function responseHeaders(
  headers: Record<string, string | string[] | undefined>
): OutgoingHttpHeaders {
  return endToEndHeaders(headers)
}

export interface ForwardedFor {
  clientIp: string
  /** The direct peer is a trusted proxy: its X-Forwarded-Proto/Host are believed. */
  peerTrusted: boolean
  peerAddress: string
  encrypted: boolean
}

/**
 * X-Forwarded-For is appended with the direct peer's address (as nginx's $proxy_add_x_forwarded_for);
 * Immich trusts X-Forwarded-* only from loopback/private proxies and walks the list from the right,
 * so the appended peer address is what it sees as the client. Proto/Host come from a trusted proxy
 * or from this connection.
 */
export function setForwardedHeaders(
  out: Record<string, string | string[]>,
  incoming: IncomingHttpHeaders,
  f: ForwardedFor
): void {
  const prior = incoming['x-forwarded-for']
  out['x-forwarded-for'] = prior
    ? `${Array.isArray(prior) ? prior.join(', ') : prior}, ${f.peerAddress}`
    : f.peerAddress
  const proto =
    f.peerTrusted && typeof incoming['x-forwarded-proto'] === 'string'
      ? incoming['x-forwarded-proto']
      : f.encrypted
        ? 'https'
        : 'http'
  out['x-forwarded-proto'] = proto
  const host =
    f.peerTrusted && typeof incoming['x-forwarded-host'] === 'string'
      ? incoming['x-forwarded-host']
      : (incoming.host ?? (incoming[':authority'] as string | undefined))
  if (host) out['x-forwarded-host'] = host
  out['x-real-ip'] = f.clientIp
}
