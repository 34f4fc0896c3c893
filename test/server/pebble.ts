import { spawn, type ChildProcess } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { request as httpsRequest } from 'node:https'
import { join } from 'node:path'
import { freePort } from '../support/http.js'
import { makeCa, makeLeaf, type TestCa } from './support.js'

/** A real ACME server (Debian's pebble, Let's Encrypt's test CA) on free loopback ports. */
export interface Pebble {
  directoryUrl: string
  /** CA of pebble's own HTTPS listener (what `acme.caFile` is given). */
  caFile: string
  /** Root of the certificates pebble issues (regenerated at every start). */
  root(): Promise<string>
  /** Orders pebble was asked to create so far. */
  orders(): number
  log(): string
  stop(): Promise<void>
}

export async function startPebble(options: {
  httpPort: number
  certificateValidityPeriod: number
}): Promise<Pebble> {
  const ca: TestCa = makeCa('pebble listener CA')
  const leaf = makeLeaf(ca, 'pebble')
  const port = await freePort()
  const management = await freePort()
  const config = join(ca.dir, 'pebble.json')
  writeFileSync(
    config,
    JSON.stringify({
      pebble: {
        listenAddress: `127.0.0.1:${port}`,
        managementListenAddress: `127.0.0.1:${management}`,
        certificate: leaf.certFile,
        privateKey: leaf.keyFile,
        httpPort: options.httpPort,
        tlsPort: await freePort(),
        ocspResponderURL: '',
        externalAccountBindingRequired: false,
        certificateValidityPeriod: options.certificateValidityPeriod,
      },
    })
  )
  const child: ChildProcess = spawn('pebble', ['-config', config], {
    env: {
      ...process.env,
      PEBBLE_VA_NOSLEEP: '1',
      PEBBLE_WFE_NONCEREJECT: '0',
      // Every order validates its challenges: a reused authorization would hide a broken listener.
      PEBBLE_AUTHZREUSE: '0',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (c: Buffer) => (output += c.toString()))
  child.stderr!.on('data', (c: Buffer) => (output += c.toString()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pebble did not start:\n${output}`)), 10_000)
    const check = () => {
      if (output.includes('ACME directory available')) {
        clearTimeout(timer)
        resolve()
      }
    }
    child.stdout!.on('data', check)
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`pebble exited (${code}):\n${output}`))
    })
  })
  return {
    directoryUrl: `https://127.0.0.1:${port}/dir`,
    caFile: ca.certFile,
    root: () =>
      new Promise((resolve, reject) => {
        httpsRequest(`https://127.0.0.1:${management}/roots/0`, { ca: ca.pem }, (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (body += c))
          res.on('end', () => resolve(body))
        })
          .on('error', reject)
          .end()
      }),
    orders: () => output.split('\n').filter((l) => l.includes('POST /order-plz')).length,
    log: () => output,
    stop: () =>
      new Promise<void>((resolve) => {
        if (child.exitCode !== null) return resolve()
        child.once('exit', () => resolve())
        child.kill('SIGTERM')
      }),
  }
}
