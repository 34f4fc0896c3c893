// Deterministic, seekable pseudo-random bytes for the fake Immich upstream.
//
// The bytes are the AES-128-CTR keystream of a key derived from a seed string. CTR mode is
// seekable, so any byte range of a multi-GB "file" can be produced without generating what comes
// before it, and chunks can be streamed with flat memory.
//
// Every byte has its high bit cleared (0x00-0x7f): autocannon, the benchmark client, decodes each
// response body as UTF-8, which is ~10x slower for random bytes than for 7-bit ones and would make
// the benchmark measure the client instead of the gateway.
import { createCipheriv, createHash } from 'node:crypto'

type Cipher = ReturnType<typeof createCipheriv>

const BLOCK = 16
const CHUNK = 64 * 1024
const ZEROS = Buffer.alloc(CHUNK)

function keyFor(seed: string): Buffer {
  return createHash('sha256').update(seed).digest().subarray(0, 16)
}

function ivForBlock(block: number): Buffer {
  const iv = Buffer.alloc(16)
  iv.writeUInt32BE(Math.floor(block / 2 ** 32) >>> 0, 8)
  iv.writeUInt32BE((block % 2 ** 32) >>> 0, 12)
  return iv
}

/** Clear the high bit of every byte, in place. */
function mask7(buf: Buffer): Buffer {
  const n = buf.length
  const off = buf.byteOffset
  let i = 0
  while (i < n && (off + i) % 4 !== 0) {
    buf[i] = buf[i]! & 0x7f
    i++
  }
  const words = (n - i) >>> 2
  if (words > 0) {
    const u = new Uint32Array(buf.buffer, off + i, words)
    for (let w = 0; w < words; w++) u[w] = u[w]! & 0x7f7f7f7f
    i += words * 4
  }
  while (i < n) {
    buf[i] = buf[i]! & 0x7f
    i++
  }
  return buf
}

function zeros(n: number): Buffer {
  return n <= CHUNK ? ZEROS.subarray(0, n) : Buffer.alloc(n)
}

/** An endless deterministic byte stream identified by a seed. */
export class ByteSource {
  private readonly key: Buffer

  constructor(seed: string) {
    this.key = keyFor(seed)
  }

  private cipherAt(offset: number): Cipher {
    const block = Math.floor(offset / BLOCK)
    const cipher = createCipheriv('aes-128-ctr', this.key, ivForBlock(block))
    const skip = offset - block * BLOCK
    if (skip > 0) cipher.update(ZEROS.subarray(0, skip))
    return cipher
  }

  /** Bytes [start, endExclusive). */
  slice(start: number, endExclusive: number): Buffer {
    if (endExclusive <= start) return Buffer.alloc(0)
    return mask7(this.cipherAt(start).update(zeros(endExclusive - start)))
  }

  /** Bytes [start, endExclusive) as chunks of at most `chunkSize` bytes. */
  *chunks(start: number, endExclusive: number, chunkSize = CHUNK): Generator<Buffer> {
    if (endExclusive <= start) return
    const cipher = this.cipherAt(start)
    const size = Math.min(Math.max(1, chunkSize), CHUNK)
    for (let pos = start; pos < endExclusive; pos += size) {
      const n = Math.min(size, endExclusive - pos)
      yield mask7(cipher.update(ZEROS.subarray(0, n)))
    }
  }
}

/** Seed of the bytes served by `/api/assets/{id}/original` and `/api/assets/{id}/video/playback`. */
export function originalSeed(id: string): string {
  return `original:${id}`
}

/**
 * The exact bytes the fake serves for `/api/assets/{id}/original` and `.../video/playback` when the
 * asset has `size` bytes. The content depends on the id only; `size` truncates it.
 */
export function expectedBytes(id: string, size: number): Buffer {
  return new ByteSource(originalSeed(id)).slice(0, size)
}

/** Bytes `start..end` (inclusive, like HTTP ranges) of an original/playback. */
export function expectedRange(id: string, start: number, end: number): Buffer {
  return new ByteSource(originalSeed(id)).slice(start, end + 1)
}

/**
 * The exact bytes of `/api/assets/{id}/thumbnail?size=<size>` as seen by `principal` (a user id, or
 * `share:<key>` / `slug:<slug>` for shared links). `RIFF....WEBPVP8 `, then pseudo-random 7-bit bytes.
 */
export function expectedThumbnail(
  id: string,
  size: string,
  principal: string,
  length = 40960
): Buffer {
  const buf = new ByteSource(`thumbnail:${id}:${size}:${principal}`).slice(0, length)
  if (length >= 16) {
    buf.write('RIFF', 0, 'latin1')
    buf.writeUInt32LE((length - 8) & 0x7f7f7f7f, 4) // kept 7-bit (see above)
    buf.write('WEBPVP8 ', 8, 'latin1')
  }
  return buf
}

/** Bytes of a person thumbnail / profile image (pseudo-random 7-bit bytes; no JPEG magic, see above). */
export function expectedJpeg(seed: string, length = 8192): Buffer {
  return new ByteSource(`jpeg:${seed}`).slice(0, length)
}
