import pino, { type Logger } from 'pino'
import { CREDENTIAL_QUERY, credentialParamName, deepDecode } from '../auth/credentials.js'
import { GATEWAY_KEY_PREFIX } from '../auth/keygen.js'

const REDACTED = '[REDACTED]'

/**
 * Parameter names whose values never reach a log line: every name authentication reads a credential
 * from (CREDENTIAL_QUERY), and the token/password names other software puts in URLs.
 */
const SECRET_NAMES: ReadonlySet<string> = new Set([
  ...CREDENTIAL_QUERY,
  'token',
  'access_token',
  'id_token',
  'refresh_token',
  'password',
])

/**
 * A secret name assigned somewhere inside an already decoded text (`q=apiKey=...`, a path segment
 * `;sessionKey=...`), with any `[...]` or junk (`apiKey\0=`) before its `=`; or a gateway key.
 */
const HOLDS_SECRET = new RegExp(
  `(?:^|[^a-z0-9_-])(?:${[...SECRET_NAMES].map((n) => n.replace(/[-_]/g, '[-_]')).join('|')})` +
    `(?:\\[[^\\]]*\\])*[^a-z0-9_=-]*=|${GATEWAY_KEY_PREFIX}`,
  'i'
)

/**
 * Every secret name contains one of these (`apikey`, `sessionkey` and `x-api-key` hold `key`...): a
 * text without any of them, percent-decoded, holds no secret. Settles nearly every URL with one test.
 */
const SECRET_HINT = new RegExp(`key|slug|token|password|${GATEWAY_KEY_PREFIX}`, 'i')
for (const name of SECRET_NAMES)
  if (!SECRET_HINT.test(name)) throw new Error(`SECRET_HINT misses ${name}`)

/** A percent-escape of a letter, `_` or `%`: only these can hide a SECRET_HINT (`%4Bey`, `%2561`). */
const HIDING_ESCAPE = /%(?:[46][1-9a-f]|[57][0-9a]|5f|25)/i

/**
 * Could `text` hold a secret in any spelling? Escapes of other characters (`%2B`, `%3D`, `%3A`, what
 * base64 checksums and timestamps in Immich URLs carry) cannot spell a name, so such a URL is settled
 * without decoding. Decoding is local: a piece's decoded text is part of the whole's.
 */
function mayHoldSecret(text: string): boolean {
  if (SECRET_HINT.test(text)) return true
  return HIDING_ESCAPE.test(text) && SECRET_HINT.test(deepDecode(text))
}

/** One piece of a URL (between `/ ? & ; #`) as it may be logged. */
function redactPiece(piece: string): string {
  if (!mayHoldSecret(piece)) return piece
  const eq = piece.indexOf('=')
  // The same recognition as authentication and stripping: decoded name, `[]` dropped, any case.
  if (SECRET_NAMES.has(credentialParamName(piece)))
    return eq === -1 || HOLDS_SECRET.test(deepDecode(piece.slice(0, eq)))
      ? REDACTED
      : `${piece.slice(0, eq + 1)}${REDACTED}`
  // Beyond what authentication reads: an assignment hidden in a value or a doubly encoded name
  // (`q=apiKey%3D...`, `api%254Bey=...`), a gateway key in a path segment.
  if (!HOLDS_SECRET.test(deepDecode(piece))) return piece
  return eq === -1 || HOLDS_SECRET.test(deepDecode(piece.slice(0, eq)))
    ? REDACTED
    : `${piece.slice(0, eq + 1)}${REDACTED}`
}

/** The query of `url` from `start`, each `&`/`;`-separated piece through redactPiece. */
function redactQuery(url: string, start: number): string {
  let out = ''
  let from = start
  while (from <= url.length) {
    let end = from
    while (end < url.length && url.charCodeAt(end) !== 0x26 && url.charCodeAt(end) !== 0x3b) end++
    out += redactPiece(url.slice(from, end))
    if (end < url.length) out += url[end]
    from = end + 1
  }
  return out
}

/**
 * The URL (path and query) as it may be logged: every query piece authentication would read as a
 * credential (credentialParamName: `api%4Bey=`, `apiKey[]=`, `;apiKey=`...), and every piece that
 * holds a credential assignment or a gateway key in any percent-encoding, has its value (or itself)
 * replaced by `[REDACTED]`. Path segments are judged the same way; after a path segment that holds
 * one, the rest of the path is redacted too (a credential may contain `/`).
 */
export function redactUrl(url: string): string {
  if (!mayHoldSecret(url)) return url
  const q = url.indexOf('?')
  const path = q === -1 ? url : url.slice(0, q)
  const query = q === -1 ? '' : redactQuery(url, q + 1)
  if (!mayHoldSecret(path)) return q === -1 ? url : `${path}?${query}`
  let out = ''
  for (const part of path.split(/([/;])/)) {
    const redacted = part === '/' || part === ';' ? part : redactPiece(part)
    out += redacted
    if (redacted !== part) break
  }
  return q === -1 ? out : `${out}?${query}`
}

/** Free text (an error message or stack) as it may be logged: every URL-like run in it redacted. */
export function redactText(text: string): string {
  if (!mayHoldSecret(text)) return text
  return text.replace(/[^\s'"`<>()]+/g, redactUrl)
}

/**
 * The root JSON logger. Access lines never carry headers; pino's redaction covers the credential
 * headers of a `headers` object in case one is ever logged (fixed paths only: wildcard paths make
 * pino walk every line, a measurable cost on the hot path).
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'immich-gateway' },
      timestamp: pino.stdTimeFunctions.isoTime,
      serializers: { err: serializeError },
      redact: {
        paths: [
          'headers.authorization',
          'headers["x-api-key"]',
          'headers.cookie',
          'headers["set-cookie"]',
          'headers["x-immich-user-token"]',
          'headers["x-immich-session-token"]',
          'headers["x-immich-share-key"]',
          'headers["x-immich-share-slug"]',
        ],
        censor: '[REDACTED]',
      },
    },
    destination
  )
}

/** pino's error serializer, with any credential in the message or stack (a URL in it) redacted. */
export function serializeError(err: unknown): unknown {
  const out = pino.stdSerializers.err(err as Error) as unknown as Record<string, unknown>
  if (typeof out !== 'object' || out === null) return out
  for (const field of ['message', 'stack'])
    if (typeof out[field] === 'string') out[field] = redactText(out[field])
  return out
}
