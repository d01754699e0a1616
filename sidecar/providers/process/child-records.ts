/**
 * Crash recovery for process apps. Every child the sidecar starts is recorded in the state
 * directory (one small JSON file per process group, written when it starts, removed when it is
 * gone). If the sidecar dies without stopping its children (kill -9, OOM killer), the next
 * sidecar ends what the dead one left: SIGCONT, the app's stop signal, its grace period, then
 * SIGKILL, always to the whole process group.
 *
 * Identity is checked before any signal, so a reused pid is never touched: the record holds the
 * leader's start time (/proc/<pid>/stat field 22, clock ticks since boot) and the boot id. A
 * leader that still runs must match both; a leader that is gone leaves its group id reserved
 * while any member lives (Linux never hands out a pid that is still a process group id), so the
 * members found with that group id are the leader's leftovers.
 *
 * Records of a sidecar that still runs (another instance sharing the directory) are left alone.
 */
import { createHash } from 'node:crypto'
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { stateDirProblem, stateFileProblem, writePrivateFile } from '../../config/state-dir.js'
import { procStat, procStatAsync, scanPids } from '../../core/proc-stat.js'

export interface ChildRecord {
  readonly version: 1
  readonly app: string
  readonly replica: number
  /** Leader pid, which is also the process group id. */
  readonly pid: number
  readonly start_ticks: number
  readonly boot_id: string
  readonly host?: string
  readonly port?: number
  /** sha256 of the app's configuration (for the log: was it started with today's config?). */
  readonly config_hash: string
  readonly stop_signal: string
  readonly grace_ms: number
  /** The sidecar that started it. */
  readonly owner: { readonly pid: number; readonly start_ticks: number }
  readonly started_at: string
}

/** Where the records of the children live: the `process` folder of the state directory. */
export function recordsDir(stateDir: string): string {
  return join(stateDir, 'process')
}

export function bootId(proc = '/proc'): string {
  try {
    return readFileSync(`${proc}/sys/kernel/random/boot_id`, 'utf8').trim()
  } catch {
    return 'unknown'
  }
}

