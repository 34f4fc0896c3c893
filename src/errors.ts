/**
 * The one error a phase throws. `onError` renders it in Immich's error shape
 * `{message, error, statusCode, correlationId}` with an `X-Correlation-ID` header:
 * Immich 3 clients read `message`, 1.x–2.x clients read all four fields.
 */
export class GatewayError extends Error {
  readonly status: number
  /** SCREAMING_SNAKE code for logs and metrics; never sent as the message. */
  readonly code: string
  /** Extra response headers (WWW-Authenticate, Retry-After, RateLimit...). */
  readonly headers: Record<string, string>

  constructor(status: number, code: string, message: string, headers: Record<string, string> = {}) {
    // An expected refusal (401, 403, 429 under a flood...) needs no stack: capturing one is the
    // costliest part of building an Error, and it is never shown or logged.
    const limit = Error.stackTraceLimit
    Error.stackTraceLimit = 0
    super(message)
    Error.stackTraceLimit = limit
    this.name = 'GatewayError'
    this.status = status
    this.code = code
    this.headers = headers
  }
}

/** HTTP reason phrases Immich (Nest) puts in `error`. */
const REASONS: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  408: 'Request Timeout',
  410: 'Gone',
  413: 'Payload Too Large',
  414: 'URI Too Long',
  429: 'Too Many Requests',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
}

export function reasonPhrase(status: number): string {
  return REASONS[status] ?? 'Error'
}

export interface ImmichErrorBody {
  message: string
  error: string
  statusCode: number
  correlationId: string
}

export function immichErrorBody(status: number, message: string, correlationId: string): string {
  const body: ImmichErrorBody = {
    message,
    error: reasonPhrase(status),
    statusCode: status,
    correlationId,
  }
  return JSON.stringify(body)
}
