/** A process's state, process group and start time from /proc (Linux), for checking that a recorded pid is still the same process. */
import { readFileSync } from 'node:fs'
import { readdir, readFile } from 'node:fs/promises'
import { mapLimit } from './map-limit.js'

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
  return parseProcStat(text)
}

/** Reads in flight at once during a /proc scan (libuv's pool has 4 threads; this keeps it fed). */
export const PROC_SCAN_CONCURRENCY = 32

/** procStat without blocking the event loop: for what runs after start-up (wakes, heartbeats). */
export async function procStatAsync(pid: number | string, proc = '/proc'): Promise<ProcStat | undefined> {
  let text: string
  try {
    text = await readFile(`${proc}/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }
  return parseProcStat(text)
}

/**
 * `fn` over every pid in /proc (a numeric entry), PROC_SCAN_CONCURRENCY reads at a time, without
 * blocking the event loop: with thousands of processes a synchronous scan held it for hundreds
 * of milliseconds (every request waited). [] when /proc cannot be read.
 */
export async function scanPids<R>(proc: string, fn: (pid: string) => Promise<R>): Promise<R[]> {
  let pids: string[]
  try {
    pids = (await readdir(proc)).filter((d) => /^\d+$/.test(d))
  } catch {
    return []
  }
  return mapLimit(pids, PROC_SCAN_CONCURRENCY, fn)
}

function parseProcStat(text: string): ProcStat | undefined {
  const close = text.lastIndexOf(')')
  if (close < 0) return undefined
  // After "(comm) ": field 3 (state) is f[0]; field n is f[n - 3].
  const f = text.slice(close + 2).split(' ')
  const pgrp = Number(f[2])
  const startTicks = Number(f[19])
  if (!Number.isFinite(pgrp) || !Number.isFinite(startTicks)) return undefined
  return { state: f[0] ?? '?', pgrp, startTicks }
}
