/**
 * CPU and memory of process groups from /proc (Linux): every process whose group id is one of
 * the replicas' leaders. CPU time from /proc/<pid>/stat (utime + stime, plus the reaped
 * children's cutime + cstime so short-lived helpers count), resident memory from
 * /proc/<pid>/statm. On other systems the figures are 0.
 */
import { execFileSync } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { scanPids } from '../../core/proc-stat.js'

export interface GroupUsage {
  /** Cumulative CPU time of the groups, ns. */
  cpuNs: number
  /** Resident memory, bytes. */
  rssBytes: number
  /** CPU time averaged over the life of the oldest leader, percent of one core. */
  avgCpuPct: number
  /** Processes counted. */
  processes: number
}

let sysconf: { clkTck: number; pageSize: number } | undefined

function getconf(name: string, fallback: number): number {
  try {
    const n = Number(execFileSync('getconf', [name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
    return Number.isFinite(n) && n > 0 ? n : fallback
  } catch {
    return fallback
  }
}

/** USER_HZ and the page size, read once (100 and 4096 on nearly every Linux). */
function system(): { clkTck: number; pageSize: number } {
  sysconf ??= { clkTck: getconf('CLK_TCK', 100), pageSize: getconf('PAGESIZE', 4096) }
  return sysconf
}

/** Fields of /proc/<pid>/stat after the `(comm)` field, which may itself hold spaces. */
export function parseStat(text: string): { pgrp: number; ticks: number; startTicks: number } | undefined {
  const close = text.lastIndexOf(')')
  if (close < 0) return undefined
  const f = text.slice(close + 2).split(' ')
  // f[0] is field 3 (state): field n is f[n - 3].
  const num = (n: number) => Number(f[n - 3])
  const ticks = num(14) + num(15) + num(16) + num(17)
  if (!Number.isFinite(ticks)) return undefined
  return { pgrp: num(5), ticks, startTicks: num(22) }
}

async function read(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8')
  } catch {
    return undefined // the process exited meanwhile
  }
}

/**
 * Runs on every heartbeat: the /proc scan is asynchronous (core/proc-stat.ts scanPids), so
 * thousands of processes on the machine cost reads in libuv's pool, not event-loop time.
 */
export async function groupUsage(leaders: readonly number[], proc = '/proc'): Promise<GroupUsage> {
  const usage: GroupUsage = { cpuNs: 0, rssBytes: 0, avgCpuPct: 0, processes: 0 }
  if (leaders.length === 0) return usage
  const { clkTck, pageSize } = system()
  const groups = new Set(leaders)
  let oldestStart = Infinity
  let listed = false
  await scanPids(proc, async (pid) => {
    listed = true
    const stat = await read(`${proc}/${pid}/stat`)
    const parsed = stat === undefined ? undefined : parseStat(stat)
    if (!parsed || !groups.has(parsed.pgrp)) return
    const statm = await read(`${proc}/${pid}/statm`)
    const resident = Number(statm?.split(' ')[1] ?? 0)
    usage.cpuNs += (parsed.ticks / clkTck) * 1e9
    usage.rssBytes += (Number.isFinite(resident) ? resident : 0) * pageSize
    usage.processes++
    if (groups.has(Number(pid))) oldestStart = Math.min(oldestStart, parsed.startTicks)
  })
  if (!listed) return usage
  const uptime = Number((await read(`${proc}/uptime`))?.split(' ')[0])
  if (Number.isFinite(oldestStart) && Number.isFinite(uptime)) {
    const lived = uptime - oldestStart / clkTck
    if (lived > 0) usage.avgCpuPct = (usage.cpuNs / 1e9 / lived) * 100
  }
  return usage
}
