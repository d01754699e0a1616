/**
 * Ignored traffic through real Caddy (issue 26): an uptime checker polling every 2 s neither keeps
 * a process app awake nor wakes it once it sleeps; its requests are served while the app is awake
 * and answered 503 with Retry-After while it sleeps.
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const skip = caddySkip()
const CHECKER = 'Uptime-Kuma/1.23.11'
const IDLE_MS = 5000

describe('ignored traffic through Caddy', { skip }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  const events: { at: number; event: LifecycleEvent }[] = []

  before(async () => {
    const port = await freePort()
    sc = await startTestSidecar(
      'min_idle_timeout: 1s\ndefaults: { wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n' +
        `      - { name: app, hosts: [app.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: app }, port: ${port}, stdout: "null", grace_period: 2s, idle_timeout: 5s, ignore: [{ user_agent: uptime-kuma }] }\n`,
    )
    sc.sidecar.registry.events.subscribe((event) => void events.push({ at: Date.now(), event }))
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => sc.sidecar.registry.countInflight, 'Caddy to connect its access log')
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  const get = async (agent: string) => {
    const res = await request(`${caddy.url}/`, { headers: { host: 'app.localhost', 'user-agent': agent } })
    return { status: res.statusCode, retryAfter: res.headers['retry-after'], body: await res.body.text() }
  }

  it('an uptime checker every 2 s for 30 s: the app sleeps idle_timeout after the last real request and stays asleep', async (t) => {
    const app = () => sc.sidecar.registry.get('process:app')
    const user = await get('Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0')
    assert.equal(user.status, 200, 'a real request wakes the app')
    await until(() => app()?.inflight === 0, 'Caddy to log the real request')
    const lastReal = Date.now()
    const answers: { at: number; status: number; retryAfter: unknown; phase: string | undefined }[] = []
    const end = lastReal + 30_000
    for (let next = lastReal; next < end; next += 2000) {
      await new Promise((r) => setTimeout(r, Math.max(0, next - Date.now())))
      const phase = app()?.phase
      const res = await get(CHECKER)
      answers.push({ at: Date.now() - lastReal, status: res.status, retryAfter: res.retryAfter, phase })
      assert.equal(app()?.inflight, 0, 'an ignored request is never in flight')
    }
    const slept = events.find((e) => e.event.type === 'sleep.done')
    assert.ok(slept, `the app slept (answers: ${JSON.stringify(answers)})`)
    const sleptAfter = slept.at - lastReal
    t.diagnostic(`slept ${sleptAfter} ms after the last real request; answers ${JSON.stringify(answers.map((a) => [a.at, a.status]))}`)
    // On time: idle_timeout after the last real request, plus a sweep tick and the stop itself.
    assert.ok(sleptAfter >= IDLE_MS - 200 && sleptAfter <= IDLE_MS + 2000, `slept ${sleptAfter} ms after the last real request`)
    const served = answers.filter((a) => a.status === 200)
    assert.ok(served.length >= 2, `served while awake: ${JSON.stringify(answers)}`)
    const asleep = answers.filter((a) => a.at > sleptAfter + 100)
    assert.ok(asleep.length >= 10)
    for (const a of asleep) {
      assert.equal(a.status, 503, JSON.stringify(a))
      assert.equal(a.retryAfter, '60')
    }
    assert.equal(events.filter((e) => e.event.type === 'wake.started').length, 1, 'only the real request woke it')
    assert.equal(app()?.phase, 'asleep')
    assert.equal(sc.sidecar.tickets?.size, 0)
  })
})
