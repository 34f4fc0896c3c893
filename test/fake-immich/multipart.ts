// A small streaming multipart/form-data parser: push chunks in, get part events out. Memory stays
// flat: only a carry of less than one delimiter length (plus part headers) is kept between chunks.

export interface PartInfo {
  name: string
  filename?: string
  contentType?: string
  headers: Record<string, string>
}

export interface MultipartEvents {
  onPartStart(part: PartInfo): void
  onPartData(data: Buffer): void
  onPartEnd(): void
}

type State = 'preamble' | 'afterDelimiter' | 'headers' | 'body' | 'done'

const CRLF = Buffer.from('\r\n')
const HEADER_END = Buffer.from('\r\n\r\n')
const MAX_HEADER_BYTES = 64 * 1024

export class MultipartError extends Error {}

/** The boundary from a `multipart/form-data; boundary=...` content type, or undefined. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (!contentType || !/^multipart\/form-data\b/i.test(contentType.trim())) return undefined
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType)
  const b = m?.[1] ?? m?.[2]
  return b && b.length <= 200 ? b : undefined
}

function parseDisposition(value: string): { name?: string; filename?: string } {
  const name = /(?:^|;)\s*name=(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(value)
  const filename = /(?:^|;)\s*filename=(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))/i.exec(value)
  const filenameStar = /(?:^|;)\s*filename\*=(?:UTF-8|utf-8)''([^;\s]+)/.exec(value)
  const out: { name?: string; filename?: string } = {}
  const n = name?.[1] ?? name?.[2]
  if (n !== undefined) out.name = n.replace(/\\(.)/g, '$1')
  if (filenameStar?.[1] !== undefined) {
    try {
      out.filename = decodeURIComponent(filenameStar[1])
    } catch {
      out.filename = filenameStar[1]
    }
  } else {
    const f = filename?.[1] ?? filename?.[2]
    if (f !== undefined) out.filename = f.replace(/\\(.)/g, '$1')
  }
  return out
}

export class MultipartParser {
  private state: State = 'preamble'
  private readonly delimiter: Buffer
  // The body is parsed as if it started with CRLF, so every delimiter is `\r\n--boundary`.
  private carry: Buffer = Buffer.from(CRLF)
  private inPart = false

  constructor(
    boundary: string,
    private readonly events: MultipartEvents
  ) {
    this.delimiter = Buffer.from(`\r\n--${boundary}`, 'latin1')
  }

  /** True once the closing delimiter (`--boundary--`) was seen. */
  get finished(): boolean {
    return this.state === 'done'
  }

  write(chunk: Buffer): void {
    if (this.finished) return // epilogue
    const data = this.carry.length > 0 ? Buffer.concat([this.carry, chunk]) : chunk
    this.carry = Buffer.alloc(0)
    let pos = 0
    for (;;) {
      switch (this.state) {
        case 'preamble':
        case 'body': {
          const idx = data.indexOf(this.delimiter, pos)
          if (idx === -1) {
            // Keep what could be the start of a delimiter split over two chunks.
            const safe = Math.max(pos, data.length - (this.delimiter.length - 1))
            if (safe > pos && this.state === 'body')
              this.events.onPartData(data.subarray(pos, safe))
            this.carry = Buffer.from(data.subarray(safe))
            return
          }
          if (this.state === 'body') {
            if (idx > pos) this.events.onPartData(data.subarray(pos, idx))
            this.inPart = false
            this.events.onPartEnd()
          }
          pos = idx + this.delimiter.length
          this.state = 'afterDelimiter'
          break
        }
        case 'afterDelimiter': {
          // Optional transport padding (spaces/tabs), then CRLF (next part) or `--` (the end).
          while (pos < data.length && (data[pos] === 0x20 || data[pos] === 0x09)) pos++
          if (data.length - pos < 2) {
            this.carry = Buffer.from(data.subarray(pos))
            return
          }
          if (data[pos] === 0x2d && data[pos + 1] === 0x2d) {
            this.state = 'done'
            return
          }
          if (data[pos] === 0x0d && data[pos + 1] === 0x0a) {
            pos += 2
            this.state = 'headers'
            break
          }
          throw new MultipartError('malformed multipart delimiter')
        }
        case 'headers': {
          if (data.length - pos < 2) {
            this.carry = Buffer.from(data.subarray(pos))
            return
          }
          let headerText: string
          if (data[pos] === 0x0d && data[pos + 1] === 0x0a) {
            headerText = '' // a part without headers
            pos += 2
          } else {
            const idx = data.indexOf(HEADER_END, pos)
            if (idx === -1) {
              if (data.length - pos > MAX_HEADER_BYTES)
                throw new MultipartError('multipart part headers too large')
              this.carry = Buffer.from(data.subarray(pos))
              return
            }
            headerText = data.subarray(pos, idx).toString('utf8')
            pos = idx + HEADER_END.length
          }
          this.startPart(headerText)
          this.state = 'body'
          break
        }
        default:
          return // 'done': ignore the epilogue
      }
    }
  }

  private startPart(headerText: string): void {
    const headers: Record<string, string> = {}
    for (const line of headerText.split('\r\n')) {
      const colon = line.indexOf(':')
      if (colon <= 0) continue
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim()
    }
    const disposition = parseDisposition(headers['content-disposition'] ?? '')
    const part: PartInfo = { name: disposition.name ?? '', headers }
    if (disposition.filename !== undefined) part.filename = disposition.filename
    if (headers['content-type'] !== undefined) part.contentType = headers['content-type']
    this.inPart = true
    this.events.onPartStart(part)
  }

  /** Call at the end of the body. Throws if the closing delimiter was never seen. */
  end(): void {
    if (this.state !== 'done') {
      if (this.inPart) this.inPart = false
      throw new MultipartError('Unexpected end of multipart body')
    }
  }
}
