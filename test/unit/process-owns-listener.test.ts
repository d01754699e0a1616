/**
 * ProcessProvider.ownsListener reads the replica's pid, then awaits /proc reads (up to a second
 * under load). A crash restart (first backoff 0 s) may meanwhile start a new process of the same
 * app on the port: that one must not be named "another program" (review of issue 25). The
 * replica's pid is swapped through a getter, at the point the real race would swap it.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { processConfigSchema } from '../../sidecar/providers/process/config.js'
import { ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { tcpPortHolder } from '../../sidecar/startup/port-holder.js'
import { freePort } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
/** Above any pid_max (2^22): a process group with no member. */
const GONE_PID = 4_194_999

describe('process ownsListener after its /proc reads', () => {
  it('a replica restarted during the check is probed again, not reported as another program; an aborted wake logs nothing', async (t) => {
    const port = await freePort()
    // the "new process": its own process group (detached), listening on the app's port
    const fresh: ChildProcess = spawn(process.execPath, [APP], { env: { ...process.env, PORT: String(port) }, detached: true, stdio: 'ignore' })
    t.after(() => fresh.kill('SIGKILL'))
    await until(() => tcpPortHolder(port)?.pid === fresh.pid, 'the new process to listen')
    const warnings: string[] = []
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) })
    const provider = new ProcessProvider(
      processConfigSchema.parse({ apps: [{ name: 'web', hosts: ['web.localhost'], command: [process.execPath, APP], port, stdout: 'null', stderr: 'null', restart: 'never' }] }),
      log,
    )
    t.after(() => provider.close())
    const replica = (provider as unknown as { apps: Map<string, { replicas: object[] }> }).apps.get('web')?.replicas[0]
    assert.ok(replica)
    let pids: number[] = []
    Object.defineProperty(replica, 'pid', { configurable: true, get: () => (pids.length > 1 ? pids.shift() : pids[0]) })
    const upstream = `127.0.0.1:${port}`

    // control: the replica's group holds nothing there, and stays the replica: another program
    pids = [GONE_PID]
    await assert.rejects(provider.ownsListener('web', upstream), (err: Error & { code?: string }) => err.code === 'RELIGHT_ERR_PORT_IN_USE' && err.message.includes(`pid ${fresh.pid}`))
    assert.equal(warnings.length, 1)

    // the replica crashed after the first read, and its restart is what listens: probe again
    warnings.length = 0
    pids = [GONE_PID, fresh.pid as number]
    assert.equal(await provider.ownsListener('web', upstream), false)
    assert.deepEqual(warnings, [])

    // the wake was aborted during the reads: no warning, no error (waitReady throws the abort)
    pids = [GONE_PID]
    const aborted = new AbortController()
    aborted.abort(new Error('wake aborted'))
    assert.equal(await provider.ownsListener('web', upstream, aborted.signal), false)
    assert.deepEqual(warnings, [])

    // the listener is the replica's own group's
    pids = [fresh.pid as number]
    assert.equal(await provider.ownsListener('web', upstream), true)
  })
})