/** Live (not zombie) pids whose process group is `pgid`. */
export function groupMembers(pgid: number, proc = '/proc'): number[] {
  let entries: string[]
  try {
    entries = readdirSync(proc).filter((d) => /^\d+$/.test(d))
  } catch {
    return []
  }
  const members: number[] = []
  for (const pid of entries) {
    const stat = procStat(pid, proc)
    if (stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X') members.push(Number(pid))
  }
  return members
}

/** groupMembers without blocking the event loop (a /proc scan): for wakes and polls after start-up. */
export async function groupMembersAsync(pgid: number, proc = '/proc'): Promise<number[]> {
  const found = await scanPids(proc, async (pid) => {
    const stat = await procStatAsync(pid, proc)
    return stat && stat.pgrp === pgid && stat.state !== 'Z' && stat.state !== 'X' ? Number(pid) : undefined
  })
  return found.filter((pid): pid is number => pid !== undefined)
}

export function configHash(value: unknown): string {
  return createHash('sha256').update(JSON.stringify(value)).digest('hex').slice(0, 16)
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal)
  } catch {
    // ESRCH: gone
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Poll until the group is empty or `ms` passed; true when it is empty. */
async function groupGone(pgid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  for (;;) {
    if ((await groupMembersAsync(pgid)).length === 0) return true
    if (Date.now() >= deadline) return false
    await sleep(50)
  }
}

export type Verdict = { readonly kind: 'ours'; readonly members: number[] } | { readonly kind: 'gone' } | { readonly kind: 'reused'; readonly why: string }

/** Is the process group of this record still the one we started? */
export function identify(record: ChildRecord, boot = bootId()): Verdict {
  if (record.boot_id !== boot) return { kind: 'gone' } // recorded before a reboot
  const leader = procStat(record.pid)
  if (leader && leader.state !== 'Z' && leader.state !== 'X') {
    if (leader.startTicks !== record.start_ticks) return { kind: 'reused', why: `pid ${record.pid} now belongs to a process started later` }
    if (leader.pgrp !== record.pid) return { kind: 'reused', why: `pid ${record.pid} left its process group` }
    return { kind: 'ours', members: groupMembers(record.pid) }
  }
  const members = groupMembers(record.pid).filter((pid) => (procStat(pid)?.startTicks ?? -1) >= record.start_ticks)
  return members.length > 0 ? { kind: 'ours', members } : { kind: 'gone' }
}

/**
 * Process groups a dead sidecar left running, from the records in `dir` (identity checked): the
 * next sidecar ends them before starting anything, so the ports they hold are not "in use by
 * another program" for `check` and `serve`'s preflight. Reads only; never signals.
 */
export function leftoverGroups(dir: string): Set<number> {
  const groups = new Set<number>()
  if (stateDirProblem(dir) !== undefined) return groups // serve refuses it (preflight)
  let names: string[]
  try {
    names = readdirSync(dir).filter((n) => /^\d+\.json$/.test(n))
  } catch {
    return groups
  }
  const boot = bootId()
  for (const name of names) {
    try {
      if (stateFileProblem(join(dir, name)) !== undefined) continue
      const record = JSON.parse(readFileSync(join(dir, name), 'utf8')) as ChildRecord
      const owner = procStat(record.owner.pid)
      if (owner && owner.startTicks === record.owner.start_ticks && owner.state !== 'Z') continue // its sidecar runs
      if (identify(record, boot).kind === 'ours') groups.add(record.pid)
    } catch {
      // unreadable: the sidecar removes it at start
    }
  }
  return groups
}

export class ChildRecords {
  private readonly self: { pid: number; start_ticks: number }
  private readonly boot = bootId()
  private usable = true

  constructor(
    readonly dir: string,
    private readonly log: Logger,
  ) {
    this.self = { pid: process.pid, start_ticks: procStat(process.pid)?.startTicks ?? 0 }
  }

  private file(pid: number): string {
    return join(this.dir, `${pid}.json`)
  }

  /** Record a child the moment it is spawned. Never throws: recovery is best effort. */
  save(entry: Omit<ChildRecord, 'version' | 'start_ticks' | 'boot_id' | 'owner' | 'started_at'>): void {
    if (!this.usable) return
    const start = procStat(entry.pid)?.startTicks
    if (start === undefined) return // already gone
    const record: ChildRecord = { version: 1, ...entry, start_ticks: start, boot_id: this.boot, owner: this.self, started_at: new Date().toISOString() }
    const target = this.file(entry.pid)
    try {
      mkdirSync(this.dir, { recursive: true, mode: 0o700 })
      writePrivateFile(target, `${JSON.stringify(record)}\n`)
    } catch (err) {
      this.usable = false
      this.log.warn({ state_dir: this.dir, err: (err as Error).message }, 'cannot write the state directory: children are not recorded, so a crash of the sidecar would leave them running')
    }
  }

  remove(pid: number): void {
    rmSync(this.file(pid), { force: true })
  }

  private read(): { file: string; record: ChildRecord | undefined }[] {
    // Records name the process groups to signal: only believe ones no other user could plant.
    const problem = stateDirProblem(this.dir, 'state_dir')
    if (problem) {
      this.log.error({ state_dir: this.dir }, `crash recovery skipped: ${problem}`)
      return []
    }
    let names: string[]
    try {
      names = readdirSync(this.dir).filter((n) => /^\d+\.json$/.test(n))
    } catch {
      return []
    }
    return names.flatMap((name) => {
      const file = join(this.dir, name)
      const untrusted = stateFileProblem(file)
      if (untrusted) {
        this.log.warn({ file }, `child record ignored: ${untrusted}`)
        return []
      }
      try {
        const record = JSON.parse(readFileSync(file, 'utf8')) as ChildRecord
        return [{ file, record: record.version === 1 && Number.isInteger(record.pid) && record.pid > 1 ? record : undefined }]
      } catch {
        return [{ file, record: undefined }]
      }
    })
  }

  /**
   * End every process group a dead sidecar left. Resolves when they are gone (or SIGKILLed and
   * still not reaped after 5 s, which is logged).
   */
  async endLeftovers(): Promise<number> {
    let ended = 0
    await Promise.all(
      this.read().map(async ({ file, record }) => {
        if (!record) {
          this.log.warn({ file }, 'unreadable child record ignored and removed')
          rmSync(file, { force: true })
          return
        }
        // Its sidecar still runs (this one — another process provider, a reload — or another
        // sidecar sharing the directory): not a leftover.
        const owner = procStat(record.owner.pid)
        if (owner && owner.startTicks === record.owner.start_ticks && owner.state !== 'Z') return
        const verdict = identify(record, this.boot)
        if (verdict.kind === 'reused') {
          this.log.info({ app: record.app, pid: record.pid, why: verdict.why }, 'recorded child is gone (pid reused); not touching it')
        } else if (verdict.kind === 'ours') {
          await this.end(record, verdict.members)
          ended++
        }
        rmSync(file, { force: true })
      }),
    )
    return ended
  }

  private async end(record: ChildRecord, members: number[]): Promise<void> {
    const log = this.log.child({ app: record.app, replica: record.replica, pid: record.pid })
    log.warn({ members, owner_pid: record.owner.pid, started_at: record.started_at }, 'a previous sidecar left this process running; stopping it')
    const signal = record.stop_signal as NodeJS.Signals
    signalGroup(record.pid, signal)
    signalGroup(record.pid, 'SIGCONT') // a paused group must run to handle the signal
    if (await groupGone(record.pid, record.grace_ms)) {
      log.info({ signal }, 'left-over process stopped')
      return
    }
    signalGroup(record.pid, 'SIGKILL')
    if (await groupGone(record.pid, 5000)) log.warn({ grace_ms: record.grace_ms }, 'left-over process ignored its stop signal; killed')
    else log.error({ members: groupMembers(record.pid) }, 'left-over process group survived SIGKILL')
  }
}
