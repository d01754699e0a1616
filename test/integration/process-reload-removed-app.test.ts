import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pino from 'pino'
import { processConfigSchema } from '../../sidecar/config/../providers/process/config.js'
import { ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

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

/**
 * An always_on app is reconfigured (replace: stop the old process — it takes a moment — then
 * start the new one) and, before the old one has exited, removed by a second reload. The new
 * process is started anyway, is in neither `apps` nor `retiring`, and outlives close().
 */
describe('process app removed while its reconfiguration is replacing it', () => {
  it('leaves nothing running after the provider is closed', async (t) => {
    const tmp = tempDir('relight-removed-app-')
    const asked = join(tmp.dir, 'asked-to-stop')
    const release = join(tmp.dir, 'release')
    const trapped = join(tmp.dir, 'trapped')
    // On SIGTERM the app says so (a file) and shuts down only once the test releases it, so the
    // replacement is still waiting for it when reload 2 lands: no time window to catch. It also
    // ends with this test's process, and is never restarted: a leaked one (the bug) that the
    // after hook kills does not come back and keep the file running.
    const entry = (label: string) => ({
      name: 'slow', always_on: true, restart: 'never', grace_period: '20s', stdout: 'null', stderr: 'null',
      command: ['sh', '-c', `trap 'touch ${asked}; until [ -e ${release} ] || ! kill -0 ${process.pid} 2>/dev/null; do sleep 0.02; done; exit 0' TERM; touch ${trapped}; while kill -0 ${process.pid} 2>/dev/null; do sleep 0.05; done`, `${marker}-${label}`],
    })
    const lines: string[] = []
    const p = new ProcessProvider(processConfigSchema.parse({ apps: [entry('one')] }), pino({ level: 'info' }, { write: (s: string) => void lines.push(s) }))
    t.after(async () => {
      writeFileSync(release, '')
      p.terminateNow()
      for (const pid of withTag(marker)) try { process.kill(pid, 'SIGKILL') } catch {}
      tmp.remove()
    })
    await p.wake('slow', AbortSignal.timeout(10_000))
    assert.equal(withTag(`${marker}-one`).length > 0, true)
    // A TERM that lands before the shell set its trap ends it without the file (seen under load).
    await until(() => existsSync(trapped), 'the old process to set its TERM trap')
    p.applyConfig(processConfigSchema.parse({ apps: [entry('two')] })) // reload 1: replace (always_on: restart now)
    await until(() => existsSync(asked), 'the old process to be asked to stop (its TERM trap writes a file)')
    p.applyConfig(processConfigSchema.parse({ apps: [] })) // reload 2: the app is removed
    writeFileSync(release, '') // the old process may exit now; the replacement continues after it
    // The removal's stop runs after the replacement on the app's chain: once it is logged, the
    // replacement has done whatever it was going to do.
    await until(() => lines.some((l) => l.includes('"removed app stopped"')), 'the provider to log that the removed app stopped')
    await p.close()
    assert.deepEqual(withTag(`${marker}-two`), [], 'the removed app\'s new process is still running after close()')
  })
})
