/**
 * End to end with real Podman (podman system service + runc), real Caddy and the sidecar:
 * label discovery, events, wake from paused and from stopped through Caddy, a real checkpoint
 * attempt that fails on this host and falls back to pause, and the heartbeat received by a real
 * HTTP receiver on loopback. Containers run busybox httpd on the host network on 127.0.0.1.
 */
import assert from 'node:assert/strict'
import { createServer, type IncomingMessage } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import type { Backend } from '../../sidecar/core/backend.js'
import type { HeartbeatPayload } from '../../sidecar/heartbeat/heartbeat.js'
import type { PodmanProvider } from '../../sidecar/providers/podman/provider.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { type PodmanFixture, podmanSkip, startPodman, type TestContainer } from '../helpers/podman.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const SECRET = 'podman-heartbeat-secret-0123456789'
const skip = podmanSkip() ?? caddySkip()

describe('podman end to end (real podman, real Caddy)', { skip, timeout: 180_000 }, () => {
  let podman: PodmanFixture
  let sidecar: TestSidecar
  let caddy: RunningCaddy
  let paused: TestContainer
  let stopped: TestContainer
  let ckpt: TestContainer
  const beats: { headers: IncomingMessage['headers']; body: HeartbeatPayload }[] = []
  const router = createServer((req, res) => {
    let text = ''
    req.on('data', (d: Buffer) => (text += d.toString()))
    req.on('end', () => {
      beats.push({ headers: req.headers, body: JSON.parse(text) as HeartbeatPayload })
      res.writeHead(204).end()
    })
  })

  const backend = (host: string): Backend => {
    const b = [...sidecar.sidecar.registry.all()].find((x) => x.info.hosts.includes(host))
    assert.ok(b, `the registry knows ${host}`)
    return b
  }
  const get = async (host: string) => {
    const res = await request(`${caddy.url}/`, { headers: { host }, signal: AbortSignal.timeout(60_000) })
    return { status: res.statusCode, body: await res.body.text() }
  }
  const inspectStatus = async (id: string) =>
    (await podman.libpod.json<{ State: { Status: string } }>('GET', `/containers/${id}/json`, { signal: AbortSignal.timeout(10_000) })).State.Status

  before(async () => {
    podman = await startPodman()
    await new Promise<void>((resolve) => router.listen(0, '127.0.0.1', () => resolve()))
    const routerUrl = `http://127.0.0.1:${(router.address() as AddressInfo).port}/heartbeat`
    paused = await podman.container({ hosts: 'paused.podman.localhost' })
    stopped = await podman.container({ hosts: 'stopped.podman.localhost,www.stopped.podman.localhost', start: false })
    ckpt = await podman.container({
      hosts: 'ckpt.podman.localhost',
      labels: { [`${podman.prefix}.sleep`]: 'checkpoint', [`${podman.prefix}.idle_timeout`]: '300ms' },
    })
    const appPort = await freePort()
    process.env.RELIGHT_TEST_HEARTBEAT_SECRET = SECRET
    sidecar = await startTestSidecar(
      [
        'min_idle_timeout: 100ms',
        'defaults:',
        '  wake_timeout: 60s',
        '  fallback_sleep: pause',
        'providers:',
        '  podman:',
        `    socket: ${podman.socket}`,
        `    label_prefix: ${podman.prefix}`,
        '  process:',
        '    apps:',
        '      - name: hello',
        '        hosts: [hello.process.localhost]',
        `        command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(APP)}]`,
        '        env: { PORT: "{{port}}" }',
        `        port: ${appPort}`,
        '        stdout: "null"',
        '        stderr: "null"',
        '        always_on: true',
        'heartbeat:',
        `  url: ${routerUrl}`,
        '  secret: "${RELIGHT_TEST_HEARTBEAT_SECRET}"',
        '  node_ip: 127.0.0.1',
        '  interval: 250ms',
        '',
      ].join('\n'),
    )
    caddy = await startCaddy({ sidecar: sidecar.address, accessLog: sidecar.caddyAccessLog })
  })

  after(async () => {
    await caddy?.close()
    await sidecar?.close()
    await podman?.cleanup()
    router.closeAllConnections()
    await new Promise<void>((resolve) => router.close(() => resolve()))
  })

  it('discovers labelled containers: comma-separated domains, port label, state', () => {
    const s = backend('stopped.podman.localhost')
    assert.deepEqual(s.info.hosts, ['stopped.podman.localhost', 'www.stopped.podman.localhost'])
    assert.deepEqual(s.info.upstreams, [`127.0.0.1:${stopped.port}`])
    assert.equal(s.info.state, 'stopped')
    assert.equal(backend('paused.podman.localhost').info.state, 'running')
    assert.equal(backend('ckpt.podman.localhost').settings.sleep, 'checkpoint')
  })

  it('wakes a stopped container through Caddy', async () => {
    const res = await get('www.stopped.podman.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /relight test image/)
    assert.equal(await inspectStatus(stopped.id), 'running')
  })

  it('follows events: a container paused outside the sidecar is seen paused, and a request wakes it', async () => {
    await podman.libpod.request('POST', `/containers/${paused.id}/pause`, { signal: AbortSignal.timeout(10_000) })
    const b = backend('paused.podman.localhost')
    await until(() => b.info.state === 'paused' && b.phase === 'asleep', 'the pause event to reach the registry', 30_000)
    const res = await get('paused.podman.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /relight test image/)
    assert.equal(await inspectStatus(paused.id), 'running')
    assert.equal(b.counters.wakes, 1)
  })

  it('discovers a container created after start from the event stream and routes to it', async () => {
    const late = await podman.container({ hosts: 'late.podman.localhost' })
    await until(() => [...sidecar.sidecar.registry.all()].some((b) => b.info.id === late.id && b.info.state === 'running'), 'the create/start events to reach the registry', 30_000)
    const res = await get('late.podman.localhost')
    assert.equal(res.status, 200)
  })

  it('checkpoint fails on this host (no CRIU): the backend falls back to pause, once counted, and check says so', async () => {
    // Its idle_timeout label is 300ms: it went idle soon after the sidecar started.
    const b = backend('ckpt.podman.localhost')
    await until(() => b.counters.sleeps === 1 || b.counters.sleepFailures > 0, 'the idle checkpoint attempt and its fallback', 30_000)
    assert.equal(b.counters.sleepFailures, 0)
    assert.equal(b.counters.fallbackSleeps, 1)
    assert.equal(b.info.state, 'paused')
    assert.equal(await inspectStatus(ckpt.id), 'paused')
    const provider = sidecar.sidecar.registry.providers.find((p) => p.kind === 'podman') as PodmanProvider
    const results = await provider.check(AbortSignal.timeout(30_000))
    const problems = results.filter((r) => !r.ok).map((r) => r.message)
    assert.ok(problems.some((m) => /^checkpointing does not work on this host .*sleep with checkpoint and will fall back to pause/.test(m)), problems.join('\n'))
    assert.ok(problems.some((m) => /^the last checkpoint \(.*\) failed: checkpoint failed/.test(m)), problems.join('\n'))
    // …and it wakes from the fallback mode through Caddy.
    const res = await get('ckpt.podman.localhost')
    assert.equal(res.status, 200)
    assert.equal(await inspectStatus(ckpt.id), 'running')
  })

  it('sends heartbeats with bearer auth covering the Podman and process backends', async () => {
    const count = beats.length
    const beat = await until(() => beats.slice(count).find((x) => x.body.containers.length >= 5), 'a heartbeat after the previous steps', 30_000)
    assert.equal(beat.headers.authorization, `Bearer ${SECRET}`)
    const body = beat.body
    assert.equal(body.node_ip, '127.0.0.1')
    const byDomain = new Map(body.containers.map((c) => [c.domain, c]))
    for (const domain of ['paused.podman.localhost', 'stopped.podman.localhost', 'ckpt.podman.localhost', 'late.podman.localhost', 'hello.process.localhost']) {
      const c = byDomain.get(domain)
      assert.ok(c, `heartbeat lists ${domain}`)
      assert.ok(['running', 'paused', 'checkpointed', 'stopped'].includes(c.status))
      assert.equal(typeof c.cpu_pct, 'number')
      assert.equal(typeof c.mem_mb, 'number')
    }
    assert.equal(byDomain.get('hello.process.localhost')?.provider, 'process')
    assert.equal(byDomain.get('stopped.podman.localhost')?.provider, 'podman')
    assert.deepEqual(byDomain.get('stopped.podman.localhost')?.domains, ['stopped.podman.localhost', 'www.stopped.podman.localhost'])
    const running = body.containers.filter((c) => c.status === 'running')
    assert.ok(running.length > 0)
    for (const c of running) assert.ok(c.mem_mb > 0, `${c.domain} is running and uses memory`)
    const sum = (k: 'cpu_pct' | 'mem_mb') => Math.round(body.containers.reduce((a, c) => a + c[k], 0) * 10) / 10
    assert.equal(body.total_cpu_pct, sum('cpu_pct'))
    assert.equal(body.total_mem_mb, sum('mem_mb'))
    // A paused backend is reported paused: put one to sleep and wait for a heartbeat saying so.
    await podman.libpod.request('POST', `/containers/${paused.id}/pause`, { signal: AbortSignal.timeout(10_000) })
    const after = beats.length
    const pausedBeat = await until(() =>
      beats.slice(after).find((x) => x.body.containers.some((c) => c.domain === 'paused.podman.localhost' && c.status === 'paused')), 'a heartbeat reporting the paused container', 30_000)
    assert.ok(pausedBeat)
  })
})
