import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { stateDirProblem, stateFileProblem } from '../../sidecar/config/state-dir.js'
import { procStat } from '../../sidecar/core/proc-stat.js'
import { bootId, ChildRecords, leftoverGroups } from '../../sidecar/providers/process/child-records.js'
import { runningSidecarPid, writePidFile } from '../../sidecar/reload-client.js'
import type { Config } from '../../sidecar/config/schema.js'
import { pidAlive } from '../helpers/wait.js'

/**
 * The state directory defaults to the directory of a unix listen socket. With a socket in a
 * shared directory (or a state_dir another user can write), anyone who can write a JSON file
 * there chooses which process group the (root) sidecar SIGTERMs and SIGKILLs at start-up: the
 * identity check only compares the record with /proc, which every user can read.
 */
describe('crash recovery believes only records no other user could plant', () => {
  const dir = mkdtempSync(join(tmpdir(), 'review2-state-'))
  const victim = spawn('sleep', ['60'], { detached: true, stdio: 'ignore' }) // its own group: a stand-in for sshd
  after(() => {
    try {
      process.kill(-victim.pid!, 'SIGKILL')
    } catch {}
    rmSync(dir, { recursive: true, force: true })
  })

  it('a record planted by someone else (world-writable dir) must not make the sidecar kill a foreign group', async () => {
    chmodSync(dir, 0o1777) // like /tmp, or a pre-created directory another user owns
    const pid = victim.pid!
    const stat = procStat(pid)!
    const forged = {
      version: 1, app: 'x', replica: 0, pid, start_ticks: stat.startTicks, boot_id: bootId(),
      config_hash: '0', stop_signal: 'SIGKILL', grace_ms: 10,
      owner: { pid: 999_999_999, start_ticks: 0 }, // "a dead sidecar"
      started_at: new Date().toISOString(),
    }
    writeFileSync(join(dir, `${pid}.json`), JSON.stringify(forged))
    // endLeftovers() resolves once every group it ends is gone (stop signal, grace, SIGKILL), so
    // its count and the victim's state afterwards are the whole answer: no window to wait out.
    const ended = await new ChildRecords(dir, pino({ level: 'silent' })).endLeftovers()
    assert.equal(ended, 0, 'the sidecar ended a process group named by a file it did not write')
    assert.equal(pidAlive(pid), true, 'the sidecar killed a process group named by a file it did not write')
  })

  it('a record that is a symlink is ignored (and leftoverGroups skips it)', async () => {
    chmodSync(dir, 0o700)
    const pid = victim.pid!
    rmSync(join(dir, `${pid}.json`), { force: true }) // the first test's record, left alone
    const stat = procStat(pid)!
    const target = join(dir, 'elsewhere')
    writeFileSync(target, JSON.stringify({
      version: 1, app: 'x', replica: 0, pid, start_ticks: stat.startTicks, boot_id: bootId(),
      config_hash: '0', stop_signal: 'SIGKILL', grace_ms: 10, owner: { pid: 999_999_999, start_ticks: 0 }, started_at: new Date().toISOString(),
    }))
    symlinkSync(target, join(dir, `${pid}.json`))
    assert.equal(leftoverGroups(dir).has(pid), false)
    assert.match(stateFileProblem(join(dir, `${pid}.json`)) ?? '', /symbolic link/)
    assert.equal(await new ChildRecords(dir, pino({ level: 'silent' })).endLeftovers(), 0)
    assert.equal(procStat(pid) !== undefined, true, 'the victim still runs')
    rmSync(join(dir, `${pid}.json`))
  })

  it('a group- or world-writable state_dir is a start-up problem naming state_dir', () => {
    const shared = join(dir, 'shared')
    mkdirSync(shared)
    chmodSync(shared, 0o777)
    assert.match(stateDirProblem(shared) ?? '', /^state_dir: .*writable by every user/)
    chmodSync(shared, 0o770)
    assert.match(stateDirProblem(shared) ?? '', /^state_dir: .*writable by its group/)
    chmodSync(shared, 0o755)
    assert.equal(stateDirProblem(shared), undefined)
    assert.equal(stateDirProblem(join(dir, 'missing')), undefined, 'the sidecar creates it, owner-only')
  })

  it('reload does not believe a pid file in a writable directory or one that is a symlink', () => {
    const state = join(dir, 'pidstate')
    mkdirSync(state, { mode: 0o700 })
    const record = JSON.stringify({ pid: victim.pid, start_ticks: procStat(victim.pid!)!.startTicks })
    writeFileSync(join(state, 'real.pid'), record)
    symlinkSync(join(state, 'real.pid'), join(state, 'sidecar.pid'))
    const config = { state_dir: state, listen: '127.0.0.1:0' } as unknown as Config
    assert.match((runningSidecarPid(config, dir) as { error: string }).error, /symbolic link/)
    rmSync(join(state, 'sidecar.pid'))
    writeFileSync(join(state, 'sidecar.pid'), record)
    assert.deepEqual(runningSidecarPid(config, dir), { pid: victim.pid })
    chmodSync(state, 0o777)
    assert.match((runningSidecarPid(config, dir) as { error: string }).error, /^state_dir: .*writable/)
  })

  // Issue 23 item 3: an owned file that other users may rewrite is as good as theirs.
  it('a record or pid file writable by group or others is not believed, even when root owns it', async () => {
    const state = join(dir, 'modes')
    mkdirSync(state, { mode: 0o700 })
    const pid = victim.pid!
    const stat = procStat(pid)!
    const file = join(state, `${pid}.json`)
    writeFileSync(file, JSON.stringify({
      version: 1, app: 'x', replica: 0, pid, start_ticks: stat.startTicks, boot_id: bootId(),
      config_hash: '0', stop_signal: 'SIGKILL', grace_ms: 10, owner: { pid: 999_999_999, start_ticks: 0 }, started_at: new Date().toISOString(),
    }))
    chmodSync(file, 0o666)
    assert.match(stateFileProblem(file) ?? '', /writable by every user \(mode 666\)/)
    assert.equal(leftoverGroups(state).has(pid), false)
    assert.equal(await new ChildRecords(state, pino({ level: 'silent' })).endLeftovers(), 0)
    assert.equal(procStat(pid) !== undefined, true, 'the victim still runs')
    chmodSync(file, 0o620)
    assert.match(stateFileProblem(file) ?? '', /writable by its group/)
    rmSync(file)

    writeFileSync(join(state, 'sidecar.pid'), JSON.stringify({ pid, start_ticks: stat.startTicks }))
    chmodSync(join(state, 'sidecar.pid'), 0o666)
    const config = { state_dir: state, listen: '127.0.0.1:0' } as unknown as Config
    assert.match((runningSidecarPid(config, dir) as { error: string }).error, /not trusting the pid file: .*writable by every user/)
  })

  it('files the sidecar writes are 0600 whatever existed before', () => {
    const state = join(dir, 'rewrite')
    mkdirSync(state, { mode: 0o700 })
    const config = { state_dir: state, listen: '127.0.0.1:0' } as unknown as Config
    writeFileSync(join(state, 'sidecar.pid'), '{}')
    chmodSync(join(state, 'sidecar.pid'), 0o666)
    const written = writePidFile(config, dir)
    assert.ok(!('error' in written))
    assert.equal(statSync(join(state, 'sidecar.pid')).mode & 0o777, 0o600)
    assert.deepEqual(runningSidecarPid(config, dir), { pid: process.pid })
    // another config sharing the state directory (TCP, no state_dir) does not take it for its own
    const other = { ...config, listen: '127.0.0.1:1' } as Config
    assert.match((runningSidecarPid(other, dir) as { error: string }).error, /names the sidecar listening on 127\.0\.0\.1:0 .*not this config's 127\.0\.0\.1:1/)
    written.remove()

    const records = new ChildRecords(state, pino({ level: 'silent' }))
    const pid = victim.pid!
    writeFileSync(join(state, `${pid}.json`), '{}')
    chmodSync(join(state, `${pid}.json`), 0o666)
    writeFileSync(join(state, `${pid}.json.tmp`), '{}') // the name the old code wrote through
    chmodSync(join(state, `${pid}.json.tmp`), 0o666)
    records.save({ app: 'x', replica: 0, pid, config_hash: '0', stop_signal: 'SIGTERM', grace_ms: 10 })
    assert.equal(statSync(join(state, `${pid}.json`)).mode & 0o777, 0o600)
    assert.equal(stateFileProblem(join(state, `${pid}.json`)), undefined)
    rmSync(join(state, `${pid}.json`))
  })
})
