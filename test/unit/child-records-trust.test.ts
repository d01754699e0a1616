import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { stateDirProblem, stateFileProblem } from '../../sidecar/config/state-dir.js'
import { procStat } from '../../sidecar/core/proc-stat.js'
import { bootId, ChildRecords, leftoverGroups } from '../../sidecar/providers/process/child-records.js'
import { runningSidecarPid } from '../../sidecar/reload-client.js'
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
})
