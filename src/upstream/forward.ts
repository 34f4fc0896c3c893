import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http'
import type { Http2ServerRequest } from 'node:http2'
import { PassThrough, type Readable } from 'node:stream'
import type { Context } from 'hono'
import { Agent, type Dispatcher } from 'undici'
import { RESPONSE_ALREADY_SENT } from '@hono/node-server/utils/response'
import type { GatewayConfig } from '../config/schema.js'
import type { CapturedAnswer, Env } from '../env.js'
import { GatewayError } from '../errors.js'
import { writeHead } from '../server/answer.js'
import { endToEndHeaders, responseHeaders, setForwardedHeaders } from './headers.js'
import { PASS, REFUSED, type Admission, type UpstreamHealth } from './health.js'
import { isBrowserNavigation, writeMaintenancePage } from './maintenance.js'

export type UpstreamErrorKind = 'refused' | 'reset' | 'timeout' | 'dns' | 'other'

/** Called once per upstream exchange: headers time and outcome, for metrics. */
export interface UpstreamObserver {
  onHeaders?(c: Context<Env>, seconds: number, status: number): void
  onError?(kind: UpstreamErrorKind): void
}

/**
 * What happens with the upstream answer. `start` gets status and cleaned headers and returns
 * whether it wants the body; `data` returns false to apply backpressure (then `resume` is called
 * when it may go on); `end`/`fail` close it.
 */
export interface ResponseSink {
  start(status: number, headers: OutgoingHttpHeaders): void
  data(chunk: Buffer, resume: () => void): boolean
  end(): void
  /** The exchange failed after `start`: the client's response can only be cut. */
  fail(err: Error): void
}

export interface Forwarder {
  /** Streams the upstream answer straight into the client's response (the hot path). */
  pipe(
    c: Context<Env>,
    tap?: (status: number, headers: OutgoingHttpHeaders) => ResponseSink | undefined
  ): Promise<Response>
  /** Sends the request and buffers the answer (small JSON only: legacy response shapes). */
  capture(c: Context<Env>, maxBytes: number): Promise<CapturedAnswer>
  /** Builds the upstream header set for this request (also used by the websocket upgrade). */
  upstreamHeaders(c: Context<Env>): Record<string, string | string[]>
  readonly agent: Agent
  readonly origin: string
  close(): Promise<void>
}

/** Maps undici/socket errors to what the client is told, and to a bounded metric label. */
export function classifyUpstreamError(err: unknown): {
  kind: UpstreamErrorKind
  status: number
  message: string
} {
  const e = err as { code?: string; name?: string; cause?: { code?: string } }
  const code = e.code ?? e.cause?.code ?? ''
  if (
    code === 'UND_ERR_HEADERS_TIMEOUT' ||
    code === 'UND_ERR_CONNECT_TIMEOUT' ||
    code === 'ETIMEDOUT'
  ) {
    return { kind: 'timeout', status: 504, message: 'Immich did not answer in time' }
  }
  if (code === 'ECONNREFUSED')
    return { kind: 'refused', status: 502, message: 'Immich is not reachable' }
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN')
    return { kind: 'dns', status: 502, message: 'Immich is not reachable' }
  if (code === 'ECONNRESET' || code === 'UND_ERR_SOCKET' || code === 'EPIPE') {
    return { kind: 'reset', status: 502, message: 'Immich closed the connection' }
  }
  return { kind: 'other', status: 502, message: 'Bad answer from Immich' }
}

class ClientGone extends Error {
  override name = 'ClientGone'
}

function expectsContinue(req: IncomingMessage): boolean {
  const expect = req.headers.expect
  return typeof expect === 'string' && expect.toLowerCase() === '100-continue'
}

/**
 * An HTTP/2 request body as undici reads it. Node's compatibility request ends normally even when the
 * client resets its stream mid-upload; forwarded as is, Immich would get a truncated upload as a
 * complete one. The body ends only if the client's stream did (END_STREAM), else it fails.
 */
function h2Body(req: Http2ServerRequest): Readable {
  const body = new PassThrough({ highWaterMark: 64 * 1024 })
  req.pipe(body, { end: false })
  req.once('end', () => {
    if (req.stream.readableEnded) body.end()
    else body.destroy(new ClientGone('client reset the stream mid-upload'))
  })
  return body
}

