/**
 * Two sidecars, each behind its own real Caddy, drive one service on one real swarm (the
 * multi-edge set-up). Traffic goes through sidecar A only. B has seen no request, so its own
 * idle clock runs out during the traffic: it must read A's shared last activity on the
 * service and keep it up. When all traffic stops, exactly one of them scales the service down,
 * once, not before idle_timeout after the last request.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import type { Backend } from '../../sidecar/core/backend.js'
import type { MobyEvent as EngineEvent } from '../../sidecar/providers/moby/events.js'
import { type RunningCaddy, caddySkip, startCaddy } from '../helpers/caddy.js'
import { DOCKER_SOCKET } from '../helpers/docker.js'
import { type TestSidecar, startTestSidecar } from '../helpers/sidecar.js'
import { TestSwarm, type TestService, swarmSkip } from '../helpers/swarm.js'
import { until } from '../helpers/wait.js'

const skip = (await swarmSkip()) ?? caddySkip()
const IDLE_MS = 2000

describe('two sidecars share idle decisions through the swarm', { skip, timeout: 180_000 }, () => {
  const swarm = new TestSwarm()
  const p = swarm.run
  const host = 'shared.localhost'
  let service: TestService
  let a: TestSidecar
  let b: TestSidecar
  let caddyA: RunningCaddy
  let caddyB: RunningCaddy
  const scaleDowns: number[] = [] // engine time (ms) of each replicas → 0 update
  let updates = 0 // every update event of the service
  const stopEvents = new AbortController()

  const backendOf = (s: TestSidecar): Backend | undefined => [...s.sidecar.registry.all()].find((x) => x.info.hosts.includes(host))

  before(async () => {
    await swarm.importImage('<h1>shared</h1>\n')
    service = await swarm.service({ labels: { [`${p}.domain`]: host, [`${p}.port`]: '8080' }, replicas: 1 })
    await until(async () => (await swarm.running(service.id)).length > 0, 'the task runs', 60_000, 50)
    // Every replicas change of the service, as the engine reports it.
    const events = await swarm.client.stream<EngineEvent>('/events', { query: { filters: { type: ['service'], service: [service.id] } }, signal: stopEvents.signal })
    void (async () => {
      try {
        for await (const e of events) {
          if (e.Action === 'update') updates++
          if (e.Action === 'update' && e.Actor?.Attributes?.['replicas.new'] === '0') scaleDowns.push(Math.floor((e.timeNano ?? 0) / 1e6))
        }
      } catch {
        // stream closed at the end
      }
    })()
    const config = [
      'min_idle_timeout: 100ms',
      'resync_interval: 1h',
      `defaults: { idle_timeout: ${IDLE_MS}ms, wake_timeout: 60s }`,
      'providers:',
      `  swarm: { socket: ${DOCKER_SOCKET}, label_prefix: ${p} }`,
      '',
    ].join('\n')
    a = await startTestSidecar(config)
    b = await startTestSidecar(config)
    caddyA = await startCaddy({ sidecar: a.address, accessLog: a.caddyAccessLog })
    caddyB = await startCaddy({ sidecar: b.address, accessLog: b.caddyAccessLog })
  })

  after(async () => {
    stopEvents.abort()
    await caddyA?.close()
    await caddyB?.close()
    await a?.close()
    await b?.close()
    await swarm.cleanup()
  })

  it('keeps the service up while one sidecar has traffic, then scales it down exactly once', async () => {
    const bBackend = (await until(() => backendOf(b), 'B knows the service', 30_000, 25)) as Backend
    // Under load, starting the Caddys may take longer than idle_timeout, so one of the sidecars
    // may have scaled the service down already: the first request wakes it again if so, and
    // only what happens from here on counts.
    const first = await request(`${caddyA.url}/`, { headers: { host }, headersTimeout: 60_000 })
    assert.equal(first.statusCode, 200)
    await first.body.text()
    await until(() => backendOf(a)?.phase === 'running' && bBackend.phase === 'running', 'both route to the running task', 60_000, 25)
    const downsBefore = scaleDowns.length
    const bIdleSince = bBackend.lastActivity

    // Traffic through A only, for three idle timeouts.
    const failures: string[] = []
    let served = 0
    let lastFinished = 0
    const trafficUntil = Date.now() + 3 * IDLE_MS
    while (Date.now() < trafficUntil) {
      try {
        const res = await request(`${caddyA.url}/`, { headers: { host }, headersTimeout: 60_000 })
        const body = await res.body.text()
        if (res.statusCode === 200 && body.includes('shared')) served++
        else failures.push(`${res.statusCode} ${res.headers['x-relight-reply'] ?? ''}`)
      } catch (err) {
        failures.push((err as Error).message)
      }
      lastFinished = Date.now()
      await new Promise((r) => setTimeout(r, 100))
    }
    assert.deepEqual(failures, [], 'no request failed')
    assert.ok(served > 10, `requests were served (${served})`)
    assert.equal(scaleDowns.length, downsBefore, 'no scale-down during the traffic')
    assert.equal(await swarm.replicas(service.id), 1)
    // B's own idle clock ran out during the traffic (it served nothing), yet it kept the service:
    // A's activity tokens moved B's observation of the service (issue 21: no wall clock, no refusal needed).
    assert.equal(bBackend.lastActivity, bIdleSince, 'B served nothing')
    assert.ok(performance.now() - bBackend.lastActivity >= IDLE_MS, 'B idle locally for idle_timeout')
    assert.equal(bBackend.phase, 'running')
    assert.match((await swarm.inspect(service.id)).Spec.Labels?.[`${p}.activity`] ?? '', /^v1 \S+ [0-9a-f]{16} \d+$/, 'A wrote activity tokens')

    // All traffic stops: one of them scales it down, once, and both see it asleep.
    await until(async () => (await swarm.replicas(service.id)) === 0, 'scaled to zero after the traffic', 60_000, 50)
    await until(() => backendOf(a)?.phase === 'asleep' && bBackend.phase === 'asleep', 'both see it asleep', 60_000, 25)
    await until(() => scaleDowns.length > downsBefore, 'the scale-down event', 10_000, 25)
    // Asleep in both, neither sends another update. Flush the event stream with an update of
    // our own: every update sent before it has been reported once it shows.
    const seen = updates
    const current = await swarm.inspect(service.id)
    await swarm.client.request('POST', `/services/${service.id}/update`, {
      query: { version: current.Version.Index },
      body: { ...current.Spec, Labels: { ...(current.Spec.Labels ?? {}), 'relight.test.flush': '1' } },
    })
    await until(() => updates > seen, 'the flushing update event', 10_000, 25)
    assert.equal(scaleDowns.length - downsBefore, 1, 'exactly one scale-down')
    assert.ok((scaleDowns[downsBefore] ?? 0) >= lastFinished + IDLE_MS - 250, 'not before idle_timeout after the last request')
  })
})
