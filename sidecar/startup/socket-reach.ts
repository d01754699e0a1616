/**
 * Can `socket_group`'s members (Caddy) reach the unix sockets? Connecting needs write permission
 * on the socket (secureSocket gives it to the group) and search (x) permission on every
 * directory above it. A directory left at 0700 (the sidecar's own state directory, made when it
 * listened on TCP) passes every other check, and then Caddy gets "permission denied" and clients
 * an empty 502: `check` and `serve` say so instead. The same for the directories above
 * fast_lane_dir, whose flags Caddy's `file` matcher must be able to stat.
 */
import { statSync } from 'node:fs'
import { dirname } from 'node:path'
import type { Config } from '../config/schema.js'
import { lookupGroup } from './groups.js'
import { unixPath } from './listen-address.js'

/** One sentence per socket whose group cannot traverse a directory above it. */
export function socketReachProblems(config: Config): string[] {
  if (config.socket_group === undefined) return [] // owner-only sockets: only the sidecar's user connects
  const group = lookupGroup(config.socket_group)
  if (!group) return [] // socketGroupProblem reports it
  const problems: string[] = []
  for (const [what, address] of [['listen', config.listen], ['access_log', config.access_log], ['ops_listen', config.ops_listen]] as const) {
    const path = address === undefined ? undefined : unixPath(address)
    if (path === undefined) continue
    const blocked = blockingDirectory(path, group.gid)
    if (blocked) {
      problems.push(
        `${what}: members of group ${group.name} (Caddy) cannot reach ${path}: ${blocked.dir} is mode ${blocked.mode} (uid ${blocked.uid}, gid ${blocked.gid}) and lets neither them nor others in; ` +
          `chmod o+x ${blocked.dir} (0755), or chgrp ${group.name} ${blocked.dir} && chmod g+x ${blocked.dir}`,
      )
    }
  }
  // The fast lane's flags: Caddy's `file` matcher stats them, which needs search permission on
  // every directory above fast_lane_dir (the sidecar makes fast_lane_dir itself 0750, group
  // socket_group). Blocked, the matcher never matches and every request silently takes forward_auth.
  if (config.fast_lane_dir !== undefined) {
    const blocked = blockingDirectory(config.fast_lane_dir, group.gid)
    if (blocked) {
      problems.push(
        `fast_lane_dir: members of group ${group.name} (Caddy) cannot reach ${config.fast_lane_dir}: ${blocked.dir} is mode ${blocked.mode} (uid ${blocked.uid}, gid ${blocked.gid}) and lets neither them nor others in, so Caddy never sees a flag and no request takes the fast lane; ` +
          `chmod o+x ${blocked.dir} (0755), or chgrp ${group.name} ${blocked.dir} && chmod g+x ${blocked.dir}, or choose a fast_lane_dir under /run`,
      )
    }
  }
  return problems
}

interface Blocking {
  readonly dir: string
  readonly mode: string
  readonly uid: number
  readonly gid: number
}

/**
 * The first existing directory above `path` (from / down) that a member of `gid` who is not its
 * owner cannot search: neither o+x, nor g+x with group `gid`. Directories still to be created get
 * 0755 (claimSocketPath). ACLs are not read.
 */
function blockingDirectory(path: string, gid: number): Blocking | undefined {
  const dirs: string[] = []
  for (let d = dirname(path); ; d = dirname(d)) {
    dirs.unshift(d)
    if (dirname(d) === d) break
  }
  for (const dir of dirs) {
    let st
    try {
      st = statSync(dir)
    } catch {
      return undefined // missing from here down: created 0755
    }
    const others = (st.mode & 0o001) !== 0
    const viaGroup = st.gid === gid && (st.mode & 0o010) !== 0
    if (!others && !viaGroup) return { dir, mode: `0${(st.mode & 0o777).toString(8)}`, uid: st.uid, gid: st.gid }
  }
  return undefined
}
