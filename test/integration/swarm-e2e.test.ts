/**
 * The Swarm provider end to end: a real single-node swarm (dockerd, `docker swarm init
 * --advertise-addr 127.0.0.1`), real Caddy, the real sidecar. Services publish in host mode and
 * are reached on 127.0.0.1 only; each run labels with its own prefix, so other services are
 * invisible here. Waits poll the backend phase or the engine at short intervals, never fixed delays.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { Backend } from '../../sidecar/core/backend.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { claimedElsewhere } from '../../sidecar/providers/index.js'
import { listContainers } from '../../sidecar/providers/moby/container-inspect.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import { type RunningCaddy, caddySkip, startCaddy } from '../helpers/caddy.js'
import { DOCKER_SOCKET } from '../helpers/docker.js'
import { type ReadOnlyEngineProxy, readOnlyEngineProxy } from '../helpers/engine-proxy.js'
import { type TestSidecar, startTestSidecar } from '../helpers/sidecar.js'
import { TestSwarm, swarmSkip } from '../helpers/swarm.js'
import type { Task } from '../../sidecar/providers/swarm/services.js'
import { testLogger } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = (await swarmSkip()) ?? caddySkip()

describe('swarm provider through real Caddy', { skip, timeout: 240_000 }, () => {
  const swarm = new TestSwarm()
  const p = swarm.run // label prefix of the writable sidecar
  const ro = `${swarm.run}ro` // label prefix of the sidecar behind a read-only engine proxy
  let sc: TestSidecar
  let caddy: RunningCaddy
  let roSc: TestSidecar
  let roCaddy: RunningCaddy
  let proxy: ReadOnlyEngineProxy
  let early = { id: '', name: '', port: 0 }

  const get = async (via: RunningCaddy, host: string) => {
    const res = await request(`${via.url}/`, { headers: { host }, headersTimeout: 90_000 })
    return { status: res.statusCode, body: await res.body.text(), headers: res.headers }
  }
  const backendIn = (s: TestSidecar, host: string): Backend | undefined => [...s.sidecar.registry.all()].find((b) => b.info.hosts.includes(host))
  const backend = (host: string) => backendIn(sc, host)
  const asleep = (host: string) => until(() => backend(host)?.phase === 'asleep', `${host} asleep`, 60_000, 25)
  const labels = (host: string, extra: Record<string, string> = {}, prefix = p) => ({ [`${prefix}.domain`]: host, [`${prefix}.port`]: '8080', ...extra })
  const label = async (id: string, key: string) => (await swarm.inspect(id)).Spec.Labels?.[key]

  before(async () => {
    await swarm.importImage('<h1>hello from swarm</h1>\n')
    early = await swarm.service({ labels: labels('early.localhost'), replicas: 1 })
    const config = (prefix: string, socket: string) =>
      [
        'min_idle_timeout: 100ms',
        'resync_interval: 1h', // discovery after start must come from the event stream
        'defaults: { idle_timeout: 1500ms, wake_timeout: 60s }',
        'providers:',
        `  swarm: { socket: ${socket}, label_prefix: ${prefix} }`,
        '',
      ].join('\n')
    sc = await startTestSidecar(config(p, DOCKER_SOCKET))
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    proxy = await readOnlyEngineProxy(DOCKER_SOCKET)
    roSc = await startTestSidecar(config(ro, proxy.socket))
    roCaddy = await startCaddy({ sidecar: roSc.address, accessLog: roSc.caddyAccessLog })
  })

  after(async () => {
    await roCaddy?.close()
    await roSc?.close()
    await proxy?.close()
    await caddy?.close()
    await sc?.close()
    await swarm.cleanup()
  })

  it('discovers a service running before start, routes to its task, and scales it to zero when idle', async () => {
    const res = await get(caddy, 'early.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /hello from swarm/)
    assert.deepEqual(backend('early.localhost')?.info.upstreams, [`127.0.0.1:${early.port}`])
    await asleep('early.localhost')
    assert.equal(await swarm.replicas(early.id), 0)
    assert.ok(await label(early.id, `${p}.asleep.since`), 'the asleep marker is written with the scale-down')
    assert.equal(await label(early.id, `${p}.asleep.replicas`), '1')
    await until(async () => (await swarm.running(early.id)).length === 0, 'the task stopped', 30_000, 50)
  })

  it('wakes a service from zero replicas (created after start: event path) and records the wake as shared activity', async () => {
    assert.equal((await get(caddy, 'late.localhost')).status, 404)
    const before = Date.now()
    const late = await swarm.service({ labels: labels('late.localhost', { [`${p}.replicas`]: '1' }) })
    await until(() => backend('late.localhost'), 'late.localhost discovered', 30_000, 25)
    assert.equal(backend('late.localhost')?.phase, 'asleep')
    assert.equal(backend('late.localhost')?.info.state, 'scaled_to_zero')
    const res = await get(caddy, 'late.localhost')
    assert.equal(res.status, 200)
    assert.match(res.body, /hello from swarm/)
    assert.equal(await swarm.replicas(late.id), 1)
    const activity = Date.parse((await label(late.id, `${p}.last_activity`)) ?? '')
    assert.ok(activity >= before - 1000, 'the wake wrote the shared last activity')
    await asleep('late.localhost')
    assert.equal(await swarm.replicas(late.id), 0)
    // Woken again after a sleep: a fresh task on the same port.
    await until(async () => (await swarm.running(late.id)).length === 0, 'the task stopped', 30_000, 50)
    assert.equal((await get(caddy, 'late.localhost')).status, 200)
  })

  it('wakes a group together (dependencies first) and scales it down together once every routed member is idle', async () => {
    const group = { [`${p}.group`]: `grp-${p}` }
    const web = await swarm.service({ labels: labels('web.localhost', group) })
    const admin = await swarm.service({ labels: labels('admin.localhost', group) })
    const db = await swarm.service({ labels: group, published: null, args: ['/bin/busybox', 'sleep', '3600'] })
    await until(() => backend('web.localhost') && backend('admin.localhost'), 'group discovered', 30_000, 25)
    assert.equal(backend('web.localhost')?.info.group, `grp-${p}`)
    const res = await get(caddy, 'web.localhost')
    assert.equal(res.status, 200)
    assert.equal(await swarm.replicas(db.id), 1, 'the dependency was scaled up with the routed member')
    assert.ok((await swarm.running(db.id)).length > 0, 'and runs before the routed member answers')
    await until(async () => (await swarm.replicas(admin.id)) === 1, 'admin woken with its group', 30_000, 25)
    await until(() => backend('admin.localhost')?.phase === 'running', 'admin routed', 60_000, 25)
    await asleep('web.localhost')
    await asleep('admin.localhost')
    await until(async () => (await swarm.replicas(db.id)) === 0, 'the dependency scaled down after the group', 30_000, 25)
    assert.equal(await swarm.replicas(web.id), 0)
    assert.equal(await swarm.replicas(admin.id), 0)
  })

  it('answers 404 for a service removed while asleep', async () => {
    const gone = await swarm.service({ labels: labels('gone.localhost') })
    await until(() => backend('gone.localhost'), 'gone.localhost discovered', 30_000, 25)
    await swarm.remove(gone.id)
    await until(() => backend('gone.localhost') === undefined, 'gone.localhost removed', 30_000, 25)
    assert.equal((await get(caddy, 'gone.localhost')).status, 404)
  })

  it('answers 502 when the task of a woken service fails', async () => {
    const crash = await swarm.service({ labels: labels('crash.localhost'), args: ['/no/such/program'] })
    await until(() => backend('crash.localhost'), 'crash.localhost discovered', 30_000, 25)
    const res = await get(caddy, 'crash.localhost')
    assert.equal(res.status, 502)
    assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_BACKEND_EXITED')
    assert.match(backend('crash.localhost')?.lastError?.message ?? '', /failed|rejected/, 'the task error is kept for the log')
    await swarm.scale(crash.id, 0) // stop Swarm retrying it
  })

  it('answers 502 when the engine refuses the update, and never scales a service down it cannot write to', async () => {
    const asleepSvc = await swarm.service({ labels: labels('ro-asleep.localhost', {}, ro) })
    const awake = await swarm.service({ labels: labels('ro-awake.localhost', {}, ro), replicas: 1 })
    await until(() => backendIn(roSc, 'ro-asleep.localhost') && backendIn(roSc, 'ro-awake.localhost'), 'read-only services discovered', 30_000, 25)
    const refused = await get(roCaddy, 'ro-asleep.localhost')
    assert.equal(refused.status, 502)
    assert.equal(refused.headers['x-relight-reply'], 'RELIGHT_ERR_PROVIDER_AUTH')
    assert.equal(await swarm.replicas(asleepSvc.id), 0)
    // Routing to a running service needs no write.
    await until(async () => (await get(roCaddy, 'ro-awake.localhost')).status === 200, 'ro-awake answers', 60_000, 100)
    const b = backendIn(roSc, 'ro-awake.localhost') as Backend
    const servedAt = b.lastActivity
    // The activity write fails (403), so the idle sleep is refused (or fails): the idle clock
    // restarts without a request, and the service keeps its replica.
    await until(() => b.lastActivity > servedAt + 1500, 'an idle sleep attempt', 30_000, 25)
    assert.ok(proxy.refused >= 2, 'the writes reached the proxy and were refused')
    assert.equal(b.phase, 'running')
    assert.equal(await swarm.replicas(awake.id), 1)
  })

  it('leaves the task containers of a service to Swarm: the Docker provider ignores them, relight labels or not', async () => {
    const dp = `${p}d`
    const svc = await swarm.service({ replicas: 1, containerLabels: { [`${dp}.domain`]: 'task.localhost', [`${dp}.port`]: '8080' } })
    const task = await until(async () => (await swarm.running(svc.id))[0], 'the task runs', 60_000, 50)
    const containerId = ((task as Task).Status.ContainerStatus as { ContainerID: string }).ContainerID
    // Built as the sidecar builds it: with what the other kinds claim (Swarm: task containers).
    const docker = new DockerProvider(dockerConfigSchema.parse({ socket: DOCKER_SOCKET, label_prefix: dp }), testLogger(), { claimedElsewhere: claimedElsewhere('docker') })
    try {
      const summaries = await listContainers(docker.api, { label: [`${dp}.domain`] }, AbortSignal.timeout(10_000))
      assert.ok(summaries.some((c) => c.Id === containerId), 'the task container carries the domain label')
      assert.deepEqual(await docker.list(AbortSignal.timeout(10_000)), [])
      await assert.rejects(docker.sleep(containerId, 'stop', AbortSignal.timeout(10_000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    } finally {
      await docker.close()
      await swarm.scale(svc.id, 0)
    }
  })

  it('check explains a global service and a service without a host-mode port, and routes neither', async () => {
    const cp = `${p}c`
    const global = await swarm.service({ labels: { [`${cp}.domain`]: 'global.localhost' }, mode: 'global', published: null })
    const noPort = await swarm.service({ labels: { [`${cp}.domain`]: 'noport.localhost' }, published: null })
    const provider = new SwarmProvider(swarmConfigSchema.parse({ socket: DOCKER_SOCKET, label_prefix: cp }), testLogger())
    try {
      const results = await provider.check(AbortSignal.timeout(10_000))
      assert.ok(results[0]?.ok && /is a swarm manager/.test(results[0].message), results[0]?.message)
      const problems = results.filter((r) => !r.ok).map((r) => r.message)
      assert.ok(problems.some((m) => m.includes(`${global.name} runs in global mode`)), problems.join('\n'))
      assert.ok(problems.some((m) => m.includes(`${noPort.name} publishes no port in host mode`)), problems.join('\n'))
      assert.deepEqual(await provider.list(AbortSignal.timeout(10_000)), [])
    } finally {
      await provider.close()
      await swarm.remove(global.id)
    }
  })
})
