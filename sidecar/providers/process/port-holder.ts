/**
 * Who holds a TCP port (Linux): a bind test says whether the address is taken; /proc/net/tcp
 * and tcp6 give the listening socket's inode, and /proc/<pid>/fd the process that owns it.
 * Used before a process app starts, so traffic is never routed to a program we did not start.
 */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { createServer } from 'node:net'

/** true when `host:port` cannot be bound because something listens there (EADDRINUSE only). */
export function portTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'))
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(false)))
  })
}

const LISTEN = '0A'

/** Inodes of sockets listening on `port` (any address), from /proc/net/tcp and tcp6. */
export function listeningInodes(port: number, proc = '/proc'): Set<string> {
  const inodes = new Set<string>()
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0')
  for (const table of ['tcp', 'tcp6']) {
    let text: string
    try {
      text = readFileSync(`${proc}/net/${table}`, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
      if (f.length < 10 || f[3] !== LISTEN) continue
      if (f[1]?.split(':')[1] === hexPort && f[9] !== '0') inodes.add(f[9] as string)
    }
  }
  return inodes
}

/** Pids with an open fd on one of the socket inodes (needs permission to read their fds). */
export function pidsHolding(inodes: ReadonlySet<string>, proc = '/proc'): number[] {
  if (inodes.size === 0) return []
  const wanted = new Set([...inodes].map((i) => `socket:[${i}]`))
  const pids: number[] = []
  let entries: string[]
  try {
    entries = readdirSync(proc).filter((d) => /^\d+$/.test(d))
  } catch {
    return pids
  }
  for (const pid of entries) {
    let fds: string[]
    try {
      fds = readdirSync(`${proc}/${pid}/fd`)
    } catch {
      continue // gone, or not ours to read
    }
    for (const fd of fds) {
      try {
        if (wanted.has(readlinkSync(`${proc}/${pid}/fd/${fd}`))) {
          pids.push(Number(pid))
          break
        }
      } catch {
        // closed meanwhile
      }
    }
  }
  return pids
}

/** The pids listening on `port`, or [] when they cannot be found. */
export function portHolders(port: number, proc = '/proc'): number[] {
  return pidsHolding(listeningInodes(port, proc), proc)
}
