/**
 * A sidecar whose stdout reader has gone (a closed pipe) still stops on SIGTERM. pino flushes
 * synchronously at exit, and sonic-boom retried the EPIPE every 100 ms for ever: the process
 * hung (seen for 9 minutes). Now the flush drops what nobody can read and the exit is clean.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { freePort, tempDir } from '../helpers/net.js'
import { startSidecarProcess, type SidecarProcess } from '../helpers/sidecar-process.js'

describe('stdout closed under the sidecar', () => {
  const tmp = tempDir('relight-epipe-')
  let sc: SidecarProcess | undefined
  after(async () => {
    if (sc && sc.child.exitCode === null && sc.child.signalCode === null) {
      sc.child.kill('SIGKILL')
      await sc.exited
    }
    tmp.remove()
  })

  it('SIGTERM after the log reader went away: exit 0, not a hang', async () => {
    const file = join(tmp.dir, 'relight.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\n`)
    sc = await startSidecarProcess(file)
    sc.child.stdout?.destroy() // the reader (journald, a shell pipe) is gone
    sc.child.kill('SIGTERM')
    let timer: NodeJS.Timeout | undefined
    const hung = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve('still running 20 s after SIGTERM'), 20_000)
    })
    const outcome = await Promise.race([sc.exited, hung])
    clearTimeout(timer)
    assert.equal(outcome, 0, 'the sidecar exits cleanly')
  })
})
