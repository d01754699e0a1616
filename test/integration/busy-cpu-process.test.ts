/**
 * busy_cpu with a real process (issue 26): an app that burns CPU with no HTTP traffic is kept
 * awake, each refusal a `sleep.refused` event with reason busy, counted in the metrics and shown
 * by the admin API the status page reads; once it stops burning it sleeps.
 */
import assert from 'node:assert/strict'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { freePort } from '../helpers/net.js'
import { testSecret } from '../helpers/secret.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const TOKEN = testSecret()

// busy_cpu 5 %: the burner spins one core, but the suite runs beside other work on 2 cores: at a
// load of 16 (seen in CI set-up) it got about 12 % of a core, under the 20 % this test once used.
describe('busy_cpu: a process app busy with no HTTP traffic', () => {
  let sc: TestSidecar
  const events: LifecycleEvent[] = []
  let burn = ''

  before(async () => {
    const port = await freePort()
    sc = await startTestSidecar(
      `min_idle_timeout: 1s\nadmin: { token: ${TOKEN} }\ndefaults: { wake_timeout: 10s, busy_cpu: 5% }\nproviders:\n  process:\n    apps:\n` +
        `      - { name: burner, hosts: [burner.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: burner, BURN_FILE: "{{dir}}/burn" }, port: ${port}, stdout: "null", grace_period: 2s, idle_timeout: 2s }\n`,
      { accessLog: false },
    )
    burn = join(sc.dir, 'burn')
    sc.sidecar.registry.events.subscribe((e) => void events.push(e))
  })
  after(async () => {
    await sc?.close()
  })

  const admin = async (path: string) => (await request(`${sc.url}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } })).body.text()

  it('refuses to sleep with reason busy while it burns CPU, and sleeps once it stops', async () => {
    writeFileSync(burn, '')
    const app = sc.sidecar.registry.get('process:burner')
    assert.ok(app)
    await sc.sidecar.registry.wake(app)
    const refusals = () => events.filter((e) => e.type === 'sleep.refused' && e.reason === 'busy')
    await until(() => refusals().length >= 2, 'two busy refusals (two idle windows)', 20_000)
    assert.equal(app.phase, 'running')
    assert.equal(events.filter((e) => e.type === 'sleep.done').length, 0)
    const first = refusals()[0]
    assert.ok(first?.type === 'sleep.refused' && (first.cpu_pct ?? 0) >= 5, JSON.stringify(first))
    const status = JSON.parse(await admin('/_relight/admin/backends/process:burner')) as { last_sleep_refused?: { reason: string; cpu_pct?: number } }
    assert.equal(status.last_sleep_refused?.reason, 'busy')
    assert.match(await admin('/_relight/metrics'), /relight_sleep_refusals_total\{provider="process",backend="burner",reason="busy"\} [2-9]/)
    rmSync(burn)
    await until(() => app.phase === 'asleep', 'the app to sleep once idle', 20_000)
  })
})
