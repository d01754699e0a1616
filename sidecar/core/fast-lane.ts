/**
 * The fast lane (issue 25): for an awake backend with `fast_lane: on`, the sidecar keeps one
 * flag per host in `fast_lane_dir`, and snippet version 4's `relight_fast` lets Caddy proxy that
 * host straight to the upstream the flag names, without the forward_auth sub-request:
 *
 *   <fast_lane_dir>/<host>/<upstream>  →  symlink to /proc/<sidecar pid>/cmdline
 *
 * Caddy's `file` matcher stats `/<host>/*` on every request (it follows the link): the flag
 * counts only while the link resolves, so it dangles — and the lane closes — the moment the
 * sidecar process is gone (kill -9 included). The restarted sidecar empties the directory
 * before anything else (a new process that took the old pid would make old links resolve again).
 *
 * Flags are written only here, for hosts in canonical DNS spelling (lower-case LDH, IDN as
 * A-labels: the snippet sends every other spelling to the forward_auth lane), for one upstream
 * (replicas stay in the forward_auth lane, which balances them), and a flag is replaced by an
 * atomic rename. Nothing here is on the request path.
 */
import { type Stats, lstatSync, readFileSync, realpathSync, statSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmdirSync, rmSync, symlinkSync, unlinkSync, chownSync, chmodSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, join } from 'node:path'
import { canonicalHostProblem } from './hosts.js'
import { type TcpSocket, tcpSockets, tcpSocketsAsync } from './socket-owner.js'

/** TCP states that mean a connection to the upstream is (or is about to be) open. */
const ESTABLISHED = 0x01
const SYN_SENT = 0x02

/** One flag: Caddy may send `host` straight to `upstream`. */
export interface LaneEntry {
  readonly host: string
  readonly upstream: string
}

/** A flag's host directory name, or why the host stays in the forward_auth lane. */
export function laneHostProblem(host: string): string | undefined {
  if (host.includes('*')) return 'a wildcard host (the file matcher looks up exact names)'
  return canonicalHostProblem(host)
}

/** `ip:port`, `[v6]:port` or `name:port` as a flag file name (no `/`, no NUL, not `.`/`..`). */
export function laneUpstreamProblem(upstream: string): string | undefined {
  if (upstream.length === 0 || upstream.length > 255) return 'not 1–255 characters'
  if (/[/\0\s]/.test(upstream) || upstream === '.' || upstream === '..') return 'not usable as a file name'
  if (!/:\d{1,5}$/.test(upstream)) return 'no port'
  return undefined
}

/** The kernel's fixed inode number of the initial pid namespace (PROC_PID_INIT_INO, Linux ≥ 3.8). */
const INITIAL_PID_NAMESPACE = 'pid:[4026531836]'

/**
 * Why this process may not share its pid namespace with Caddy (undefined: it runs in the
 * initial one, the host's, which every process sees). The flags are links to
 * /proc/<sidecar pid>/cmdline, and Caddy resolves them in ITS pid namespace: in another one the
 * same pid can be a live process (a sidecar that is pid 1 of its container points at Caddy's own
 * init), so the flags never dangle and the lane does not close when the sidecar dies. That Caddy
 * shares a non-initial namespace (same container, `shareProcessNamespace`, `--pid container:…`)
 * cannot be seen from here: it must be acknowledged (`fast_lane_shared_pid_namespace: true`).
 */
export function pidNamespaceProblem(proc = '/proc', pid = process.pid): string | undefined {
  let ns: string
  try {
    ns = readlinkSync(`${proc}/self/ns/pid`)
  } catch (err) {
    return `its pid namespace cannot be read (${proc}/self/ns/pid: ${(err as NodeJS.ErrnoException).code ?? String(err)})`
  }
  let nspid = ''
  try {
    nspid = /^NSpid:\s*(.*)$/m.exec(readFileSync(`${proc}/self/status`, 'latin1'))?.[1]?.trim() ?? ''
  } catch {
    // older kernels: the namespace link decides
  }
  const levels = nspid === '' ? [] : nspid.split(/\s+/)
  if (ns !== INITIAL_PID_NAMESPACE || levels.length > 1 || pid === 1) {
    return `the sidecar runs in its own pid namespace (${ns}${nspid ? `, NSpid ${nspid}` : ''}${pid === 1 ? ', pid 1' : ''})`
  }
  return undefined
}

/** systemd's pid_max (and the 64-bit kernel's limit): a pid comes round again only after millions of starts. */
export const SAFE_PID_MAX = 4_194_304

