import { createHash } from 'node:crypto'
import { createServer } from 'node:net'

export function sha1(bytes: Buffer): string {
  return createHash('sha1').update(bytes).digest('hex')
}

export interface FormPart {
  name: string
  value: string | Buffer
  /** Makes the part a file (`Content-Type: image/jpeg`). */
  filename?: string
}

/** A multipart/form-data body, byte for byte as a browser would send it. */
export function multipartBody(boundary: string, parts: FormPart[]): Buffer {
  const chunks: Buffer[] = []
  for (const part of parts) {
    const disposition = `form-data; name="${part.name}"${part.filename ? `; filename="${part.filename}"` : ''}`
    chunks.push(
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: ${disposition}\r\n${part.filename ? 'Content-Type: image/jpeg\r\n' : ''}\r\n`
      )
    )
    chunks.push(Buffer.isBuffer(part.value) ? part.value : Buffer.from(part.value))
    chunks.push(Buffer.from('\r\n'))
  }
  chunks.push(Buffer.from(`--${boundary}--\r\n`))
  return Buffer.concat(chunks)
}

/** A current Immich upload form (dates + `assetData`), with the sha1s a test compares upstream. */
export function uploadForm(
  file: Buffer,
  boundary = 'gwtestboundary',
  fields: Record<string, string> = {}
) {
  const body = multipartBody(boundary, [
    { name: 'fileCreatedAt', value: '2024-01-01T00:00:00.000Z' },
    { name: 'fileModifiedAt', value: '2024-01-02T00:00:00.000Z' },
    ...Object.entries(fields).map(([name, value]) => ({ name, value })),
    { name: 'assetData', value: file, filename: 'photo.jpg' },
  ])
  return {
    body,
    contentType: `multipart/form-data; boundary=${boundary}`,
    bodySha1: sha1(body),
    fileSha1: sha1(file),
  }
}

/** A TCP port free right now on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