/** The client is gone: its HTTP/1.1 socket closed, or its HTTP/2 stream reset before our answer ended. */
function clientGone(res: ServerResponse): boolean {
  if (res.destroyed) return true
  const stream = (res as unknown as { stream?: { destroyed: boolean } }).stream
  return stream !== undefined && stream.destroyed && !res.writableEnded
}

/**
 * Has the request a body to stream? HTTP/1.1: Content-Length or Transfer-Encoding says so (RFC 9112
 * §6.3). HTTP/2: any request whose HEADERS frame did not end the stream (a length is optional there).
 */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length']
  if (req.httpVersionMajor === 2)
    return length !== '0' && !(req as unknown as Http2ServerRequest).stream.endAfterHeaders
  return (length !== undefined && length !== '0') || req.headers['transfer-encoding'] !== undefined
}

/**
 * The forwarder. With `health`, every exchange asks its circuit breaker first: while Immich is known
 * down a request is refused with a 503 before anything is sent (no connect timeout to wait out), and
 * each exchange's outcome is reported back to it.
 */
export function createForwarder(
  config: GatewayConfig,
  observer: UpstreamObserver = {},
  health?: UpstreamHealth
): Forwarder {
  const { upstream } = config
  const origin = new URL(upstream.url).origin
  const agent = new Agent({
    connections: upstream.connections,
    keepAliveTimeout: upstream.keepAliveTimeoutSeconds * 1000,
    headersTimeout: upstream.headersTimeoutSeconds * 1000,
    // No overall body timeout: an hour-long upload at modem speed must complete.
    bodyTimeout: 0,
    connect: { timeout: upstream.connectTimeoutSeconds * 1000 },
  })

  function upstreamHeaders(c: Context<Env>): Record<string, string | string[]> {
    const req = c.env.incoming
    const out = endToEndHeaders(req.headers)
    setForwardedHeaders(out, req.headers, {
      clientIp: c.get('clientIp'),
      peerAddress: c.get('peer').address,
      peerTrusted: c.get('peer').trusted,
      encrypted: (req.socket as { encrypted?: boolean }).encrypted === true,
    })
    // Immich 3 adopts an incoming X-Correlation-ID as its own: one id follows the request through both logs.
    out['x-correlation-id'] = c.get('requestId')
    const edits = c.get('upstream').headerEdits
    for (const name in edits) {
      const value = edits[name]
      if (value === null || value === undefined) delete out[name]
      else out[name] = value
    }
    return out
  }

  /** One upstream exchange. Resolves when the sink has ended; rejects with a GatewayError before `start`. */
  function exchange(c: Context<Env>, sink: ResponseSink): Promise<void> {
    // Asked before anything else: a refused upload must not get its "100 Continue".
    let admission: Admission | undefined = health === undefined ? PASS : health.admit()
    if (admission === REFUSED) return Promise.reject(health!.refusal())
    const req = c.env.incoming
    const res = c.env.outgoing
    const up = c.get('upstream')
    const headers = upstreamHeaders(c)
    let body: Dispatcher.DispatchOptions['body'] = null
    if (up.body) {
      body = up.body
      headers['content-length'] = String(up.body.length)
      delete headers['transfer-encoding']
    } else if (hasBody(req)) {
      // The client waits for "100 Continue" before sending a large body: send it only now that every
      // policy has let the request through, so a refused upload never starts.
      if (res && expectsContinue(req)) res.writeContinue()
      if (up.bodyTransform) {
        body = up.bodyTransform(req)
        delete headers['content-length']
      } else {
        body = req.httpVersionMajor === 2 ? h2Body(req as unknown as Http2ServerRequest) : req
      }
    }
    const started = process.hrtime.bigint()

    return new Promise<void>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined
      let started_ = false
      let settled = false
      /** The breaker hears of each exchange once: answered, failed to connect, or neither. */
      const report = (kind?: UpstreamErrorKind | 'answered') => {
        if (health === undefined || admission === undefined) return
        if (kind === 'answered') health.succeeded(admission)
        else if (kind === undefined) health.released(admission)
        else health.failed(admission, kind)
        admission = undefined
      }
      const settle = (err?: Error) => {
        if (settled) return
        settled = true
        report()
        res?.off('close', onClientClose)
        if (err) reject(err)
        else resolve()
      }
      // The client went away (mid-upload or mid-download): abort upstream so no socket is left behind.
      // (An HTTP/2 response reports itself finished when its stream is reset: it ended only if we
      // ended it.)
      const onClientClose = () => {
        if (res && (!res.writableEnded || !res.writableFinished))
          controller?.abort(new ClientGone('client closed the connection'))
      }
      res?.on('close', onClientClose)

      const handler: Dispatcher.DispatchHandler = {
        onRequestStart(ctrl) {
          controller = ctrl
          if (res && clientGone(res)) ctrl.abort(new ClientGone('client closed the connection'))
        },
        onResponseStart(ctrl, status, rawHeaders) {
          if (status < 200) return
          report('answered')
          observer.onHeaders?.(c, Number(process.hrtime.bigint() - started) / 1e9, status)
          try {
            sink.start(status, responseHeaders(rawHeaders as Record<string, string | string[]>))
          } catch {
            // A header value Node refuses to send (bad bytes from upstream): a bad answer, not a crash.
            ctrl.abort(
              Object.assign(new Error('invalid upstream response header'), {
                code: 'UPSTREAM_BAD_HEADER',
              })
            )
            return
          }
          started_ = true
        },
        onResponseData(ctrl, chunk) {
          if (!sink.data(chunk, () => ctrl.resume())) ctrl.pause()
        },
        onResponseEnd() {
          sink.end()
          settle()
        },
        onResponseError(_ctrl, err) {
          if (err instanceof ClientGone || (res && clientGone(res))) {
            if (started_) sink.fail(err)
            settle(err instanceof ClientGone ? err : new ClientGone(err.message))
            return
          }
          const { kind, status, message } = classifyUpstreamError(err)
          report(kind)
          observer.onError?.(kind)
          if (started_) {
            sink.fail(err)
            settle(err)
          } else {
            settle(new GatewayError(status, `UPSTREAM_${kind.toUpperCase()}`, message))
          }
        },
      }
      try {
        agent.dispatch(
          { origin, path: up.url, method: up.method as Dispatcher.HttpMethod, headers, body },
          handler
        )
      } catch {
        // undici validates headers synchronously: a header it refuses is the client's fault.
        settle(new GatewayError(400, 'BAD_HEADER', 'Invalid request header'))
      }
    })
  }

  async function pipe(
    c: Context<Env>,
    tap?: (status: number, headers: OutgoingHttpHeaders) => ResponseSink | undefined
  ): Promise<Response> {
    const res = c.env.outgoing!
    let tapSink: ResponseSink | undefined
    let bytesOut = 0
    const sink: ResponseSink = {
      start(status, headers) {
        tapSink = tap?.(status, headers)
        writeHead(c, status, headers)
      },
      data(chunk, resume) {
        bytesOut += chunk.length
        tapSink?.data(chunk, resume)
        if (res.write(chunk)) return true
        res.once('drain', resume)
        return false
      },
      end() {
        tapSink?.end()
        res.end()
      },
      fail(err) {
        tapSink?.fail(err)
        res.destroy()
      },
    }
    try {
      await exchange(c, sink)
    } catch (err) {
      c.set('bytesOut', bytesOut)
      if (err instanceof GatewayError) {
        // Immich unreachable and a person at a browser: a page that retries by itself, not JSON.
        if (err.status >= 502 && err.status <= 504 && !res.headersSent && isBrowserNavigation(c))
          return writeMaintenancePage(c, health?.retryAfter ?? '5')
        throw err
      }
      c.get('notes').aborted = err instanceof ClientGone ? 'client' : 'upstream'
      return RESPONSE_ALREADY_SENT
    }
    c.set('bytesOut', bytesOut)
    return RESPONSE_ALREADY_SENT
  }

  async function capture(c: Context<Env>, maxBytes: number): Promise<CapturedAnswer> {
    const chunks: Buffer[] = []
    let size = 0
    let status = 502
    let headers: OutgoingHttpHeaders = {}
    await exchange(c, {
      start(s, h) {
        status = s
        headers = h
      },
      data(chunk) {
        // Past the bound the rest is read and dropped (no throw inside undici's callbacks).
        size += chunk.length
        if (size <= maxBytes) chunks.push(chunk)
        return true
      },
      end() {},
      fail() {},
    })
    if (size > maxBytes)
      throw new GatewayError(502, 'UPSTREAM_TOO_LARGE', 'Answer from Immich too large to translate')
    const answer = { status, headers, body: Buffer.concat(chunks) }
    const edit = c.get('answerEdit')
    return edit === undefined ? answer : edit(answer)
  }

  return { pipe, capture, upstreamHeaders, agent, origin, close: () => agent.close() }
}

export type { ServerResponse }
