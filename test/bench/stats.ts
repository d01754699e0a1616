/** Small statistics and formatting helpers for the benchmarks. */
import { loadavg } from 'node:os'

/** Percentile (0–100) of unsorted numbers, nearest-rank; NaN for an empty list. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))
  return sorted[rank] as number
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? (sorted[mid] as number) : ((sorted[mid - 1] as number) + (sorted[mid] as number)) / 2
}

export interface Spread {
  n: number
  min: number
  p50: number
  p90: number
  p99: number
  max: number
}

export function spread(values: readonly number[]): Spread {
  return {
    n: values.length,
    min: round(Math.min(...values)),
    p50: round(percentile(values, 50)),
    p90: round(percentile(values, 90)),
    p99: round(percentile(values, 99)),
    max: round(Math.max(...values)),
  }
}

export function round(x: number, digits = 2): number {
  const f = 10 ** digits
  return Math.round(x * f) / f
}

/** The 1/5/15-minute load averages, rounded: recorded next to every figure. */
export function load(): [number, number, number] {
  const [a, b, c] = loadavg()
  return [round(a ?? 0), round(b ?? 0), round(c ?? 0)]
}

export function fmtLoad(l: readonly number[]): string {
  return l.map((x) => x.toFixed(2)).join(' ')
}

/** Resident set size of a process in MB, from /proc (Linux); undefined when it is gone. */
export async function rssMb(pid: number): Promise<{ rss: number; hwm: number } | undefined> {
  const { readFile } = await import('node:fs/promises')
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8')
    const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN)
    return { rss: round(kb('VmRSS') / 1024, 1), hwm: round(kb('VmHWM') / 1024, 1) }
  } catch {
    return undefined
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

/** CPU time (user + system) a process has used so far, ms, from /proc (Linux; 100 ticks/s). */
export async function cpuMs(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises')
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    // after the command name: state is field 3, utime 14, stime 15 (1-based) → indexes 11, 12
    return (Number(fields[11]) + Number(fields[12])) * 10
  } catch {
    return Number.NaN
  }
}