/**
 * Why this host's pid_max makes a dead sidecar's flags quick to reopen (undefined: it does not,
 * or it cannot be read). With 32768 (the kernel's default, usual in containers), a local user
 * aiming at a dead sidecar's pid took it in 12–23 s on a 2-core host (README, "Fast lane").
 */
export function pidMaxProblem(proc = '/proc'): string | undefined {
  let max: number
  try {
    max = Number(readFileSync(`${proc}/sys/kernel/pid_max`, 'latin1').trim())
  } catch {
    return undefined
  }
  if (!Number.isFinite(max) || max >= SAFE_PID_MAX) return undefined
  return `kernel.pid_max is ${max}: after a crash, the dead sidecar's flags reopen for whoever takes its pid, which a local user aiming at it can do in seconds at this size (12–23 s measured with 32768). Restart the sidecar at once (Restart=always, RestartSec=100ms, no StartLimit), set socket_group so other users cannot read the pid in the flags, and raise it: sysctl kernel.pid_max=${SAFE_PID_MAX}`
}

/** Owners the sidecar trusts with a directory above the flags: itself and root. */
function trusted(uid: number): boolean {
  return uid === 0 || uid === process.getuid?.()
}

/**
 * Why someone other than this user or root could replace the flag directory `dir` through a
 * directory above it (undefined: no one can), like ssh's StrictModes: every ancestor, as
 * written and as resolved (a link such as /var/run → /run), must belong to this user or root,
 * and one writable by its group or every user needs the sticky bit (/tmp: others cannot rename
 * what is ours in it); a link on the written path must itself belong to this user or root (its
 * owner can re-point it). The sidecar deletes, chowns and renames by path in `dir`.
 */
export function flagDirAncestorProblem(dir: string): string | undefined {
  if (process.getuid === undefined) return undefined
  const seen = new Set<string>()
  const chain = (p: string) => {
    for (let d = dirname(p); !seen.has(d); d = dirname(d)) seen.add(d)
  }
  chain(dir)
  try {
    chain(join(realpathSync(dirname(dir)), 'x'))
  } catch {
    // the parent is made by reset(); the written chain is checked
  }
  for (const d of [...seen].sort()) {
    let st: Stats
    try {
      // A link on the path is judged by its own owner first: statSync follows it, so a link
      // another user planted in a sticky directory (/tmp/x → a root directory) passed as its
      // target, and its owner could point it elsewhere at any time (outsider attack, issue 25).
      const link = lstatSync(d)
      if (link.isSymbolicLink() && !trusted(link.uid)) {
        return `${d} (above ${dir}) is a symbolic link owned by uid ${link.uid}, not by this user (${process.getuid()}) or root: its owner could point ${dir} elsewhere at any time`
      }
      st = statSync(d)
    } catch {
      continue // missing: made by reset() (recursive mkdir as this user), then checked again
    }
    if (!trusted(st.uid)) return `${d} (above ${dir}) belongs to uid ${st.uid}, not to this user (${process.getuid()}) or root: its owner could replace ${dir}`
    if ((st.mode & 0o022) !== 0 && (st.mode & 0o1000) === 0) return `${d} (above ${dir}) is writable by ${st.mode & 0o002 ? 'every user' : 'its group'} without the sticky bit (mode ${(st.mode & 0o7777).toString(8)}): anyone who may write it could replace ${dir}`
  }
  return undefined
}

/**
 * Why an existing `dir` is refused for its own mode (undefined: missing, or not writable by
 * others). A directory others could write until now may hold their host directories and links
 * (a flag Caddy would follow) and trees they can swap under a walk: refused, never walked.
 */
export function flagDirModeProblem(dir: string): string | undefined {
  let existing: Stats
  try {
    existing = lstatSync(dir)
  } catch {
    return undefined // made by reset()
  }
  if (!existing.isDirectory() || (existing.mode & 0o022) === 0) return undefined
  return `${dir} is writable by ${existing.mode & 0o002 ? 'every user' : 'its group'} (mode ${(existing.mode & 0o7777).toString(8)}): others may have planted flags in it, and only the sidecar writes here. Remove it (the sidecar makes it) or empty it and chmod 755, then start again`
}

/**
 * Why `serve` would refuse `dir` as fast_lane_dir, checked without touching it (`check` and
 * serve's preflight): a directory above it others could replace, or the directory itself
 * writable by others. The same sentences as FastLane.reset() throws.
 */
export function flagDirProblem(dir: string): string | undefined {
  return flagDirAncestorProblem(dir) ?? flagDirModeProblem(dir)
}

