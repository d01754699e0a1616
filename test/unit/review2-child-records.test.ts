import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import pino from 'pino'
import { bootId, ChildRecords, procStat } from '../../sidecar/providers/process/child-records.js'

/**
 * The state directory defaults to the directory of a unix listen socket. With a socket in a
 * shared directory (or a state_dir another user can write), anyone who can write a JSON file
 * there chooses which process group the (root) sidecar SIGTERMs and SIGKILLs at start-up: the
 * identity check only compares the record with /proc, which every user can read.
 */
describe('review2: crash recovery trusts any record in the state directory', () => {
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
    const exited = new Promise((r) => victim.once('exit', () => r('killed')))
    await new ChildRecords(dir, pino({ level: 'silent' })).endLeftovers()
    const outcome = await Promise.race([exited, new Promise((r) => setTimeout(() => r('alive'), 300))])
    assert.equal(outcome, 'alive', 'the sidecar killed a process group named by a file it did not write')
  })
})
