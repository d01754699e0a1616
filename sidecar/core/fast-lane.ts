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
import { lstatSync, statSync, mkdirSync, readdirSync, readlinkSync, renameSync, rmdirSync, rmSync, symlinkSync, unlinkSync, chownSync, chmodSync } from 'node:fs'
import { isIP } from 'node:net'
import { dirname, join } from 'node:path'
import { canonicalHostProblem } from './hosts.js'
import { tcpSockets } from './socket-owner.js'

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

/** Host and port of an upstream (`[::1]:80` → `::1`, 80). */
function splitUpstream(upstream: string): { host: string; port: number } {
  const colon = upstream.lastIndexOf(':')
  return { host: upstream.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(upstream.slice(colon + 1)) }
}

export interface FastLaneOptions {
  readonly dir: string
  /** Group that may read the directory (Caddy's: `socket_group`); mode 0750 then, else 0755. */
  readonly gid?: number
  /** The sidecar's pid (flags point into its /proc entry); default process.pid. */
  readonly pid?: number
  /** /proc, for tests. */
  readonly proc?: string
}

export class FastLane {
  readonly dir: string
  private readonly gid: number | undefined
  private readonly target: string
  private readonly proc: string
  /** What each owner (a Backend) wants flagged. */
  private readonly wanted = new Map<object, readonly LaneEntry[]>()
  /** Flag path (`host/upstream`) → how many owners want it. */
  private readonly written = new Map<string, number>()
  private tmpSeq = 0

  constructor(options: FastLaneOptions) {
    this.dir = options.dir
    this.gid = options.gid
    this.proc = options.proc ?? '/proc'
    this.target = `${this.proc}/${options.pid ?? process.pid}/cmdline`
  }

  /**
   * Make the directory (if missing) and empty it: flags of an earlier sidecar must not survive
   * it, even if a new process took its pid. Call once at start, before any backend is listed.
   */
  reset(): void {
    mkdirSync(this.dir, { recursive: true })
    // Only the sidecar writes here: a directory someone else owns or can swap is refused.
    const st = lstatSync(this.dir)
    const uid = process.getuid?.()
    if (st.isSymbolicLink() || !st.isDirectory()) throw new Error(`${this.dir} is not a directory (a symbolic link is refused)`)
    if (uid !== undefined && st.uid !== uid && st.uid !== 0) throw new Error(`${this.dir} belongs to uid ${st.uid}, not to this user (${uid}) or root`)
    const parent = statSync(dirname(this.dir))
    if ((parent.mode & 0o002) !== 0 && (parent.mode & 0o1000) === 0) throw new Error(`${dirname(this.dir)} is writable by every user without the sticky bit: anyone could replace ${this.dir}`)
    this.secure(this.dir)
    for (const name of readdirSync(this.dir)) rmSync(join(this.dir, name), { recursive: true, force: true })
    this.wanted.clear()
    this.written.clear()
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
    this.written.set(path, n + 1)
    if (n > 0) return
    const hostDir = join(this.dir, e.host)
    // Another upstream of the same host (another owner's): never two flags for one host.
    try {
      for (const other of readdirSync(hostDir)) if (other !== e.upstream) this.written.delete(`${e.host}/${other}`), unlinkSync(join(hostDir, other))
    } catch {
      // no directory yet
    }
    mkdirSync(hostDir, { recursive: true })
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
    const hostDir = join(this.dir, e.host)
    rmSync(join(hostDir, e.upstream), { force: true })
    try {
      rmdirSync(hostDir)
    } catch {
      // another flag of this host, or already gone
    }
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
    const { host, port } = splitUpstream(upstream)
    const family = isIP(host)
    const wanted = family === 4 ? Buffer.from(host.split('.').map(Number)) : undefined
    let n = 0
    for (const s of tcpSockets(this.proc)) {
      if (s.remotePort !== port || (s.state !== ESTABLISHED && s.state !== SYN_SENT)) continue
      if (wanted !== undefined) {
        const remote = s.remote.length === 16 && s.remote.subarray(0, 12).equals(V4_MAPPED) ? s.remote.subarray(12) : s.remote
        if (!remote.equals(wanted)) continue
      }
      n++
    }
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
