import { readFileSync, unwatchFile, watchFile } from 'node:fs'
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http'
import { createServer as createHttpsServer } from 'node:https'
import { createSecureServer, type Http2Session } from 'node:http2'
import type { AddressInfo, Server as NetServer, Socket } from 'node:net'
import { X509Certificate } from 'node:crypto'
import {
  createSecureContext,
  type SecureContextOptions,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls'
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { GatewayConfig, tlsSchema } from '../config/schema.js'
import type { Metrics } from '../observability/metrics.js'
import { AcmeManager, type KeyPair } from './acme.js'
import { startPlainListener, type PlainListener } from './redirect.js'
import { tlsMetrics, type TlsMetrics } from './tls-metrics.js'

export type TlsConfig = z.output<typeof tlsSchema>

/**
 * TLS 1.2 and 1.3 only; for 1.2, forward-secret AEAD suites (Mozilla's "intermediate" profile), all
 * of them allowed by HTTP/2 (RFC 9113 §9.2.2).
 */
export const TLS_DEFAULTS = {
  minVersion: 'TLSv1.2',
  ciphers: [
    'TLS_AES_128_GCM_SHA256',
    'TLS_AES_256_GCM_SHA384',
    'TLS_CHACHA20_POLY1305_SHA256',
    'ECDHE-ECDSA-AES128-GCM-SHA256',
    'ECDHE-RSA-AES128-GCM-SHA256',
    'ECDHE-ECDSA-AES256-GCM-SHA384',
    'ECDHE-RSA-AES256-GCM-SHA384',
    'ECDHE-ECDSA-CHACHA20-POLY1305',
    'ECDHE-RSA-CHACHA20-POLY1305',
  ].join(':'),
  honorCipherOrder: true,
} satisfies SecureContextOptions

/** The three listeners a gateway can be: what @hono/node-server's `createServer` option accepts. */
export type CreateServer =
  typeof createHttpServer | typeof createHttpsServer | typeof createSecureServer

/** The server object any of them returns, as far as this module uses it. */
export type MainServer = NetServer &
  Partial<Pick<TlsServer, 'setSecureContext'>> & {
    closeIdleConnections?(): void
    closeAllConnections?(): void
  }

/**
 * How the main listener is built and what runs beside it. `createServer(serverOptions, listener)`
 * is the call the gateway (or @hono/node-server's `serve({ createServer, serverOptions })`) makes;
 * `attach(server)` is called once right after, before listen.
 */
export interface MainServerFactory {
  protocol: 'http' | 'https'
  createServer: CreateServer
  serverOptions: Record<string, unknown>
  /** Certificate reloads and renewals swap the server's context; HSTS; connection tracking. */
  attach(server: MainServer): void
  /** Closes connections with nothing in flight (h1 keep-alive, h2 sessions by GOAWAY). */
  closeIdle(): void
  /** Closes every connection (end of the shutdown grace period). */
  closeAll(): void
  /** Stops the plain listener, the certificate watcher and ACME renewals. */
  stop(): Promise<void>
  /** The plain HTTP listener (ACME challenges, redirect to https), when configured. */
  plain?: PlainListener
  acme?: AcmeManager
}

export interface TlsDeps {
  logger: Logger
  metrics: Metrics
}

/**
 * Prepares the main listener: plain HTTP without `server.tls`; otherwise HTTPS with HTTP/2 by ALPN
 * (HTTP/1.1 on the same port) and the certificate from files (reloaded on change) or from ACME. Starts
 * the plain listener (challenges, redirect) and, with ACME, obtains the first certificate, so a
 * server created from the result serves it from the first handshake.
 */
export async function mainServerFactory(
  config: GatewayConfig,
  deps: TlsDeps
): Promise<MainServerFactory> {
  const tls = config.server.tls
  if (!tls) return plainFactory()
  const metrics = tlsMetrics(deps.metrics.registry)
  const log = deps.logger

  let acmeManager: AcmeManager | undefined
  let pair: KeyPair | undefined
  if (tls.acme) {
    acmeManager = new AcmeManager(tls.acme, log, metrics)
  } else {
    pair = readPair(tls)
    metrics.expiry.set(expiryOf(pair.cert))
  }

  let server: MainServer | undefined
  let plain: PlainListener | undefined
  if (tls.httpPort !== undefined) {
    plain = await startPlainListener({
      host: tls.httpHost ?? config.server.host,
      port: tls.httpPort,
      httpsPort: () =>
        tls.redirectPort ?? ((server?.address() as AddressInfo | null)?.port || config.server.port),
      challenge: acmeManager && ((token) => acmeManager.challengeResponse(token)),
    })
  }
  try {
    await acmeManager?.start()
  } catch (err) {
    await plain?.close()
    throw err
  }
  pair ??= acmeManager?.certificate

  const alpn = tls.http2 ? ['h2', 'http/1.1'] : ['http/1.1']
  const contextOptions = (p: KeyPair) => ({ ...TLS_DEFAULTS, key: p.key, cert: p.cert })
  const serverOptions: Record<string, unknown> = {
    ...TLS_DEFAULTS,
    ...(pair ? contextOptions(pair) : {}),
    ALPNProtocols: alpn,
    ...(tls.http2 ? { allowHTTP1: true } : {}),
  }

  const sessions = new Set<Http2Session>()
  const h1Sockets = new Set<Socket>()
  const stopWatching: (() => void)[] = []

  const swap = (p: KeyPair, source: string) => {
    server?.setSecureContext?.(contextOptions(p))
    metrics.expiry.set(expiryOf(p.cert))
    log.info({ source, ...certSummary(p.cert) }, 'tls certificate in use')
  }
  acmeManager?.onCertificate((p) => swap(p, 'acme'))

  return {
    protocol: 'https',
    createServer: tls.http2 ? createSecureServer : createHttpsServer,
    serverOptions,
    plain,
    acme: acmeManager,
    attach(s) {
      server = s
      if (pair)
        log.info(
          { source: tls.acme ? 'acme' : 'file', ...certSummary(pair.cert) },
          'tls certificate in use'
        )
      if (tls.hsts) {
        const value = `max-age=${tls.hsts.maxAgeSeconds}${tls.hsts.includeSubDomains ? '; includeSubDomains' : ''}`
        // Before the gateway's own listener: writeHead merges headers set earlier, on h1 and h2.
        s.prependListener('request', (_req: IncomingMessage, res: ServerResponse) =>
          res.setHeader('strict-transport-security', value)
        )
      }
      if (tls.http2) {
        s.on('session', (session: Http2Session) => {
          sessions.add(session)
          session.once('close', () => sessions.delete(session))
        })
        s.on('secureConnection', (socket: TLSSocket) => {
          if (socket.alpnProtocol === 'h2') return
          h1Sockets.add(socket)
          socket.once('close', () => h1Sockets.delete(socket))
        })
      }
      if (!tls.acme) stopWatching.push(watchPair(tls, (p) => swap(p, 'file'), log, metrics))
    },
    closeIdle() {
      // h1 keep-alive connections on the TLS port (also under allowHTTP1, since Node 18.19/20).
      server?.closeIdleConnections?.()
      // GOAWAY: the client opens no new stream, those in flight finish, then the session closes.
      for (const session of sessions) if (!session.closed) session.close()
    },
    closeAll() {
      server?.closeAllConnections?.()
      for (const session of sessions) session.destroy()
      for (const socket of h1Sockets) socket.destroy()
    },
    async stop() {
      for (const fn of stopWatching) fn()
      acmeManager?.stop()
      await plain?.close()
    },
  }

  function plainFactory(): MainServerFactory {
    let server: MainServer | undefined
    return {
      protocol: 'http',
      createServer: createHttpServer,
      serverOptions: {},
      attach(s) {
        server = s
      },
      closeIdle: () => server?.closeIdleConnections?.(),
      closeAll: () => server?.closeAllConnections?.(),
      stop: async () => {},
    }
  }
}

function readPair(tls: TlsConfig): KeyPair {
  return { key: readFileSync(tls.keyFile!, 'utf8'), cert: readFileSync(tls.certFile!, 'utf8') }
}

function expiryOf(cert: string): number {
  return Date.parse(new X509Certificate(cert).validTo) / 1000
}

function certSummary(cert: string): Record<string, string> {
  const x = new X509Certificate(cert)
  return { subject: x.subject, notAfter: x.validTo, serial: x.serialNumber }
}

/**
 * Polls certFile and keyFile (fs.watchFile: an atomic rename by certbot or a Kubernetes secret
 * update is seen, unlike with fs.watch). A changed pair that does not load (half written, key and
 * certificate not matching yet) is logged and the previous one kept; the next change retries.
 */
function watchPair(
  tls: TlsConfig,
  onChange: (pair: KeyPair) => void,
  log: Logger,
  metrics: TlsMetrics
): () => void {
  let pending: NodeJS.Timeout | undefined
  const check = () => {
    clearTimeout(pending)
    // Both files usually change together: wait for the second before loading.
    pending = setTimeout(() => {
      try {
        const pair = readPair(tls)
        createSecureContext({ key: pair.key, cert: pair.cert })
        metrics.reloads.inc({ result: 'ok' })
        onChange(pair)
      } catch (err) {
        metrics.reloads.inc({ result: 'error' })
        log.error(
          { certFile: tls.certFile, keyFile: tls.keyFile, err: (err as Error).message },
          'tls certificate reload failed; the previous certificate stays in use'
        )
      }
    }, 200)
    pending.unref()
  }
  const interval = tls.reloadCheckSeconds * 1000
  const files = [tls.certFile!, tls.keyFile!]
  for (const file of files) watchFile(file, { interval, persistent: false }, check)
  return () => {
    clearTimeout(pending)
    for (const file of files) unwatchFile(file, check)
  }
}
