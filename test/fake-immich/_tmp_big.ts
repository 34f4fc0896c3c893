import { request } from 'undici';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { startFakeImmich } from './server.js';
const fake = await startFakeImmich();
const boundary = 'bigboundary';
const head = Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="fileCreatedAt"\r\n\r\n2024-01-01T00:00:00.000Z\r\n--${boundary}\r\nContent-Disposition: form-data; name="assetData"; filename="big.bin"\r\n\r\n`);
const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
const GB = Number(process.argv[2] ?? 2);
const chunk = Buffer.alloc(1024 * 1024, 7);
const n = GB * 1024;
const bodyHash = createHash('sha1'); const fileHash = createHash('sha1');
async function* gen() {
  bodyHash.update(head); yield head;
  for (let i = 0; i < n; i++) { bodyHash.update(chunk); fileHash.update(chunk); yield chunk; }
  bodyHash.update(tail); yield tail;
}
let maxRss = 0; const iv = setInterval(() => { maxRss = Math.max(maxRss, process.memoryUsage().rss); }, 50);
const t0 = Date.now();
const res = await request(`${fake.url}/api/assets`, { method: 'POST', headers: { 'x-api-key': 'fake-admin-key', 'content-type': `multipart/form-data; boundary=${boundary}` }, body: Readable.from(gen()) });
console.log(res.statusCode, await res.body.text(), (Date.now()-t0)+'ms');
const up = fake.lastRequest().upload!;
console.log(up.bytes === head.length + n*chunk.length + tail.length, up.sha1 === bodyHash.digest('hex'), up.fileBytes === n * chunk.length, up.fileSha1 === fileHash.digest('hex'), up.fields);
clearInterval(iv); console.log('maxRss MB', Math.round(maxRss/1e6));
await fake.close();