/**
 * Remove the flags an earlier sidecar left in `dir` (its links to /proc/<pid>/cmdline), before
 * anything else in `serve` can refuse the start (a config error, a port taken, a provider
 * preflight): a refused restart must not leave a dead sidecar's flags, which open again for
 * whoever takes its pid (README, "Fast lane"). Kept: a flag of another live process of this
 * user (a sidecar still running: this start is then refused by its checks, and its lane must
 * not close under it); a process of another user, a zombie, this process itself or a gone one
 * does not keep its flags. Best effort, silent: a directory this user may not trust is left to
 * reset(), which refuses it with the reason. Returns the flags removed (`host/upstream`).
 */
export function removeStaleFlags(dir: string, options: { readonly proc?: string; readonly uid?: number } = {}): string[] {
  const proc = options.proc ?? '/proc'
  const uid = options.uid ?? process.getuid?.()
  const removed: string[] = []
  try {
    if (flagDirAncestorProblem(dir) !== undefined) return removed
    const st = lstatSync(dir)
    if (!st.isDirectory() || (uid !== undefined && st.uid !== uid && st.uid !== 0)) return removed
    // Writable by others: what is in it may be theirs, swapped under a walk by path; reset() refuses it.
    if ((st.mode & 0o022) !== 0) return removed
  } catch {
    return removed // no directory: no flag
  }
  const keeps = (target: string): boolean => {
    const m = /^(.*)\/(\d+)\/cmdline$/.exec(target)
    if (m === null || m[1] !== proc) return false
    const pid = Number(m[2])
    if (pid === process.pid) return false
    try {
      const owner = statSync(`${proc}/${pid}`).uid
      const state = /\)\s+(\S)/.exec(readFileSync(`${proc}/${pid}/stat`, 'latin1'))?.[1]
      return owner === uid && state !== 'Z'
    } catch {
      return false // gone
    }
  }
  for (const host of readdirSync(dir)) {
    const hostDir = join(dir, host)
    try {
      const st = lstatSync(hostDir)
      if (!st.isDirectory()) {
        if (host.startsWith('.tmp-')) rmSync(hostDir, { force: true })
        continue
      }
      if (!trusted(st.uid) || (st.mode & 0o022) !== 0) continue // not the sidecar's: reset() refuses it
      for (const u of readdirSync(hostDir)) {
        const p = join(hostDir, u)
        if (!lstatSync(p).isSymbolicLink() || keeps(readlinkSync(p))) continue
        unlinkSync(p)
        removed.push(`${host}/${u}`)
      }
      rmdirSync(hostDir)
    } catch {
      // removed meanwhile, or a host directory still holding a kept flag
    }
  }
  return removed.sort()
}

/** Host and port of an upstream (`[::1]:80` → `::1`, 80). */
function splitUpstream(upstream: string): { host: string; port: number } {
  const colon = upstream.lastIndexOf(':')
  return { host: upstream.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(upstream.slice(colon + 1)) }
}

/** Client-side connections (ESTABLISHED or SYN_SENT) to `upstream` among `sockets`; a name as host is matched by port alone. */
function countConnections(sockets: readonly TcpSocket[], upstream: string): number {
  const { host, port } = splitUpstream(upstream)
  const family = isIP(host)
  const wanted = family === 4 ? Buffer.from(host.split('.').map(Number)) : undefined
  let n = 0
  for (const s of sockets) {
    if (s.remotePort !== port || (s.state !== ESTABLISHED && s.state !== SYN_SENT)) continue
    if (wanted !== undefined) {
      const remote = s.remote.length === 16 && s.remote.subarray(0, 12).equals(V4_MAPPED) ? s.remote.subarray(12) : s.remote
      if (!remote.equals(wanted)) continue
    }
    n++
  }
  return n
}

export interface FastLaneOptions {
  readonly dir: string
  /** Group that may read the directory (Caddy's: `socket_group`); mode 0750 then, else 0755. */
  readonly gid?: number
  /** The sidecar's pid (flags point into its /proc entry); default process.pid. */
  readonly pid?: number
  /** /proc, for tests. */
  readonly proc?: string
  /** `fast_lane_shared_pid_namespace`: Caddy shares this (non-initial) pid namespace; skips the check. */
  readonly sharedPidNamespace?: boolean
}

export class FastLane {
  readonly dir: string
  private readonly gid: number | undefined
  private readonly target: string
  private readonly proc: string
  private readonly pid: number
  private readonly sharedPidNamespace: boolean
  /** What each owner (a Backend) wants flagged. */
  private readonly wanted = new Map<object, readonly LaneEntry[]>()
  /** Flag path (`host/upstream`) → how many owners want it. */
  private readonly written = new Map<string, number>()
  private tmpSeq = 0
  /** The directory reset() checked (device and inode): every write first checks it is still that one. */
  private pinned: { dev: number; ino: number } | undefined

