/**
 * End to end: real Caddy 2.6 (the relight snippet, the access log over a unix socket), the
 * sidecar, and real child processes supervised by the process provider.
 */
import assert from 'node:assert/strict'
import { fileURLToPath } from 'node:url'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { pidAlive, pidState, until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const skip = caddySkip()

async function get(caddy: RunningCaddy, host: string, path = '/', headers: Record<string, string> = {}) {
  const res = await request(`${caddy.url}${path}`, { headers: { host, ...headers } })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

describe('end to end through Caddy: process apps', { skip }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  const pidIn = (body: string) => Number(/pid (\d+)/.exec(body)?.[1])
  const phase = (name: string) => sc.sidecar.registry.get(`process:${name}`)?.phase

  before(async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()]
    const app = (name: string, port: number, extra = '') =>
      `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${port}, stdout: "null", grace_period: 2s${extra} }\n`
    sc = await startTestSidecar(
      `min_idle_timeout: 300ms\ndefaults: { idle_timeout: 800ms, wake_timeout: 10s }\nbase_domains: [apps.localhost]\nproviders:\n  process:\n    apps:\n${app('hello', p1)}${app('frozen', p2, ', sleep: pause')}${app('stream', p3)}`,
    )
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => sc.sidecar.registry.countInflight, 'Caddy to connect its access log')
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  it('starts a stopped app on the first request and returns its body', async () => {
    assert.equal(phase('hello'), 'asleep')
    const res = await get(caddy, 'hello.localhost', '/first?q=1')
    assert.equal(res.status, 200)
    assert.match(res.body, /^hello pid \d+ GET \/first\?q=1 /)
  })

  it('ignores an X-Relight-Upstream header sent by the client', async () => {
    const res = await get(caddy, 'hello.localhost', '/', { 'x-relight-upstream': '127.0.0.1:1' })
    assert.equal(res.status, 200)
    assert.match(res.body, /upstream-header=none/)
  })

  it('answers 404 through Caddy for an unknown host, and 400 for a malformed one', async () => {
    const res = await get(caddy, 'nobody.localhost')
    assert.equal(res.status, 404)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_HOST_UNKNOWN')
    const bad = await get(caddy, 'bad_name.localhost')
    assert.equal(bad.status, 400)
  })

  it('stops an idle app after idle_timeout', async () => {
    const pid = pidIn((await get(caddy, 'hello.localhost')).body)
    assert.ok(pidAlive(pid))
    await until(() => phase('hello') === 'asleep', 'hello to go to sleep', 5000)
    await until(() => !pidAlive(pid), 'the hello process to exit', 5000)
    assert.equal((await get(caddy, 'hello.localhost')).status, 200, 'and starts again on the next request')
  })

  it('pauses an idle app and resumes the same process on request', async () => {
    const first = await get(caddy, 'frozen.localhost')
    assert.equal(first.status, 200)
    const pid = pidIn(first.body)
    await until(() => phase('frozen') === 'asleep', 'frozen to be paused', 5000)
    await until(() => pidState(pid) === 'T', 'the process to be stopped by SIGSTOP', 2000)
    const again = await get(caddy, 'frozen.localhost')
    assert.equal(again.status, 200)
    assert.match(again.body, new RegExp(`pid ${pid} `), 'the same process answers')
  })

  it('keeps an app awake while an SSE stream is open, and sleeps it after the stream closes', async () => {
    const res = await request(`${caddy.url}/sse`, { headers: { host: 'stream.localhost' } })
    assert.equal(res.statusCode, 200)
    let ticks = 0
    let pid = 0
    res.body.on('data', (chunk: Buffer) => {
      if (ticks++ === 0) pid = Number(/stream (\d+)/.exec(chunk.toString())?.[1])
    })
    await until(() => pid > 0, 'the first event')
    const backend = sc.sidecar.registry.get('process:stream')
    assert.equal(backend?.inflight, 1)
    await until(() => ticks >= 5, 'the stream to keep flowing (5 chunks)')
    // An hour later by the registry's clock (Date.now), the open stream still keeps it from the idle sweep.
    assert.equal(backend?.isIdle(Date.now() + 3_600_000), false, 'idle with its stream open')
    assert.equal(phase('stream'), 'running')
    assert.ok(pidAlive(pid))
    res.body.destroy()
    await until(() => backend?.inflight === 0, 'Caddy to log the closed stream', 5000)
    await until(() => phase('stream') === 'asleep', 'stream to sleep after the stream closed', 5000)
  })

  it('answers ask for known names, first labels under base_domains only', async () => {
    const ask = async (domain: string) => (await request(`${sc.url}/_relight/ask?domain=${encodeURIComponent(domain)}`)).statusCode
    assert.equal(await ask('hello.localhost'), 200)
    assert.equal(await ask('unknown.localhost'), 404)
    assert.equal(await ask('hello.attacker.example'), 404)
    assert.equal(await ask('not a name'), 400)
  })
})

describe('Caddy reaching the sidecar over a unix socket', { skip }, () => {
  it('routes through `import relight unix//path`', async () => {
    const port = await freePort()
    const { tempDir } = await import('../helpers/net.js')
    const tmp = tempDir()
    const { parseConfig } = await import('../../sidecar/config/load.js')
    const { startSidecar } = await import('../../sidecar/daemon.js')
    const { testLogger } = await import('../helpers/sidecar.js')
    const config = parseConfig(
      `listen: unix:${tmp.dir}/sidecar.sock\nproviders:\n  process:\n    apps:\n      - { name: u, hosts: [u.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: u }, port: ${port}, stdout: "null" }\n`,
      'unix test',
    )
    const sidecar = await startSidecar(config, { logger: testLogger(), baseDir: tmp.dir })
    let caddy: RunningCaddy | undefined
    try {
      caddy = await startCaddy({ sidecar: `unix/${tmp.dir}/sidecar.sock` })
      const res = await get(caddy, 'u.localhost')
      assert.equal(res.status, 200)
      assert.match(res.body, /^u pid/)
    } finally {
      await caddy?.close()
      await sidecar.close()
      tmp.remove()
    }
  })
})
