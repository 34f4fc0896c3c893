import pino, { type Logger } from 'pino'

/** Query parameters that carry credentials: their values never reach a log line. */
const SECRET_QUERY =
  /([?&](?:apikey|x-api-key|key|slug|sessionkey|token|access_token|id_token|password)=)[^&#]*/gi

/** The URL as it may be logged: credential query values replaced by `[REDACTED]`. */
export function redactUrl(url: string): string {
  return url.indexOf('=') === -1 ? url : url.replace(SECRET_QUERY, '$1[REDACTED]')
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
