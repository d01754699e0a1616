/**
 * IP addresses as raw bytes (4 for IPv4, 16 for IPv6), as the doors token carries them, and
 * CIDR prefixes matched against those bytes. Families never mix, as in Go's netip: an IPv4
 * address does not match an IPv6 prefix, and `::ffff:10.0.0.1` does not match `10.0.0.0/8`.
 */
import { isIP } from 'node:net'

/** Parse an IPv4 or IPv6 literal (no brackets, no zone) to its 4 or 16 bytes. */
export function parseIp(text: string): Buffer | undefined {
  const family = isIP(text)
  if (family === 4) return Buffer.from(text.split('.').map(Number))
  if (family !== 6 || text.includes('%')) return undefined
  let head = text
  let v4: number[] = []
  const lastColon = text.lastIndexOf(':')
  if (text.indexOf('.', lastColon) !== -1) {
    v4 = text.slice(lastColon + 1).split('.').map(Number)
    // `a::c:1.2.3.4` → `a::c`, but `::1.2.3.4` → `::` (the colon belongs to the `::`)
    head = text.slice(0, lastColon + 1)
    if (!head.endsWith('::')) head = head.slice(0, -1)
  }
  const groupsWanted = v4.length > 0 ? 6 : 8
  const [left = '', right] = head.split('::') as [string, string | undefined]
  const hex = (part: string): number[] => (part === '' ? [] : part.split(':').map((h) => parseInt(h, 16)))
  const l = hex(left)
  const r = right === undefined ? [] : hex(right)
  const fill = right === undefined ? 0 : groupsWanted - l.length - r.length
  const groups = [...l, ...new Array<number>(fill).fill(0), ...r]
  if (groups.length !== groupsWanted) return undefined
  const out = Buffer.alloc(16)
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2))
  v4.forEach((b, i) => (out[12 + i] = b))
  return out
}

/** Text form of 4 or 16 address bytes (IPv6 compressed as RFC 5952 recommends). */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
  if (bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff) {
    return `::ffff:${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}` // IPv4-mapped, as Go prints it
  }
  const groups: number[] = []
  for (let i = 0; i < 16; i += 2) groups.push(((bytes[i] as number) << 8) | (bytes[i + 1] as number))
  let bestStart = -1
  let bestLen = 1 // a single zero group is not compressed
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && groups[j] === 0) j++
    if (j - i > bestLen) {
      bestStart = i
      bestLen = j - i
    }
    i = j
  }
  const hex = (gs: number[]) => gs.map((g) => g.toString(16)).join(':')
  if (bestStart === -1) return hex(groups)
  return `${hex(groups.slice(0, bestStart))}::${hex(groups.slice(bestStart + bestLen))}`
}

/** `ip:port` as Caddy's reverse_proxy dials it (`[v6]:port`). */
export function dialAddress(ipText: string, port: number): string {
  return ipText.includes(':') ? `[${ipText}]:${port}` : `${ipText}:${port}`
}

export class Cidr {
  /** Network bytes with the host bits cleared. */
  readonly network: Buffer
  readonly bits: number
  readonly text: string

  private constructor(network: Buffer, bits: number) {
    this.network = network
    this.bits = bits
    this.text = `${formatIp(network)}/${bits}`
  }

  /** Parse `10.0.0.0/24`, `fd00::/64`. Host bits may be set (as Go's ParsePrefix allows); they are ignored. */
  static parse(text: string): Cidr | undefined {
    const slash = text.indexOf('/')
    if (slash === -1) return undefined
    const ip = parseIp(text.slice(0, slash))
    const bitsText = text.slice(slash + 1)
    if (!ip || !/^\d{1,3}$/.test(bitsText)) return undefined
    const bits = Number(bitsText)
    if (bits > ip.length * 8) return undefined
    const network = Buffer.from(ip)
    for (let i = 0; i < network.length; i++) {
      const keep = Math.max(0, Math.min(8, bits - i * 8))
      network[i] = (network[i] as number) & ((0xff << (8 - keep)) & 0xff)
    }
    return new Cidr(network, bits)
  }

  /** True when `ip` (4 or 16 bytes) lies in this prefix. */
  contains(ip: Uint8Array): boolean {
    if (ip.length !== this.network.length) return false
    const full = this.bits >> 3
    for (let i = 0; i < full; i++) if (ip[i] !== this.network[i]) return false
    const rest = this.bits & 7
    if (rest === 0) return true
    const mask = (0xff << (8 - rest)) & 0xff
    return ((ip[full] as number) & mask) === this.network[full]
  }
}
