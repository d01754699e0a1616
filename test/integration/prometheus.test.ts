/**
 * A real Prometheus (Debian's) scrapes the sidecar's /_relight/metrics with the bearer token,
 * on loopback, with its own temporary storage; after a real wake through a real Caddy, its HTTP
 * API reports relight_wakes_total for that backend. The scraped text passes promtool too.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy, stopChild } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { prometheusSkip } from '../helpers/prometheus.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { testSecret } from '../helpers/secret.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const TOKEN = testSecret()
const skip = caddySkip() ?? prometheusSkip()

interface Sample {
  metric: Record<string, string>
  value: [number, string]
}

describe('Prometheus scrapes the sidecar', { skip }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  let prometheus: ChildProcess
  let promUrl = ''
  let promOutput = ''
  const storage = tempDir('relight-prom-')

  const query = async (q: string): Promise<Sample[]> => {
    const res = await request(`${promUrl}/api/v1/query?query=${encodeURIComponent(q)}`)
    const body = (await res.body.json()) as { status: string; data: { result: Sample[] } }
    assert.equal(body.status, 'success')
    return body.data.result
  }

  before(async () => {
    const appPort = await freePort()
    sc = await startTestSidecar(
      `admin: { token: ${TOKEN} }\nmin_idle_timeout: 1s\ndefaults: { idle_timeout: 1h, wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n` +
        `      - { name: hello, hosts: [hello.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: hello }, port: ${appPort}, stdout: "null", grace_period: 2s }\n`,
    )
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    const promPort = await freePort()
    promUrl = `http://127.0.0.1:${promPort}`
    const config = join(storage.dir, 'prometheus.yml')
    writeFileSync(
      config,
      `global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: relight\n    metrics_path: /_relight/metrics\n    authorization:\n      type: Bearer\n      credentials: ${TOKEN}\n    static_configs:\n      - targets: ["${sc.address}"]\n`,
    )
    prometheus = spawn(
      'prometheus',
      [`--config.file=${config}`, `--storage.tsdb.path=${join(storage.dir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'], cwd: storage.dir },
    )
    prometheus.stdout?.on('data', (d: Buffer) => (promOutput += d.toString()))
    prometheus.stderr?.on('data', (d: Buffer) => (promOutput += d.toString()))
    await until(
      async () => {
        if (prometheus.exitCode !== null) throw new Error(`prometheus exited ${prometheus.exitCode}:\n${promOutput}`)
        return (await request(`${promUrl}/-/ready`).then((r) => (r.body.dump(), r.statusCode)).catch(() => 0)) === 200
      },
      'Prometheus to be ready',
      30_000,
      100,
    )
  })
  after(async () => {
    if (prometheus) await stopChild(prometheus)
    storage.remove()
    await caddy?.close()
    await sc?.close()
  })

  it('reads relight_wakes_total for a backend woken by a request through Caddy', async () => {
    assert.equal(sc.sidecar.registry.get('process:hello')?.phase, 'asleep')
    // The target is up and the backend's series exist (at zero) before the wake.
    await until(async () => (await query('up{job="relight"}'))[0]?.value[1] === '1', `the scrape target to be up\n${promOutput}`, 30_000, 200)
    const zero = (await until(async () => (await query('relight_wakes_total{backend="hello",result="ready"}'))[0], 'the zero series', 30_000, 200)) as Sample
    assert.equal(zero.value[1], '0')

    const res = await request(`${caddy.url}/`, { headers: { host: 'hello.localhost' } })
    assert.equal(res.statusCode, 200)
    assert.match(await res.body.text(), /^hello pid/)

    const sample = (await until(
      async () => (await query('relight_wakes_total{backend="hello",result="ready"}')).find((s) => s.value[1] === '1'),
      'Prometheus to see the wake',
      30_000,
      200,
    )) as Sample
    assert.deepEqual(
      { provider: sample.metric.provider, backend: sample.metric.backend, result: sample.metric.result, job: sample.metric.job },
      { provider: 'process', backend: 'hello', result: 'ready', job: 'relight' },
    )
    const durations = await query('relight_wake_duration_seconds_count{provider="process"}')
    assert.equal(durations[0]?.value[1], '1')
    const routed = await until(async () => (await query('relight_auth_requests_total{outcome="woken"}'))[0]?.value[1] === '1', 'the woken outcome', 30_000, 200)
    assert.ok(routed)
    const conns = await query('relight_access_log_connections')
    assert.ok(Number(conns[0]?.value[1]) >= 1, 'Caddy\'s access log is connected')
  })

  it('serves text that promtool check metrics accepts', async () => {
    const res = await request(`${sc.url}/_relight/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const text = await res.body.text()
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
    assert.equal(check.status, 0, `${check.stdout}${check.stderr}`)
    const denied = await request(`${sc.url}/_relight/metrics`)
    assert.equal(denied.statusCode, 401)
    await denied.body.dump()
  })
})
