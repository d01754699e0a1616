/** Crash-recovery records: identity checks on real processes (a reused pid is never touched). */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pino from 'pino'
import { procStat } from '../../sidecar/core/proc-stat.js'
import { bootId, type ChildRecord, ChildRecords, identify } from '../../sidecar/providers/process/child-records.js'
import { tempDir } from '../helpers/net.js'
import { pidAlive, until } from '../helpers/wait.js'

const silent = pino({ level: 'silent' })

function leader() {
  const child = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' })
  const pid = child.pid as number
  return { pid, stat: () => procStat(pid), kill: () => child.kill('SIGKILL') }
}

function record(pid: number, start: number, extra: Partial<ChildRecord> = {}): ChildRecord {
  return {
    version: 1,
    app: 'a',
    replica: 0,
    pid,
    start_ticks: start,
    boot_id: bootId(),
    config_hash: 'x',
    stop_signal: 'SIGTERM',
    grace_ms: 1000,
    owner: { pid: 999_999_999, start_ticks: 1 },
    started_at: new Date().toISOString(),
    ...extra,
  }
}

describe('child records', () => {
  it('a running leader with the recorded start time is ours; another start time is a reused pid', async (t) => {
    const p = leader()
    t.after(p.kill)
    await until(() => p.stat(), 'the process to appear')
    const start = p.stat()?.startTicks as number
    assert.equal(identify(record(p.pid, start)).kind, 'ours')
    assert.equal(identify(record(p.pid, start - 1)).kind, 'reused')
    assert.equal(identify(record(p.pid, start, { boot_id: 'another-boot' })).kind, 'gone')
  })

  it('endLeftovers stops a recorded group, never a reused pid, and keeps records of a live sidecar', async (t) => {
    const tmp = tempDir()
    t.after(tmp.remove)
    const ours = leader()
    const reused = leader()
    const others = leader()
    t.after(() => [ours, reused, others].forEach((p) => p.kill()))
    await until(() => ours.stat() && reused.stat() && others.stat(), 'the processes to appear')
    const self = { pid: process.pid, start_ticks: procStat(process.pid)?.startTicks as number }
    const dir = join(tmp.dir, 'process')
    const records = new ChildRecords(dir, silent)
    // a child of a dead sidecar, a pid reused by an unrelated process, a live sidecar's child
    records.save({ app: 'ours', replica: 0, pid: ours.pid, config_hash: 'h', stop_signal: 'SIGTERM', grace_ms: 1000 })
    const write = (r: ChildRecord) => writeFileSync(join(dir, `${r.pid}.json`), JSON.stringify(r))
    const dead = { pid: 999_999_999, start_ticks: 1 }
    const saved = JSON.parse(readFileSync(join(dir, `${ours.pid}.json`), 'utf8')) as ChildRecord
    write({ ...saved, owner: dead })
    write(record(reused.pid, (reused.stat()?.startTicks as number) - 5, { owner: dead }))
    write(record(others.pid, others.stat()?.startTicks as number, { owner: self, app: 'live' }))
    // "self" (this test process) stands for a live sidecar: this one or another
    assert.equal(await new ChildRecords(dir, silent).endLeftovers(), 1)
    await until(() => !pidAlive(ours.pid), 'the left-over group to be stopped')
    assert.ok(pidAlive(reused.pid), 'a reused pid is never signalled')
    assert.ok(pidAlive(others.pid), "a live sidecar's child is left alone")
    assert.deepEqual(readdirSync(dir), [`${others.pid}.json`])
  })
})
