/**
 * Schedules through real Caddy with process apps and the real clock (issue 26 item 3): a window
 * from an hour ago to two hours ahead (UTC, every day). `asleep_during`: a request gets 503
 * RELIGHT_ERR_SCHEDULED_ASLEEP with Retry-After up to the window's end and the app is never
 * started; `awake_during`: the app is started by the sidecar with no request at all. (DST is
 * covered with an injected clock in test/unit/schedule.test.ts.)
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))

const hhmm = (t: number) => new Date(t).toISOString().slice(11, 16)

describe('awake_during and asleep_during through Caddy', { skip: caddySkip() }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  const minute = Math.floor(Date.now() / 60_000) * 60_000
  const end = minute + 2 * 3600_000
  const window = `${hhmm(minute - 3600_000)}-${hhmm(end)} UTC`

  before(async () => {
    const app = async (name: string, key: string) =>
      `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${await freePort()}, stdout: "null", ${key}: "${window}" }\n`
    sc = await startTestSidecar(`defaults: { wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n${await app('night', 'asleep_during')}${await app('office', 'awake_during')}`)
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  it('asleep_during: 503 RELIGHT_ERR_SCHEDULED_ASLEEP with Retry-After to the window end; the app is not started', async (t) => {
    const res = await request(caddy.url, { headers: { host: 'night.localhost' } })
    const body = await res.body.text()
    const retryAfter = Number(res.headers['retry-after'])
    t.diagnostic(`window ${window}: ${res.statusCode} ${String(res.headers['x-relight-reply'])} Retry-After ${retryAfter}`)
    assert.equal(res.statusCode, 503)
    assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_SCHEDULED_ASLEEP')
    const expected = (end - Date.now()) / 1000
    assert.ok(Math.abs(retryAfter - expected) < 5, `Retry-After ${retryAfter}, expected about ${expected}`)
    assert.match(JSON.parse(body).detail, new RegExp(`until \\w{3} ${hhmm(end)} UTC`))
    const page = await request(caddy.url, { headers: { host: 'night.localhost', accept: 'text/html' } })
    assert.match(await page.body.text(), /asleep by schedule/)
    const night = sc.sidecar.registry.get('process:night')
    assert.equal(night?.phase, 'asleep')
    assert.equal(night?.counters.wakes, 0)
  })

  it('awake_during: started by the sidecar with no request, then served without a wake', async () => {
    const office = sc.sidecar.registry.get('process:office')
    await until(() => office?.phase === 'running', 'office woken for its window')
    const res = await request(caddy.url, { headers: { host: 'office.localhost' } })
    assert.equal(res.statusCode, 200)
    assert.match(await res.body.text(), /^office pid/)
    assert.equal(office?.counters.wakes, 1)
  })
})
