import assert from 'node:assert/strict'
import { readdirSync, readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import pino from 'pino'
import { processConfigSchema } from '../../sidecar/config/../providers/process/config.js'
import { ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { until } from '../helpers/wait.js'

const silent = pino({ level: 'silent' })
const marker = `review2-leak-${process.pid}-${Date.now()}`

/** pids whose command line carries `tag`. */
function withTag(tag: string): number[] {
  const out: number[] = []
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      if (readFileSync(`/proc/${d}/cmdline`, 'latin1').includes(tag)) out.push(Number(d))
    } catch {}
  }
  return out
}

/** Whether a child of `pid` runs `sleep 0.5` (the TERM trap): the process has been asked to stop. */
function trapRunning(pid: number): boolean {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const ppid = Number(/^PPid:\s+(\d+)/m.exec(readFileSync(`/proc/${d}/status`, 'utf8'))?.[1])
      if (ppid === pid && readFileSync(`/proc/${d}/cmdline`, 'latin1') === 'sleep\u00000.5\u0000') return true
    } catch {}
  }
  return false
}

/**
 * An always_on app is reconfigured (replace: stop the old process — it takes a moment — then
 * start the new one) and, before the old one has exited, removed by a second reload. The new
 * process is started anyway, is in neither `apps` nor `retiring`, and outlives close().
 */
describe('process app removed while its reconfiguration is replacing it', () => {
  it('leaves nothing running after the provider is closed', async (t) => {
    // Exits 0.5 s after SIGTERM (a graceful shutdown), so the replacement waits for it.
    const entry = (label: string) => ({
      name: 'slow', always_on: true, grace_period: '5s', stdout: 'null', stderr: 'null',
      command: ['sh', '-c', 'trap "sleep 0.5; exit 0" TERM; while :; do sleep 0.05; done', `${marker}-${label}`],
    })
    const p = new ProcessProvider(processConfigSchema.parse({ apps: [entry('one')] }), silent)
    t.after(() => {
      for (const pid of withTag(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
    })
    await p.wake('slow', AbortSignal.timeout(10_000))
    assert.equal(withTag(`${marker}-one`).length > 0, true)
    p.applyConfig(processConfigSchema.parse({ apps: [entry('two')] })) // reload 1: replace (always_on: restart now)
    // reload 2 must land while the replacement waits for the old process: wait until it got SIGTERM
    const [oldPid] = withTag(`${marker}-one`)
    await until(() => oldPid !== undefined && trapRunning(oldPid), 'the old process to be asked to stop', 5000, 5) // seen only inside its 0.5 s trap, so still in time
    p.applyConfig(processConfigSchema.parse({ apps: [] })) // reload 2: the app is removed
    await until(() => withTag(`${marker}-one`).length === 0, 'the old process to exit')
    await new Promise((r) => setImmediate(r)) // the replacement continues after the exit
    await p.close()
    assert.deepEqual(withTag(`${marker}-two`), [], 'the removed app\'s new process is still running after close()')
  })
})
