/** A process's state, process group and start time from /proc (Linux), for checking that a recorded pid is still the same process. */
import { readFileSync } from 'node:fs'

export interface ProcStat {
  readonly state: string
  readonly pgrp: number
  readonly startTicks: number
}

/** state, process group and start time from /proc/<pid>/stat, or undefined when it is gone. */
export function procStat(pid: number | string, proc = '/proc'): ProcStat | undefined {
  let text: string
  try {
    text = readFileSync(`${proc}/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  const close = text.lastIndexOf(')')
  if (close < 0) return undefined
  // After "(comm) ": field 3 (state) is f[0]; field n is f[n - 3].
  const f = text.slice(close + 2).split(' ')
  const pgrp = Number(f[2])
  const startTicks = Number(f[19])
  if (!Number.isFinite(pgrp) || !Number.isFinite(startTicks)) return undefined
  return { state: f[0] ?? '?', pgrp, startTicks }
}
