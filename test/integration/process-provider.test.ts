/** The process provider with real child processes: caddy-supervisor parity. */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it, type TestContext } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { request } from 'undici'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { processConfigSchema } from '../../sidecar/providers/process/config.js'
import { lookupUser, ProcessProvider } from '../../sidecar/providers/process/provider.js'
import { waitReady } from '../../sidecar/core/readiness.js'
import { freePort, freePortRun, tempDir } from '../helpers/net.js'
import { pidAlive, until } from '../helpers/wait.js'

/** The file's text, or '' while it does not exist yet. */
function read(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch {
    return ''
  }
}

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const silent = pino({ level: 'silent' })

/** A provider whose children are stopped after the test, pass or fail (close is idempotent). */
function provider(t: TestContext, apps: unknown[], logger = silent) {
  const p = new ProcessProvider(processConfigSchema.parse({ apps }), logger)
  const events: ProviderEvent[] = []
  const watching = new AbortController()
  p.watch((e) => events.push(e), watching.signal)
  const close = async () => {
    watching.abort()
    await p.close()
  }
  t.after(close)
  return { p, events, close }
}
const signal = () => AbortSignal.timeout(10_000)

describe('process provider', () => {
  it('restarts a failing app under on_failure, with the exit code as the reason', async (t) => {
    const tmp = tempDir()
    const { p, events, close } = provider(t, [{ name: 'crash', command: ['sh', '-c', `echo run >> ${tmp.dir}/runs; exit 3`], restart: 'on_failure' }])
    await p.wake('crash', signal())
    await until(() => read(`${tmp.dir}/runs`).split('\n').length > 2, 'a restart')
    assert.ok(events.some((e) => e.type === 'state' && e.reason === 'exited with code 3'))
    await close()
    tmp.remove()
  })

  it('does not spin when an app exits cleanly under restart: always (backoff 0 s, 1 s, 2 s…)', async (t) => {
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(s) })
    const { p, close } = provider(t, [{ name: 'quick', command: ['sh', '-c', 'exit 0'], restart: 'always' }], logger)
    const logged = (msg: string) => lines.map((l) => JSON.parse(l) as { msg: string; time: number; restart_in_ms?: number }).filter((l) => l.msg === msg)
    await p.wake('quick', signal())
    // The supervisor says each delay it chose; three exits take about 1 s (0 s, then 1 s).
    await until(() => logged('process exited with code 0; restarting').length >= 3, 'three restarts to be scheduled')
    const restarts = logged('process exited with code 0; restarting')
    assert.deepEqual(restarts.slice(0, 3).map((r) => r.restart_in_ms), [0, 1000, 2000])
    // …and keeps to them: the third start came at least 1 s after the second (load only adds).
    const starts = logged('process started')
    assert.ok(starts.length >= 3, `${starts.length} starts`)
    const gap = (starts[2]?.time ?? 0) - (starts[1]?.time ?? 0)
    assert.ok(gap >= 995, `the third start came ${gap} ms after the second, before its 1 s backoff`)
    await close()
  })

  it('does not restart under restart: never or after a clean exit under on_failure', async (t) => {
    const { p, close } = provider(t, [
      { name: 'never', command: ['sh', '-c', 'exit 1'], restart: 'never' },
      { name: 'clean', command: ['sh', '-c', 'exit 0'], restart: 'on_failure' },
    ])
    await p.wake('never', signal())
    await p.wake('clean', signal())
    await until(async () => (await p.list(signal())).every((b) => b.state === 'stopped'), 'both to stop')
    await close()
  })

  it('runs replicas on port + N with templates, and spreads them as upstreams', async (t) => {
    const port = await freePortRun(2) // replica 1 listens on port + 1
    const port2 = port + 1
    const { p, close } = provider(t, [
      { name: 'rep', hosts: ['rep.localhost'], command: [process.execPath, APP], env: { PORT: '{{port}}', NAME: 'r{{replica}}' }, port, replicas: 2, stdout: 'null' },
    ])
    await p.wake('rep', signal())
    const info = (await p.list(signal()))[0]
    assert.deepEqual(info?.upstreams, [`127.0.0.1:${port}`, `127.0.0.1:${port2}`])
    const bodies = []
    for (const u of info?.upstreams ?? []) {
      await waitReady(u, 'tcp', signal())
      bodies.push(await (await request(`http://${u}/`)).body.text())
    }
    assert.match(bodies[0] ?? '', /^r0 pid/)
    assert.match(bodies[1] ?? '', /^r1 pid/)
    await close()
  })

  it('writes stdout to a file or to the log', async (t) => {
    const tmp = tempDir()
    const lines: string[] = []
    const logger = pino({ level: 'info' }, { write: (s: string) => lines.push(s) })
    const { p, close } = provider(
      t,
      [
        { name: 'tofile', command: ['sh', '-c', 'echo to-the-file'], restart: 'never', stdout: `file:${join(tmp.dir, 'out.txt')}` },
        { name: 'tolog', command: ['sh', '-c', 'echo to-the-log >&2'], restart: 'never', stderr: 'log' },
      ],
      logger,
    )
    await p.wake('tofile', signal())
    await p.wake('tolog', signal())
    await until(() => read(join(tmp.dir, 'out.txt')) === 'to-the-file\n', 'the output file')
    await until(() => lines.some((l) => l.includes('"msg":"to-the-log"') && l.includes('"stream":"stderr"')), 'the log line')
    await close()
    tmp.remove()
  })

  it('runs the app as another user when root', { skip: process.getuid?.() === 0 ? false : 'needs root to switch users' }, async (t) => {
    const nobody = lookupUser('nobody')
    assert.ok(nobody, 'Debian has the nobody user')
    const tmp = tempDir()
    const { p, close } = provider(t, [{ name: 'asuser', command: ['sh', '-c', 'id -u; sleep 30'], user: 'nobody', restart: 'never', stdout: `file:${tmp.dir}/id`, dir: '/' }])
    await p.wake('asuser', signal())
    await until(() => read(`${tmp.dir}/id`).trim() === String(nobody.uid), 'the uid line')
    await close()
    tmp.remove()
  })

  it('refuses to start an app whose user does not exist, rather than run it as the sidecar user', async (t) => {
    const { p } = provider(t, [{ name: 'typo', command: ['sh', '-c', 'sleep 30'], user: 'no-such-user-relight', restart: 'never' }])
    await assert.rejects(p.wake('typo', signal()), (e: unknown) => e instanceof Error && /user "no-such-user-relight" does not exist/.test(e.message))
    assert.equal((await p.list(signal()))[0]?.state, 'stopped')
  })

  it('kills the whole process group on stop, grandchildren included, after the grace period', async (t) => {
    const port = await freePort()
    const tmp = tempDir()
    const { p, close } = provider(t, [
      {
        name: 'family',
        command: [process.execPath, APP],
        env: { PORT: '{{port}}', SPAWN_GRANDCHILD: '1', IGNORE_TERM: '1' },
        port,
        grace_period: '200ms',
        stdout: `file:${tmp.dir}/out`,
      },
    ])
    await p.wake('family', signal())
    const grandchild = Number(await until(() => /grandchild (\d+)/.exec(read(`${tmp.dir}/out`))?.[1], 'the grandchild'))
    assert.ok(pidAlive(grandchild))
    await p.sleep('family', 'stop', signal())
    assert.equal(pidAlive(grandchild), false)
    assert.equal((await p.list(signal()))[0]?.state, 'stopped')
    await close()
    tmp.remove()
  })

  it('starts always_on apps with the sidecar (supervised, never slept)', async (t) => {
    const { startTestSidecar } = await import('../helpers/sidecar.js')
    const port = await freePort()
    const sc = await startTestSidecar(
      `min_idle_timeout: 100ms\ndefaults: { idle_timeout: 100ms }\nproviders:\n  process:\n    apps:\n      - { name: worker, hosts: [worker.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${port}, always_on: true, stdout: "null" }\n`,
    )
    t.after(() => sc.close())
    const b = sc.sidecar.registry.get('process:worker')
    assert.equal(b?.phase, 'running')
    // An idle sweep an hour later by the registry's clock (Date.now) puts nothing to sleep.
    assert.deepEqual(await sc.sidecar.registry.sweep(Date.now() + 3_600_000), [], 'the sweep put an always_on app to sleep')
    assert.equal(b?.phase, 'running')
  })
})
