/** `socket_group`: resolve a group name to its gid and say whether this process may use it. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'

export interface Group {
  readonly name: string
  readonly gid: number
}

/**
 * The group named `name` (or with that numeric gid), through NSS (`getent`, so LDAP and
 * systemd-userdb groups count) and /etc/group when getent is missing.
 */
export function lookupGroup(name: string, groupFile = '/etc/group'): Group | undefined {
  let lines: string[]
  try {
    lines = execFileSync('getent', ['group', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 }).split('\n')
  } catch (err) {
    // getent exits 2 for "no such group"; anything else (not installed): read the file.
    if ((err as { status?: number }).status === 2) return undefined
    try {
      lines = readFileSync(groupFile, 'utf8').split('\n')
    } catch {
      return undefined
    }
  }
  for (const line of lines) {
    const [n, , gid] = line.split(':')
    if (n !== undefined && gid !== undefined && /^\d+$/.test(gid) && (n === name || gid === name)) return { name: n, gid: Number(gid) }
  }
  return undefined
}

/** Why the sockets cannot be given group `name`, or undefined when they can. */
export function socketGroupProblem(name: string): string | undefined {
  const group = lookupGroup(name)
  if (!group) return `socket_group: there is no group "${name}" on this machine`
  if (process.getuid?.() === 0) return undefined
  const mine = new Set([process.getegid?.(), ...(process.getgroups?.() ?? [])])
  if (!mine.has(group.gid)) {
    return `socket_group: the sidecar runs as uid ${process.getuid?.()}, which is neither root nor a member of group "${name}", so it cannot give its sockets that group`
  }
  return undefined
}
