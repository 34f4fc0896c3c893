import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { connect as h2connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2'
import { request as httpsRequest } from 'node:https'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect, type PeerCertificate } from 'node:tls'

/** A throw-away CA and certificates signed by it, made with the openssl CLI. */
export interface TestCa {
  dir: string
  certFile: string
  keyFile: string
  pem: string
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] })
}

export function makeCa(name = 'igw test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'igw-tls-'))
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      'ca.key',
      '-out',
      'ca.pem',
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    ],
    dir
  )
  const certFile = join(dir, 'ca.pem')
  return { dir, certFile, keyFile: join(dir, 'ca.key'), pem: readFileSync(certFile, 'utf8') }
}

let serial = 0

/** A leaf for localhost and 127.0.0.1 signed by `ca`; returns its files (written into `ca.dir`). */
export function makeLeaf(
  ca: TestCa,
  cn: string,
  into: { certFile?: string; keyFile?: string } = {}
): { certFile: string; keyFile: string; cert: string } {
  const id = `leaf-${process.pid}-${++serial}`
  writeFileSync(join(ca.dir, `${id}.ext`), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  openssl(
    [
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${id}.key`,
      '-out',
      `${id}.csr`,
      '-subj',
      `/CN=${cn}`,
    ],
    ca.dir
  )
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${id}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${id}.pem`,
      '-days',
      '2',
      '-extfile',
      `${id}.ext`,
    ],
    ca.dir
  )
  const cert = readFileSync(join(ca.dir, `${id}.pem`), 'utf8')
  const key = readFileSync(join(ca.dir, `${id}.key`), 'utf8')
  const certFile = into.certFile ?? join(ca.dir, `${id}.pem`)
  const keyFile = into.keyFile ?? join(ca.dir, `${id}.key`)
  writeFileSync(keyFile, key)
  writeFileSync(certFile, cert)
  return { certFile, keyFile, cert }
}

/** The certificate a fresh TLS handshake is shown, and the ALPN protocol chosen. */
export function handshake(
  url: string,
  ca: string | string[],
  alpn = ['h2', 'http/1.1']
): Promise<{ cert: PeerCertificate; alpn: string | false }> {
  const u = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: u.hostname, port: Number(u.port), ca, servername: 'localhost', ALPNProtocols: alpn },
      () => {
        const cert = socket.getPeerCertificate()
        const protocol = socket.alpnProtocol ?? false
        socket.end()
        resolve({ cert, alpn: protocol })
      }
    )
    socket.on('error', reject)
  })
}

export interface H2Response {
  status: number
  headers: IncomingHttpHeaders
  body: Buffer
}

/** One request on an HTTP/2 session; the body (a Buffer or chunks) is streamed. */
export function h2request(
  session: ClientHttp2Session,
  path: string,
  init: {
    method?: string
    headers?: Record<string, string>
    body?: Buffer | AsyncIterable<Buffer>
  } = {}
): Promise<H2Response> {
  return new Promise((resolve, reject) => {
    const stream = session.request({
      ':method': init.method ?? 'GET',
      ':path': path,
      ...init.headers,
    })
    const chunks: Buffer[] = []
    let head: IncomingHttpHeaders = {}
    stream.on('response', (h) => (head = h))
    stream.on('data', (c: Buffer) => chunks.push(c))
    stream.on('end', () =>
      resolve({ status: Number(head[':status']), headers: head, body: Buffer.concat(chunks) })
    )
    stream.on('error', reject)
    const body = init.body
    if (body === undefined) stream.end()
    else if (Buffer.isBuffer(body)) stream.end(body)
    else
      void (async () => {
        for await (const chunk of body) {
          if (!stream.write(chunk)) await new Promise((r) => stream.once('drain', r))
        }
        stream.end()
      })().catch(reject)
  })
}

/** An HTTP/2 session to `url` trusting `ca`. */
export function h2session(url: string, ca: string | string[]): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(url, { ca, servername: 'localhost' })
    session.once('connect', () => resolve(session))
    session.once('error', reject)
  })
}

/** One HTTPS/1.1 request trusting `ca` (no keep-alive agent); several Set-Cookie stay an array. */
export function h1request(
  url: string,
  ca: string | string[],
  init: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}
): Promise<H2Response & { httpVersion: string }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      url,
      {
        method: init.method ?? 'GET',
        headers: init.headers,
        ca,
        servername: 'localhost',
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: Buffer.concat(chunks),
            httpVersion: res.httpVersion,
          })
        )
        res.on('error', reject)
      }
    )
    req.on('error', reject)
    req.end(init.body)
  })
}
