import { BlockList, isIP } from 'node:net'

/** `::ffff:1.2.3.4` (an IPv4 peer on a dual-stack socket) → `1.2.3.4`. */
export function normalizeIp(address: string | undefined): string {
  if (!address) return 'unknown'
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address
}

/**
 * Why `entry` is not an address or a CIDR range (`10.0.0.0/8`, `fd00::/8`, `127.0.0.1`), or undefined
 * when it is one. The config schema and AddressSet judge entries by this one function.
 */
export function addressEntryProblem(entry: string): string | undefined {
  const slash = entry.indexOf('/')
  const address = slash === -1 ? entry : entry.slice(0, slash)
  const family = isIP(address)
  if (family === 0) return `"${entry}" is not an IP address or CIDR`
  if (slash === -1) return undefined
  const prefix = entry.slice(slash + 1)
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > (family === 4 ? 32 : 128))
    return `"${entry}" has a bad prefix length (0-${family === 4 ? 32 : 128})`
  return undefined
}

/** A set of addresses and CIDR ranges, built once. Throws on a malformed entry (config errors name it). */
export class AddressSet {
  private readonly list = new BlockList()
  readonly empty: boolean

  constructor(entries: readonly string[]) {
    this.empty = entries.length === 0
    for (const entry of entries) {
      const problem = addressEntryProblem(entry)
      if (problem !== undefined) throw new Error(problem)
      const [address = '', prefix] = entry.split('/')
      const type = isIP(address) === 4 ? 'ipv4' : 'ipv6'
      if (prefix === undefined) this.list.addAddress(address, type)
      else this.list.addSubnet(address, Number(prefix), type)
    }
  }

  has(address: string): boolean {
    if (this.empty) return false
    const family = isIP(address)
    return family !== 0 && this.list.check(address, family === 4 ? 'ipv4' : 'ipv6')
  }
}

/**
 * The client's address: the socket peer, unless the peer is a trusted proxy, in which case the
 * right-most X-Forwarded-For entry that is not itself a trusted proxy (entries left of it are the
 * client's own claims and can be forged).
 */
export function clientAddress(
  peer: string,
  forwardedFor: string | string[] | undefined,
  trusted: AddressSet
): string {
  if (!forwardedFor || !trusted.has(peer)) return peer
  const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor).split(',')
  let candidate = peer
  for (let i = hops.length - 1; i >= 0; i--) {
    const hop = normalizeIp(hops[i]!.trim())
    if (isIP(hop) === 0) break
    candidate = hop
    if (!trusted.has(hop)) break
  }
  return candidate
}
