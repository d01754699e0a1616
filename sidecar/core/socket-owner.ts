/**
 * Which process owns a TCP socket (Linux /proc): the kernel's socket tables (/proc/net/tcp,
 * /proc/net/tcp6) give each socket's inode, and a process holds the inode as a `socket:[N]` link
 * in /proc/<pid>/fd. Used to prove that what answers on a port is the process we mean — the app
 * the sidecar started (readiness), the running sidecar (`relight-sidecar reload`) — and never a
 * program that bound the port first. Reading another user's /proc/<pid>/fd needs root or the same user.
 */
import { isIP } from 'node:net'
import { readdirSync, readlinkSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'

const LISTEN = 0x0a
const ESTABLISHED = 0x01

export interface TcpSocket {
  /** 4 (tcp) or 16 (tcp6) address bytes, network order. */
  readonly local: Buffer
  readonly localPort: number
  readonly remote: Buffer
  readonly remotePort: number
  readonly state: number
  readonly inode: string
}

/** `0100007F` (tcp) or 32 hex digits (tcp6, four host-order words) → address bytes. */
function decodeAddress(hex: string): Buffer {
  const out = Buffer.alloc(hex.length / 2)
  for (let word = 0; word < hex.length / 8; word++) {
    for (let i = 0; i < 4; i++) out[word * 4 + i] = Number.parseInt(hex.slice(word * 8 + (3 - i) * 2, word * 8 + (3 - i) * 2 + 2), 16)
  }
  return out
}

function decodeEndpoint(field: string): { address: Buffer; port: number } {
  const colon = field.lastIndexOf(':')
  return { address: decodeAddress(field.slice(0, colon)), port: Number.parseInt(field.slice(colon + 1), 16) }
}

/**
 * The TCP sockets of this network namespace; only those whose local port is `localPort` when
 * given (lines are matched on the port's hex before anything is decoded: other users' sockets
 * cost a substring test each, not a parse).
 */
export function tcpSockets(proc = '/proc', localPort?: number): TcpSocket[] {
  const sockets: TcpSocket[] = []
  for (const table of TABLES) {
    let text: string
    try {
      text = readFileSync(`${proc}/${table}`, 'utf8')
    } catch {
      continue
    }
    parseTable(text, localPort, sockets)
  }
  return sockets
}

/** tcpSockets without blocking the event loop while the tables are read (for wakes). */
export async function tcpSocketsAsync(proc = '/proc', localPort?: number): Promise<TcpSocket[]> {
  const sockets: TcpSocket[] = []
  for (const table of TABLES) {
    let text: string
    try {
      text = await readFile(`${proc}/${table}`, 'utf8')
    } catch {
      continue
    }
    parseTable(text, localPort, sockets)
  }
  return sockets
}

const TABLES = ['net/tcp', 'net/tcp6']

function parseTable(text: string, localPort: number | undefined, sockets: TcpSocket[]): void {
  const portField = localPort === undefined ? undefined : `:${localPort.toString(16).toUpperCase().padStart(4, '0')} `
  for (const line of text.split('\n').slice(1)) {
    if (portField !== undefined && !line.includes(portField)) continue
    const f = line.trim().split(/\s+/)
    if (f.length < 10 || f[1] === undefined || f[2] === undefined || f[3] === undefined || f[9] === undefined) continue
    if (portField !== undefined && !`${f[1]} `.endsWith(portField)) continue
    const local = decodeEndpoint(f[1])
    const remote = decodeEndpoint(f[2])
    sockets.push({ local: local.address, localPort: local.port, remote: remote.address, remotePort: remote.port, state: Number.parseInt(f[3], 16), inode: f[9] })
  }
}

/** Address bytes of an IP literal (IPv4 also as its v4-mapped IPv6 form); undefined for a name. */
function ipBytes(host: string): Buffer[] | undefined {
  const h = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host
  if (isIP(h) === 4) {
    const v4 = Buffer.from(h.split('.').map(Number))
    return [v4, Buffer.concat([Buffer.alloc(10), Buffer.from([0xff, 0xff]), v4])]
  }
  if (isIP(h) === 6) {
    const [head = '', tail = ''] = h.split('::')
    const words = (s: string) => (s === '' ? [] : s.split(':'))
    const parts = h.includes('::') ? [...words(head), ...Array(8 - words(head).length - words(tail).length).fill('0'), ...words(tail)] : words(h)
    if (parts.some((p) => p.includes('.'))) return undefined // embedded IPv4 notation: not used here
    const out = Buffer.alloc(16)
    parts.forEach((p, i) => out.writeUInt16BE(Number.parseInt(p, 16), i * 2))
    return [out]
  }
  return undefined
}

const isZero = (b: Buffer) => b.every((x) => x === 0)

/** Does a socket bound to `local` accept connections made to `host`? (wildcards, v4-mapped) */
function coversHost(local: Buffer, host: string): boolean {
  const wanted = ipBytes(host)
  if (wanted === undefined || wanted.some(isZero)) return true // a name or a wildcard: any address
  return isZero(local) || wanted.some((w) => w.equals(local))
}

/** The listening sockets that accept connections to host:port. */
export function listenersFor(host: string, port: number, proc = '/proc'): TcpSocket[] {
  return tcpSockets(proc, port).filter((s) => s.state === LISTEN && s.localPort === port && coversHost(s.local, host))
}

/** listenersFor without blocking the event loop (a wake's listener check). */
export async function listenersForAsync(host: string, port: number, proc = '/proc'): Promise<TcpSocket[]> {
  return (await tcpSocketsAsync(proc, port)).filter((s) => s.state === LISTEN && s.localPort === port && coversHost(s.local, host))
}

/** The sidecar-side socket of an established connection from localPort to serverPort (both loopback). */
export function acceptedSocket(serverPort: number, clientPort: number, proc = '/proc'): TcpSocket | undefined {
  return tcpSockets(proc, serverPort).find((s) => s.state === ESTABLISHED && s.localPort === serverPort && s.remotePort === clientPort)
}

/** Socket inodes (`123456`) held by `pid`; empty when it is gone or its fds cannot be read. */
export function socketInodes(pid: number, proc = '/proc'): Set<string> {
  const inodes = new Set<string>()
  let fds: string[]
  try {
    fds = readdirSync(`${proc}/${pid}/fd`)
  } catch {
    return inodes
  }
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${proc}/${pid}/fd/${fd}`))
      if (m) inodes.add(m[1] as string)
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}