  constructor(options: FastLaneOptions) {
    this.dir = options.dir
    this.gid = options.gid
    this.proc = options.proc ?? '/proc'
    this.pid = options.pid ?? process.pid
    this.sharedPidNamespace = options.sharedPidNamespace ?? false
    this.target = `${this.proc}/${this.pid}/cmdline`
  }

  /**
   * Make the directory (if missing) and empty it: flags of an earlier sidecar must not survive
   * it, even if a new process took its pid. Call once at start, before any backend is listed.
   */
  reset(): void {
    const ns = this.sharedPidNamespace ? undefined : pidNamespaceProblem(this.proc, this.pid)
    if (ns !== undefined) {
      throw new Error(
        `${ns}: Caddy resolves the flags (links to ${this.target}) in its own pid namespace, where that pid may be another live process, so the lane would not close when the sidecar dies. ` +
          'Run the sidecar in the host pid namespace (pid: host, hostPID), or, if Caddy shares this namespace (same container, shareProcessNamespace, --pid container:…), say so with fast_lane_shared_pid_namespace: true',
      )
    }
    // Only the sidecar writes here: a directory someone else owns or can swap is refused, and
    // so is one below a directory someone else could swap.
    const before = flagDirAncestorProblem(this.dir)
    if (before !== undefined) throw new Error(before)
    const open = flagDirModeProblem(this.dir)
    if (open !== undefined) throw new Error(open)
    // 0755 whatever the umask (under umask 0 a plain mkdir makes 0777, refused just below)
    mkdirSync(dirname(this.dir), { recursive: true, mode: 0o755 })
    // 0700 until secure(): whatever the umask, no one else can enter it meanwhile
    mkdirSync(this.dir, { recursive: true, mode: 0o700 })
    const after = flagDirAncestorProblem(this.dir)
    if (after !== undefined) throw new Error(after)
    const st = lstatSync(this.dir)
    const uid = process.getuid?.()
    if (st.isSymbolicLink() || !st.isDirectory()) throw new Error(`${this.dir} is not a directory (a symbolic link is refused)`)
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) throw new Error(`${this.dir} belongs to uid ${st.uid}, not to this user (${uid}) or root`)
    this.pinned = { dev: st.dev, ino: st.ino }
    this.secure(this.dir)
    this.empty()
    this.wanted.clear()
    this.written.clear()
  }

  /**
   * Remove everything in the directory, knowing its shape (host directories holding links, and
   * `.tmp-` links): never a recursive removal, which would descend into a tree someone else could
   * swap for a link while it is walked. A host directory another user owns or may write, or one
   * holding a directory, is refused with its path (the sidecar never makes such a thing).
   */
  private empty(): void {
    for (const name of readdirSync(this.dir)) {
      const p = join(this.dir, name)
      const st = lstatSync(p)
      if (!st.isDirectory()) {
        unlinkSync(p)
        continue
      }
      if (!trusted(st.uid) || (st.mode & 0o022) !== 0) throw new Error(`${p} belongs to uid ${st.uid} with mode ${(st.mode & 0o7777).toString(8)}: not a host directory the sidecar made (only this user or root, not writable by others); remove it by hand`)
      for (const inner of readdirSync(p)) {
        const q = join(p, inner)
        if (lstatSync(q).isDirectory()) throw new Error(`${q} is a directory: the sidecar never makes one there; remove it by hand`)
        unlinkSync(q)
      }
      rmdirSync(p)
    }
  }

  /** Remove every flag this sidecar wrote (shutdown: the lane closes before the sidecar does). */
  clear(): void {
    for (const owner of [...this.wanted.keys()]) this.set(owner, [])
  }

  /** Flags in force (`host/upstream`), for status and tests. */
  flags(): string[] {
    return [...this.written.keys()].sort()
  }

  /** `owner` wants exactly these flags now (empty: none). Applies the difference at once. */
  set(owner: object, entries: readonly LaneEntry[]): void {
    const before = this.wanted.get(owner) ?? []
    const after = entries.filter((e) => laneHostProblem(e.host) === undefined && laneUpstreamProblem(e.upstream) === undefined)
    const same = before.length === after.length && before.every((e, i) => e.host === after[i]?.host && e.upstream === after[i]?.upstream)
    if (same) return
    if (after.length === 0) this.wanted.delete(owner)
    else this.wanted.set(owner, after)
    // Removals first: a host never has two flags at once (the matcher would take the first).
    for (const e of before) if (!after.some((a) => a.host === e.host && a.upstream === e.upstream)) this.release(e)
    for (const e of after) if (!before.some((b) => b.host === e.host && b.upstream === e.upstream)) this.claim(e)
  }

  /** Whether `owner` has any flag written. */
  has(owner: object): boolean {
    return this.wanted.has(owner)
  }

  private claim(e: LaneEntry): void {
    const path = `${e.host}/${e.upstream}`
    const n = this.written.get(path) ?? 0
    if (n > 0) {
      this.written.set(path, n + 1)
      return
    }
    this.checkPinned()
    const hostDir = join(this.dir, e.host)
    this.refuseLink(hostDir)
    this.written.set(path, 1)
    // Another upstream of the same host (another owner's): never two flags for one host.
    try {
      for (const other of readdirSync(hostDir)) if (other !== e.upstream) this.written.delete(`${e.host}/${other}`), unlinkSync(join(hostDir, other))
    } catch {
      // no directory yet
    }
    // 0700 until secure(): with umask 0 it would be writable by every user for a moment, long
    // enough to plant a second flag Caddy might match first
    mkdirSync(hostDir, { recursive: true, mode: 0o700 })
    this.secure(hostDir)
    const tmp = join(this.dir, `.tmp-${process.pid}-${this.tmpSeq++}`)
    rmSync(tmp, { force: true })
    symlinkSync(this.target, tmp)
    renameSync(tmp, join(hostDir, e.upstream))
  }

  private release(e: LaneEntry): void {
    const path = `${e.host}/${e.upstream}`
    const n = this.written.get(path) ?? 0
    if (n > 1) {
      this.written.set(path, n - 1)
      return
    }
    this.written.delete(path)
    this.checkPinned()
    const hostDir = join(this.dir, e.host)
    this.refuseLink(hostDir)
    rmSync(join(hostDir, e.upstream), { force: true })
    try {
      rmdirSync(hostDir)
    } catch {
      // another flag of this host, or already gone
    }
  }

  /** The directory is still the one reset() checked (not renamed away and replaced). */
  private checkPinned(): void {
    if (this.pinned === undefined) return
    const st = lstatSync(this.dir)
    if (st.isSymbolicLink() || st.dev !== this.pinned.dev || st.ino !== this.pinned.ino) throw new Error(`${this.dir} was replaced since start (not the directory checked then): no flag written or removed there`)
  }

  /** A host directory that is a link (or not a directory) is refused before anything follows it. */
  private refuseLink(hostDir: string): void {
    let st: Stats
    try {
      st = lstatSync(hostDir)
    } catch {
      return // not there yet
    }
    if (!st.isDirectory()) throw new Error(`${hostDir} is ${st.isSymbolicLink() ? 'a symbolic link' : 'not a directory'}: refused (only the sidecar writes here)`)
  }

  private secure(path: string): void {
    if (this.gid !== undefined) {
      chownSync(path, process.getuid?.() ?? 0, this.gid)
      chmodSync(path, 0o750)
    } else chmodSync(path, 0o755)
  }

  /**
   * Open TCP connections to `upstream` (client side: ESTABLISHED or SYN_SENT) in this network
   * namespace, whoever holds them: Caddy's fast-lane and forward_auth-lane connections, idle
   * keep-alive ones included (snippet 4 closes those after 1 s), and anyone else's (which only
   * keeps the backend awake longer). A name as upstream host is matched by port alone.
   */
  connections(upstream: string): number {
    return countConnections(tcpSockets(this.proc), upstream)
  }

  /**
   * connections() summed over `upstreams`, without blocking the event loop while
   * /proc/net/tcp{,6} is read (the drain polls it): the tables are read once for all of them.
   */
  async connectionsAsync(...upstreams: readonly string[]): Promise<number> {
    if (upstreams.length === 0) return 0
    const sockets = await tcpSocketsAsync(this.proc)
    let n = 0
    for (const u of upstreams) n += countConnections(sockets, u)
    return n
  }

  /** Every flag on disk that points at this process (tests, `check`). */
  onDisk(): string[] {
    const out: string[] = []
    let hosts: string[]
    try {
      hosts = readdirSync(this.dir)
    } catch {
      return out
    }
    for (const h of hosts) {
      if (h.startsWith('.')) continue
      try {
        for (const u of readdirSync(join(this.dir, h))) {
          const p = join(this.dir, h, u)
          if (lstatSync(p).isSymbolicLink() && readlinkSync(p) === this.target) out.push(`${h}/${u}`)
        }
      } catch {
        // removed meanwhile
      }
    }
    return out.sort()
  }
}

const V4_MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
