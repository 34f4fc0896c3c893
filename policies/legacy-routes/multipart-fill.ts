import { Transform, type TransformCallback } from 'node:stream'

export interface MultipartFillOptions {
  boundary: string
  /** Text fields to add, at the end of the form, when the client did not send them. */
  defaults: Readonly<Record<string, string>>
  /** Text fields whose (small) values to capture as they pass, e.g. an old upload's `description`. */
  capture?: readonly string[]
  /** Receives the captured values; filled while the body streams, complete when it has ended. */
  captured?: Record<string, string>
}

/**
 * Bytes kept back from each chunk: enough to see a delimiter, its part headers and a captured value
 * whole even when they straddle chunks, and to hold the closing delimiter until the end.
 */
const KEEP = 16 * 1024
const NAME = /name="([^"]*)"/i

/**
 * Streams a multipart/form-data body through unchanged, noting the names of its parts, and adds
 * the missing `defaults` as text fields just before the closing delimiter. An old client that
 * never sent `fileCreatedAt` gets it filled in, one that did keeps its own value: multer would turn
 * a repeated field into an array, which Immich refuses. Memory stays flat (at most KEEP bytes held).
 */
export class MultipartFieldFiller extends Transform {
  readonly seen = new Set<string>()
  /** Bytes received but not yet passed on (at most about 2 × KEEP plus one chunk). */
  private pending: Buffer[] = []
  private pendingBytes = 0
  private readonly delimiter: Buffer
  private readonly close: Buffer
  private readonly capture: ReadonlySet<string>

  constructor(private readonly options: MultipartFillOptions) {
    super()
    this.delimiter = Buffer.from(`--${options.boundary}\r\n`)
    this.close = Buffer.from(`\r\n--${options.boundary}--`)
    this.capture = new Set(options.capture ?? [])
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    this.pending.push(chunk)
    this.pendingBytes += chunk.length
    // Tiny chunks are gathered first, so the kept-back bytes are scanned and copied a bounded
    // number of times per KEEP bytes passed on, however the client slices its body.
    if (this.pendingBytes < 2 * KEEP) return done()
    const buf = Buffer.concat(this.pending, this.pendingBytes)
    this.scan(buf)
    this.push(buf.subarray(0, buf.length - KEEP))
    const tail = Buffer.from(buf.subarray(buf.length - KEEP))
    this.pending = [tail]
    this.pendingBytes = tail.length
    done()
  }

  override _flush(done: TransformCallback): void {
    const rest = Buffer.concat(this.pending, this.pendingBytes)
    this.scan(rest)
    const at = rest.lastIndexOf(this.close)
    const missing = Object.entries(this.options.defaults).filter(([name]) => !this.seen.has(name))
    if (at === -1 || missing.length === 0) {
      // Not a well-formed form (Immich will say so) or nothing to add: pass it on as it came.
      this.push(rest)
      return done()
    }
    const added = missing
      .map(
        ([name, value]) =>
          `\r\n--${this.options.boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}`
      )
      .join('')
    this.push(rest.subarray(0, at))
    this.push(Buffer.from(added))
    this.push(rest.subarray(at))
    done()
  }

  /** Notes every part name whose delimiter and headers are whole in `buf` (re-seen parts are harmless). */
  private scan(buf: Buffer): void {
    let from = 0
    for (;;) {
      const start = buf.indexOf(this.delimiter, from)
      if (start === -1) return
      const headersStart = start + this.delimiter.length
      const headersEnd = buf.indexOf('\r\n\r\n', headersStart)
      if (headersEnd === -1 || headersEnd - headersStart > 4096) return
      const name = NAME.exec(buf.toString('latin1', headersStart, headersEnd))?.[1]
      if (name !== undefined) {
        this.seen.add(name)
        if (this.capture.has(name) && this.options.captured) {
          const valueEnd = buf.indexOf(`\r\n--${this.options.boundary}`, headersEnd + 4)
          if (valueEnd !== -1)
            this.options.captured[name] = buf.toString('utf8', headersEnd + 4, valueEnd)
        }
      }
      from = headersEnd
    }
  }
}
