import { Counter, Gauge, type Registry } from 'prom-client'

/** Certificate metrics, registered only when TLS is on. */
export interface TlsMetrics {
  /** notAfter of the certificate being served (Unix seconds): alert when it comes close. */
  expiry: Gauge
  /** ACME outcomes: issued (first certificate), renewed, failed. */
  acme: Counter<'outcome'>
  /** Certificate files reloaded after a change: ok, or error (the previous one is kept). */
  reloads: Counter<'result'>
}

export function tlsMetrics(registry: Registry): TlsMetrics {
  const registers = [registry]
  return {
    expiry: new Gauge({
      name: 'immich_gateway_tls_certificate_expiry_timestamp_seconds',
      help: 'notAfter of the TLS certificate being served, as a Unix timestamp.',
      registers,
    }),
    acme: new Counter({
      name: 'immich_gateway_acme_certificates_total',
      help: 'ACME certificate attempts by outcome: issued, renewed, failed.',
      labelNames: ['outcome'],
      registers,
    }),
    reloads: new Counter({
      name: 'immich_gateway_tls_reloads_total',
      help: 'Reloads of certFile/keyFile after a change, by result (ok, error: the old one is kept).',
      labelNames: ['result'],
      registers,
    }),
  }
}
