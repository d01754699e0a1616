/** Which process listens on a TCP port or unix socket (Linux /proc), to name it in error messages. */
import { readdirSync, readFileSync, readlinkSync } from 'node:fs'
import { readdir, readFile, readlink } from 'node:fs/promises'
import { PROC_SCAN_CONCURRENCY } from '../core/proc-stat.js'
import { mapLimit } from '../core/map-limit.js'

export interface PortHolder {
  readonly pid: number
  /** The program's name (/proc/PID/comm). */
  readonly command: string
  /** Its process group (/proc/PID/stat), to recognise what a crashed sidecar left behind. */
  readonly pgid: number | undefined
}

/**
 * The process listening on TCP `port` (any address), or undefined when none is found or /proc
 * does not tell (another user's process is visible only to root).
 */
export function tcpPortHolder(port: number, proc = '/proc'): PortHolder | undefined {
  return socketHolder(listeningTcpInodes(port, proc), proc)
}

/**
 * tcpPortHolder for what runs after start-up (a wake that finds its port taken): every process's
 * fds are read asynchronously, so thousands of processes do not hold the event loop. The same
 * answer as tcpPortHolder (the first holder in /proc's order).
 */
export async function tcpPortHolderAsync(port: number, proc = '/proc'): Promise<PortHolder | undefined> {
  const inodes = listeningTcpInodes(port, proc)
  if (inodes.size === 0) return undefined
  let pids: string[]
  try {
    pids = (await readdir(proc)).filter((d) => /^\d+$/.test(d))
  } catch {
    return undefined
  }
  let first = Infinity // index of the first holder found so far: later pids need no look
  const found = await mapLimit(pids.map((pid, i) => [pid, i] as const), PROC_SCAN_CONCURRENCY, async ([pid, i]) => {
    if (i > first) return undefined
    let fds: string[]
    try {
      fds = await readdir(`${proc}/${pid}/fd`)
    } catch {
      return undefined
    }
    for (const fd of fds) {
      if (i > first) return undefined
      let target: string
      try {
        target = await readlink(`${proc}/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      if (!inodes.has(target)) continue
      first = Math.min(first, i)
      let command = '?'
      let pgid: number | undefined
      try {
        command = (await readFile(`${proc}/${pid}/comm`, 'utf8')).trim()
        const stat = await readFile(`${proc}/${pid}/stat`, 'utf8')
        pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
      } catch {
        // gone meanwhile
      }
      return { pid: Number(pid), command, pgid }
    }
    return undefined
  })
  return found.find((h) => h !== undefined)
}

/**
 * The process listening on the unix socket at `path`, found in /proc/net/unix without
 * connecting to it (a connection to the access-log socket would be logged by the sidecar there).
 */
export function unixSocketHolder(path: string): PortHolder | undefined {
  const inodes = new Set<string>()
  let text: string
  try {
    text = readFileSync('/proc/net/unix', 'utf8')
  } catch {
    return undefined
  }
  // Num RefCount Protocol Flags Type St Inode Path; flag 00010000 is __SO_ACCEPTCON (listening)
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/)
    if (f[7] === path && f[6] !== undefined && (Number.parseInt(f[3] ?? '0', 16) & 0x10000) !== 0) inodes.add(`socket:[${f[6]}]`)
  }
  return socketHolder(inodes)
}

/** Whether `pid` is `ancestor` or one of its descendants (through /proc/PID/stat's ppid). */
export function descendsFrom(pid: number, ancestor: number): boolean {
  for (let p = pid, hops = 0; p > 1 && hops < 64; hops++) {
    if (p === ancestor) return true
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8')
      p = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    } catch {
      return false
    }
  }
  return false
}

function listeningTcpInodes(port: number, proc: string): Set<string> {
  const inodes = new Set<string>()
  for (const table of [`${proc}/net/tcp`, `${proc}/net/tcp6`]) {
    let text: string
    try {
      text = readFileSync(table, 'utf8')
    } catch {
      continue
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/)
      const local = f[1]
      if (f[3] !== '0A' || local === undefined || f[9] === undefined) continue // 0A: LISTEN
      if (Number.parseInt(local.slice(local.lastIndexOf(':') + 1), 16) === port) inodes.add(`socket:[${f[9]}]`)
    }
  }
  return inodes
}

/** The first process holding one of `inodes` (`socket:[N]`) open. */
function socketHolder(inodes: ReadonlySet<string>, proc = '/proc'): PortHolder | undefined {
  if (inodes.size === 0) return undefined
  let pids: string[]
  try {
    pids = readdirSync(proc).filter((d) => /^\d+$/.test(d))
  } catch {
    return undefined
  }
  for (const pid of pids) {
    let fds: string[]
    try {
      fds = readdirSync(`${proc}/${pid}/fd`)
    } catch {
      continue
    }
    for (const fd of fds) {
      let target: string
      try {
        target = readlinkSync(`${proc}/${pid}/fd/${fd}`)
      } catch {
        continue
      }
      if (inodes.has(target)) {
        let command = '?'
        let pgid: number | undefined
        try {
          command = readFileSync(`${proc}/${pid}/comm`, 'utf8').trim()
          // fields after the command (which may contain spaces) start after the last ')'
          const stat = readFileSync(`${proc}/${pid}/stat`, 'utf8')
          pgid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2])
        } catch {
          // gone meanwhile
        }
        return { pid: Number(pid), command, pgid }
      }
    }
  }
  return undefined
}

/** " (pid 123, node)" when the holder is known, else "". */
export function describeHolder(port: number): string {
  const holder = tcpPortHolder(port)
  return holder ? ` (pid ${holder.pid}, ${holder.command})` : ''
}
