/**
 * Secrets of the Immich API keys the CLI minted (`keys add --immich-login`): a JSON file beside the
 * keys file (`keys.yaml` → `keys.upstream-secrets.json`), mode 0600, written atomically. The keys file
 * only names the minted key's id; the gateway reads the secret from here when it loads the keys.
 */
import { chmodSync, readFileSync } from 'node:fs'
import { basename, dirname, extname, join } from 'node:path'
import { KeysFileError, writeFileAtomic } from './keys-file.js'

/** `keys.yaml` → `keys.upstream-secrets.json`, in the same directory. */
export function mintedSecretsFile(keysFile: string): string {
  const ext = extname(keysFile)
  return join(dirname(keysFile), `${basename(keysFile, ext)}.upstream-secrets.json`)
}

/** Client name → Immich API key secret. A missing file is empty. */
export function readMintedSecrets(keysFile: string): Map<string, string> {
  const file = mintedSecretsFile(keysFile)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map()
    throw new KeysFileError(`${file}: cannot read (${(err as NodeJS.ErrnoException).code})`)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    // Never echo the content: it is secrets.
    throw new KeysFileError(`${file}: not valid JSON`)
  }
  const clients = (parsed as { clients?: unknown }).clients
  const out = new Map<string, string>()
  if (clients && typeof clients === 'object')
    for (const [name, secret] of Object.entries(clients))
      if (typeof secret === 'string') out.set(name, secret)
  return out
}

/** Sets (or with `undefined`, removes) one client's secret. The file stays 0600. */
export function writeMintedSecret(
  keysFile: string,
  client: string,
  secret: string | undefined
): void {
  const secrets = readMintedSecrets(keysFile)
  if (secret === undefined) secrets.delete(client)
  else secrets.set(client, secret)
  const file = mintedSecretsFile(keysFile)
  writeFileAtomic(file, `${JSON.stringify({ clients: Object.fromEntries(secrets) }, null, 2)}\n`)
  chmodSync(file, 0o600)
}
