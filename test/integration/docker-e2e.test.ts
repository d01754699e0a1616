/**
 * The Docker provider end to end: real dockerd, real Caddy (Debian 2.6.2), the real sidecar.
 * Containers use host networking and loopback ports; each test labels with a prefix unique to
 * this run, so containers of other test files are invisible here. Sleeps are awaited by polling
 * the backend phase at short intervals, never by fixed delays.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { Backend } from '../../sidecar/core/backend.js'
import { type RunningCaddy, caddySkip, startCaddy } from '../helpers/caddy.js'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { type TestSidecar, startTestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = (await dockerSkip()) ?? caddySkip()

describe('docker provider through real Caddy', { skip, timeout: 180_000 }, () => {
  const docker = new TestDocker()
  const p = docker.run // label prefix for this run
  let sc: TestSidecar
  let caddy: RunningCaddy
  let earlyId = ''
  let earlyPort = 0

  const get = async (host: string, path = '/') => {
    const res = await request(`${caddy.url}${path}`, { headers: { host }, headersTimeout: 60_000 })
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
  }
  const backend = (host: string): Backend | undefined => [...sc.sidecar.registry.all()].find((b) => b.info.hosts.includes(host))
  const asleep = (host: string) => until(() => backend(host)?.phase === 'asleep', `${host} asleep`, 20_000, 25)
  const routed = (host: string, port: number, extra: Record<string, string> = {}) => ({ [`${p}.domain`]: host, [`${p}.port`]: String(port), ...extra })

  before(async () => {
    await docker.importImage('<h1>hello from docker</h1>\n')
    earlyPort = await freePort()
    earlyId = await docker.container({ cmd: docker.httpd(earlyPort), labels: routed('early.localhost', earlyPort, { [`${p}.sleep`]: 'pause' }) })
    sc = await startTestSidecar(
      [
        'min_idle_timeout: 100ms',
        'resync_interval: 1h', // discovery after start must come from the event stream
        'defaults: { idle_timeout: 1s, wake_timeout: 20s }',
        `providers:`,
        `  docker: { socket: ${DOCKER_SOCKET}, label_prefix: ${p}, stop_timeout: 2s }`,
        '',
      ].join('\n'),
    )
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
  })

  after(async () => {
    await caddy?.close()
    await sc?.close()
    await docker.cleanup()
  })

  it('discovers a labelled container running before start, routes to it, and puts it to sleep (auto_sleep_on_start)', async () => {
    const res = await get('early.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /hello from docker/)
    await asleep('early.localhost')
    assert.equal(await docker.state(earlyId), 'paused')
  })

  it('wakes a paused container on request', async () => {
    await asleep('early.localhost')
    assert.equal(await docker.state(earlyId), 'paused')
    const res = await get('early.localhost')
    assert.equal(res.status, 200)
    assert.equal(await docker.state(earlyId), 'running')
  })

  it('routes a container created after start (event path), wakes it from stopped, and stops it when idle', async () => {
    const port = await freePort()
    assert.equal((await get('late.localhost')).status, 404)
    const id = await docker.container({ cmd: docker.httpd(port), labels: routed('late.localhost', port, { [`${p}.sleep`]: 'stop' }), created: true })
    await until(() => backend('late.localhost'), 'late.localhost discovered', 20_000, 25)
    assert.equal(backend('late.localhost')?.phase, 'asleep')
    const res = await get('late.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /hello from docker/)
    assert.equal(await docker.state(id), 'running')
    await asleep('late.localhost')
    assert.equal(await docker.state(id), 'exited')
    const again = await get('late.localhost')
    assert.equal(again.status, 200)
    assert.equal(await docker.state(id), 'running')
  })

  it('wakes a group together, dependencies first, and sleeps it together once every routed member is idle', async () => {
    const project = `proj-${p}`
    const [webPort, adminPort, dbPort] = [await freePort(), await freePort(), await freePort()]
    const compose = { 'com.docker.compose.project': project }
    const db = await docker.container({ cmd: docker.httpd(dbPort), labels: compose, created: true })
    const web = await docker.container({ cmd: docker.httpd(webPort), labels: routed('web.localhost', webPort, { ...compose, [`${p}.sleep`]: 'stop' }), created: true })
    const admin = await docker.container({ cmd: docker.httpd(adminPort), labels: routed('admin.localhost', adminPort, { ...compose, [`${p}.sleep`]: 'stop' }), created: true })
    await until(() => backend('web.localhost') && backend('admin.localhost'), 'group discovered', 20_000, 25)
    assert.equal(backend('web.localhost')?.info.group, project)

    const res = await get('web.localhost')
    assert.equal(res.status, 200)
    // The dependency was started, and before the routed member.
    assert.equal(await docker.state(db), 'running')
    assert.equal(await docker.state(web), 'running')
    const startedAt = async (id: string) =>
      Date.parse((await docker.client.json<{ State: { StartedAt: string } }>('GET', `/containers/${id}/json`)).State.StartedAt)
    assert.ok((await startedAt(db)) <= (await startedAt(web)), 'db starts before web')
    await until(async () => (await docker.state(admin)) === 'running', 'admin woken with its group', 20_000, 25)

    await asleep('web.localhost')
    await asleep('admin.localhost')
    await until(async () => (await docker.state(db)) === 'exited', 'db stopped after the group slept', 20_000, 25)
    assert.equal(await docker.state(web), 'exited')
    assert.equal(await docker.state(admin), 'exited')
  })

  it('answers 404 for a container removed while asleep', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: docker.httpd(port), labels: routed('gone.localhost', port), created: true })
    await until(() => backend('gone.localhost'), 'gone.localhost discovered', 20_000, 25)
    await docker.remove(id)
    await until(() => backend('gone.localhost') === undefined, 'gone.localhost removed', 20_000, 25)
    const res = await get('gone.localhost')
    assert.equal(res.status, 404)
  })

  it('answers 502 when a container exits while waking; the exit code goes to the log, not the client', async () => {
    const port = await freePort()
    await docker.container({ cmd: ['sh', '-c', 'exit 3'], labels: routed('crash.localhost', port), created: true })
    await until(() => backend('crash.localhost'), 'crash.localhost discovered', 20_000, 25)
    const res = await get('crash.localhost')
    assert.equal(res.status, 502)
    assert.doesNotMatch(res.body, /exited with code/)
    assert.equal(backend('crash.localhost')?.lastError?.code, 'RELIGHT_ERR_BACKEND_EXITED')
    // what the wake.failed log line, the admin API and the status page show
    assert.match(backend('crash.localhost')?.lastError?.message ?? '', /exited with code 3/)
  })

  it('answers 502 when Docker refuses to start a container', async () => {
    const port = await freePort()
    // No such program and no init process: the runtime refuses the start (Docker answers 4xx/5xx).
    await docker.container({ cmd: ['/no/such/program'], init: false, labels: routed('refused.localhost', port), created: true })
    await until(() => backend('refused.localhost'), 'refused.localhost discovered', 20_000, 25)
    const res = await get('refused.localhost')
    assert.equal(res.status, 502)
    assert.equal(backend('refused.localhost')?.lastError?.code, 'RELIGHT_ERR_PROVIDER_FAILED')
    assert.match(backend('refused.localhost')?.lastError?.message ?? '', /no such file/i, 'the reason is kept for the log')
    assert.doesNotMatch(res.body, /no such file/i, 'engine internals are not shown to clients')
  })
})
