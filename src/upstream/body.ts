import type { Context } from 'hono';
import type { Env } from '../env.js';
import { GatewayError } from '../errors.js';

export interface ReadBodyOptions {
  /** A larger body is refused with 413 before (declared) or while (chunked) it is read. */
  maxBytes: number;
  /** A body not received within this time is refused with 408. */
  timeoutMs: number;
}

/**
 * Reads a small request body (login JSON, bulk id lists, legacy JSON rewrites) with a size cap and a
 * deadline. Uploads never come here: the forwarder streams them. The caller hands the bytes on as
 * `c.get('upstream').body`, so nothing is lost. A client waiting for "100 Continue" is told to send.
 */
export async function readRequestBody(c: Context<Env>, { maxBytes, timeoutMs }: ReadBodyOptions): Promise<Buffer> {
  const req = c.env.incoming;
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > maxBytes) throw new GatewayError(413, 'BODY_TOO_LARGE', 'Request body too large');
  const expect = req.headers.expect;
  if (typeof expect === 'string' && expect.toLowerCase() === '100-continue') c.env.outgoing?.writeContinue();
  const chunks: Buffer[] = [];
  let size = 0;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    req.destroy();
  }, timeoutMs);
  try {
    for await (const chunk of req) {
      size += (chunk as Buffer).length;
      if (size > maxBytes) throw new GatewayError(413, 'BODY_TOO_LARGE', 'Request body too large');
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    if (timedOut) throw new GatewayError(408, 'BODY_TIMEOUT', 'Request body not received in time');
    throw new GatewayError(400, 'BODY_INCOMPLETE', 'Request body incomplete');
  } finally {
    clearTimeout(timer);
  }
  return Buffer.concat(chunks, size);
}
