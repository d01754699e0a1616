/** The Docker provider against real dockerd, without Caddy: health checks, exits, auto_sleep_on_start. */
import assert from 'node:assert/strict'
import { connect, createServer } from 'node:net'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import type { Provider, ProviderEvent } from '../../sidecar/core/provider.js'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { inspectContainer } from '../../sidecar/providers/moby/container-inspect.js'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = await dockerSkip()


/**
 * Watch a provider and resolve once its event stream is up (the provider asks for a resync on
 * every connection), so events caused after this are seen.
 */
async function watchConnected(provider: Provider): Promise<{ events: ProviderEvent[]; controller: AbortController }> {
  const controller = new AbortController()
  const events: ProviderEvent[] = []
  await new Promise<void>((resolve) => {
    provider.watch?.((e) => {
      events.push(e)
      if (e.type === 'resync') resolve()
    }, controller.signal)
  })
  return { events, controller }
}

describe('docker provider (real dockerd)', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  const p = docker.run
  const make = (extra: Record<string, unknown> = {}) =>
    new DockerProvider(dockerConfigSchema.parse({ socket: DOCKER_SOCKET, label_prefix: p, stop_timeout: '2s', ...extra }), pino({ level: 'silent' }))

  before(async () => {
    await docker.importImage()
  })
  after(async () => {
    await docker.cleanup()
  })

  it('wake() waits for Docker health status healthy when the container has a health check', async () => {
    const port = await freePort()
    const id = await docker.container({
      // The server comes up late: wake() must not resolve on "running" alone.
      cmd: ['sh', '-c', `sleep 1 && exec httpd -f -p 127.0.0.1:${port} -h /www`],
      labels: { [`${p}.domain`]: 'health.localhost', [`${p}.port`]: String(port) },
      healthcheck: ['CMD', 'busybox', 'wget', '-q', '-O', '/dev/null', `http://127.0.0.1:${port}/`],
      created: true,
    })
    const provider = make()
    try {
      await provider.wake(id, AbortSignal.timeout(30_000))
      const c = await inspectContainer(provider.api, id, AbortSignal.timeout(5000))
      assert.equal(c.State.Health?.Status, 'healthy')
    } finally {
      await provider.close()
    }
  })

  it('reports a container that exits by itself as a state event with its exit code', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: ['sh', '-c', 'read x'], labels: { [`${p}.domain`]: 'exit.localhost', [`${p}.port`]: String(port) }, created: true })
    const provider = make()
    const { events, controller } = await watchConnected(provider)
    try {
      // `read x` with no stdin returns at once: the shell exits 1 on its own.
      await docker.post(id, 'start')
      await until(() => events.find((e) => e.type === 'state' && e.id === id), 'state event', 20_000, 10)
      const state = events.find((e) => e.type === 'state' && e.id === id)
      assert.deepEqual(state, { type: 'state', id, state: 'stopped', reason: 'exited with code 1' })
    } finally {
      controller.abort()
      await provider.close()
    }
  })

  it('a sleep through the provider is not reported as a crash', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: docker.httpd(port), labels: { [`${p}.domain`]: 'quiet.localhost', [`${p}.port`]: String(port) } })
    const provider = make()
    const { events, controller } = await watchConnected(provider)
    try {
      await provider.sleep(id, 'stop', AbortSignal.timeout(30_000))
      await until(() => events.some((e) => e.type === 'upsert' && e.backend.id === id && e.backend.state === 'stopped'), 'stopped upsert', 20_000, 10)
      assert.equal(events.filter((e) => e.type === 'state' && e.id === id).length, 0)
    } finally {
      controller.abort()
      await provider.close()
    }
  })

  it('auto_sleep_on_start: false keeps containers running at start on until they stop', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: docker.httpd(port), labels: { [`${p}.domain`]: 'pinned.localhost', [`${p}.port`]: String(port) } })
    const provider = make({ auto_sleep_on_start: false })
    try {
      const first = (await provider.list(AbortSignal.timeout(10_000))).find((b) => b.id === id)
      assert.equal(first?.settings.always_on, true)
      await docker.post(id, 'stop')
      const second = (await provider.list(AbortSignal.timeout(10_000))).find((b) => b.id === id)
      assert.equal(second?.settings.always_on, undefined)
      await provider.wake(id, AbortSignal.timeout(30_000))
      const third = (await provider.list(AbortSignal.timeout(10_000))).find((b) => b.id === id)
      assert.equal(third?.state, 'running')
      assert.equal(third?.settings.always_on, undefined)
    } finally {
      await provider.close()
    }
    const auto = make()
    try {
      const info = (await auto.list(AbortSignal.timeout(10_000))).find((b) => b.id === id)
      assert.equal(info?.settings.always_on, undefined)
    } finally {
      await auto.close()
    }
  })

  it('talks to the engine over tcp:// as well, and reads stats of a running container', async () => {
    // A loopback TCP port forwarded to the unix socket stands in for `dockerd -H tcp://…`.
    const proxy = createServer((client) => {
      const upstream = connect(DOCKER_SOCKET)
      client.pipe(upstream).pipe(client)
      client.on('error', () => upstream.destroy())
      upstream.on('error', () => client.destroy())
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    const address = proxy.address()
    const tcpPort = typeof address === 'object' && address ? address.port : 0
    const port = await freePort()
    const id = await docker.container({ cmd: docker.busyHttpd(port), labels: { [`${p}.domain`]: 'tcp.localhost', [`${p}.port`]: String(port) } })
    const provider = make({ socket: `tcp://127.0.0.1:${tcpPort}` })
    try {
      const info = (await provider.list(AbortSignal.timeout(10_000))).find((b) => b.id === id)
      assert.equal(info?.state, 'running')
      assert.deepEqual(info?.upstreams, [`127.0.0.1:${port}`])
      const stats = await provider.stats(id, AbortSignal.timeout(20_000))
      assert.ok(stats.mem_mb > 0, `mem_mb ${stats.mem_mb}`)
      // The first call has no earlier sample (one-shot stats): 0. A busy container reads above 0
      // once the engine's counter moved between two calls; a broken figure (NaN reports as 0) never does.
      await until(async () => (await provider.stats(id, AbortSignal.timeout(20_000))).cpu_pct > 0, 'a busy container\'s CPU to read above 0', 20_000)
    } finally {
      await provider.close()
      proxy.close()
    }
  })

  it('without events, the periodic resync alone removes a deleted container: 404 afterwards', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: docker.httpd(port), labels: { [`${p}.domain`]: 'resync.localhost', [`${p}.port`]: String(port) }, created: true })
    const provider = make()
    Object.assign(provider, { watch: undefined }) // the resync is the truth: prove it works alone
    const sc = await startTestSidecar('resync_interval: 200ms\n', { providers: [provider], accessLog: false })
    const auth = async () => (await request(`${sc.url}/_relight/auth`, { headers: { host: 'resync.localhost' } })).statusCode
    try {
      assert.equal([...sc.sidecar.registry.all()].filter((b) => b.info.id === id).length, 1)
      await docker.remove(id)
      await until(() => [...sc.sidecar.registry.all()].every((b) => b.info.id !== id), 'resync removed the backend', 20_000, 25)
      assert.equal(await auth(), 404)
    } finally {
      await sc.close()
    }
  })

  it('check() reports the engine and the labelled containers', async () => {
    const provider = make()
    try {
      const results = await provider.check(AbortSignal.timeout(10_000))
      assert.ok(results.every((r) => r.ok), JSON.stringify(results))
      assert.match(results[0]?.message ?? '', /^Docker Engine .* answers at/)
    } finally {
      await provider.close()
    }
  })
})
