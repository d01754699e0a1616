/**
 * The Swarm provider against answers recorded from Docker 20.10 (test/fixtures/swarm/README.md)
 * through undici's MockAgent: what a single-node swarm cannot show for real (a worker node) and
 * exact request shapes of the compare-and-swap. The real swarm runs in test/integration/swarm-*.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import { readServiceLabels } from '../../sidecar/providers/swarm/labels.js'
import type { Service } from '../../sidecar/providers/swarm/services.js'
import { targetPort } from '../../sidecar/providers/swarm/upstreams.js'
import { JSON_HEADERS, recordedSwarm } from '../helpers/swarm-recorded.js'

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../../../test/fixtures/swarm/${name}`, import.meta.url), 'utf8')) as T
const service = fixture<Service>('service-ephemeral.json')
const ID = service.ID

describe('swarm provider (recorded answers)', () => {
  const swarm = recordedSwarm({ callHistory: true })
  const pool = () => swarm.agent.get('http://localhost')
  const on = (method: string, path: string | ((p: string) => boolean), status: number, body: unknown, times = 1) =>
    pool().intercept({ method, path: typeof path === 'string' ? (p: string) => p.split('?')[0] === path : path }).reply(status, body as object, JSON_HEADERS).times(times)
  const posts = () => (swarm.agent.getCallHistory()?.calls() ?? []).filter((c) => c.method === 'POST')
  const signal = () => AbortSignal.timeout(5000)

  it('lists replicated services with a host-mode port; the ephemeral port of the running task (listed twice) is one upstream', async () => {
    on('GET', '/services', 200, fixture('services-status.json'))
    on('GET', '/tasks', 200, fixture('tasks-ephemeral.json'))
    on('GET', '/info', 200, fixture('info-manager.json'))
    const list = await swarm.provider.list(signal())
    assert.deepEqual(
      list.map((b) => [b.name, b.state, b.upstreams]),
      [['relight-swarm-test-ephemeral', 'running', ['127.0.0.1:32769']]],
    )
    assert.equal(list[0]?.settings.sleep, 'scale')
    assert.equal(list[0]?.details?.last_activity, '2026-11-30T14:00:00.000Z')
  })

  it('check explains a global service and a port published through the routing mesh', async () => {
    on('GET', '/info', 200, fixture('info-manager.json'))
    on('GET', '/services', 200, fixture('services-status.json'))
    const results = await swarm.provider.check(signal())
    assert.ok(results[0]?.ok && /swarm manager/.test(results[0].message))
    const problems = results.filter((r) => !r.ok).map((r) => r.message)
    assert.equal(problems.length, 2, problems.join('\n'))
    assert.ok(problems.some((m) => /relight-swarm-test-global runs in global mode/.test(m)))
    assert.ok(problems.some((m) => /relight-swarm-test-ingress publishes no port in host mode.*mode=host/.test(m)))
  })

  it('check explains a node that is not a manager; a list there fails with the engine\'s reason', async () => {
    on('GET', '/info', 200, fixture('info-worker.json'))
    const results = await swarm.provider.check(signal())
    assert.equal(results.length, 1)
    assert.equal(results[0]?.ok, false)
    assert.match(results[0]?.message ?? '', /is a swarm worker, not a manager.*providers\.swarm\.socket/)
    on('GET', '/services', 503, fixture('services-worker.json'))
    await assert.rejects(swarm.provider.list(signal()), (e) => isRelightError(e) && e.code !== 'RELIGHT_ERR_BACKEND_NOT_FOUND' && /not a swarm manager/.test(e.message))
  })

  it('a scale-down that loses the compare-and-swap (HTTP 500 "update out of sequence") is a refused sleep', async () => {
    on('GET', `/services/${ID}`, 200, service)
    on('POST', `/services/${ID}/update`, 500, fixture('update-out-of-sequence.json'))
    await assert.rejects(swarm.provider.sleep(ID, 'scale', signal(), { idleTimeout: 60_000 }), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /changed/.test(e.message))
    const [post] = posts()
    assert.equal(post?.searchParams.version, String(service.Version.Index), 'sent with the version the activity was read at')
    const spec = JSON.parse(String(post?.body)) as Service['Spec']
    assert.equal(spec.Mode?.Replicated?.Replicas, 0)
    assert.ok(spec.Labels?.['relight.asleep.since'], 'asleep marker in the same update')
    assert.equal(spec.Labels?.['relight.asleep.replicas'], '1')
  })

  it('refuses a sleep, without writing, when a sidecar saw traffic within idle_timeout', async () => {
    const fresh = { ...service, Spec: { ...service.Spec, Labels: { ...service.Spec.Labels, 'relight.last_activity': new Date(Date.now() - 5000).toISOString() } } }
    on('GET', `/services/${ID}`, 200, fresh)
    await assert.rejects(swarm.provider.sleep(ID, 'scale', signal(), { idleTimeout: 60_000 }), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /traffic 5 s ago/.test(e.message))
    assert.equal(posts().length, 0)
  })

  it('a wake records the wake time as activity, replacing a last_activity far in the future rather than keeping it', async () => {
    const asleep = { ...service, Spec: { ...service.Spec, Mode: { Replicated: { Replicas: 0 } }, Labels: { ...service.Spec.Labels, 'relight.last_activity': '2099-01-01T00:00:00.000Z' } } }
    on('POST', `/services/${ID}/update`, 200, '')
    const before = Date.now()
    await (swarm.provider as unknown as { scaleUp(s: Service, signal: AbortSignal): Promise<void> }).scaleUp(asleep, signal())
    const written = JSON.parse(String(posts()[0]?.body)) as Service['Spec']
    const at = Date.parse(written.Labels?.['relight.last_activity'] ?? '')
    assert.ok(at >= before && at <= Date.now(), `last_activity written: ${written.Labels?.['relight.last_activity']}`)
    assert.equal(written.Mode?.Replicated?.Replicas, 1)
  })

  it('shares activity with compare-and-swap: a lost race is retried on a fresh read; a failed write blocks sleeps until one succeeds', async () => {
    // Times near the real clock: a last_activity far in the future counts as absent (review F2).
    const at = Math.floor(Date.now() / 1000) * 1000 - 60_000
    on('GET', `/services/${ID}`, 200, service, 2)
    on('POST', `/services/${ID}/update`, 500, fixture('update-out-of-sequence.json'))
    on('POST', `/services/${ID}/update`, 200, '')
    await swarm.provider.shareActivity(ID, at, signal())
    const written = JSON.parse(String(posts()[1]?.body)) as Service['Spec']
    assert.equal(written.Labels?.['relight.last_activity'], new Date(at).toISOString())
    assert.equal(written.Mode?.Replicated?.Replicas, 1, 'an activity write changes nothing else')

    // An older value than the one in the engine is not written back (the newest wins).
    const newer = { ...service, Spec: { ...service.Spec, Labels: { ...service.Spec.Labels, 'relight.last_activity': new Date(at + 30_000).toISOString() } } }
    on('GET', `/services/${ID}`, 200, newer)
    await swarm.provider.shareActivity(ID, at, signal())
    assert.equal(posts().length, 2)

    // The engine refuses the write: sleeps are refused, without even trying to scale down.
    on('GET', `/services/${ID}`, 200, service)
    on('POST', `/services/${ID}/update`, 403, { message: 'forbidden' })
    await assert.rejects(swarm.provider.shareActivity(ID, Date.now(), signal()), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
    on('GET', `/services/${ID}`, 200, service)
    await assert.rejects(swarm.provider.sleep(ID, 'scale', signal(), { idleTimeout: 1000 }), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /could not write/.test(e.message))
    assert.equal(posts().length, 3)
  })
})

describe('swarm labels and ports', () => {
  it('reads the awake count, remembers the count from before a sleep, and names bad labels', () => {
    assert.equal(readServiceLabels({ 'relight.domain': 'a.example.com' }, 'relight').replicas, 1)
    assert.equal(readServiceLabels({ 'relight.domain': 'a', 'relight.replicas': '3' }, 'relight').replicas, 3)
    assert.equal(readServiceLabels({ 'relight.domain': 'a', 'relight.asleep.replicas': '2' }, 'relight').replicas, 2)
    const bad = readServiceLabels({ 'relight.domain': 'a', 'relight.replicas': '0', 'relight.sleep': 'pause' }, 'relight')
    assert.equal(bad.replicas, 1)
    assert.ok(bad.problems.some((p) => p.startsWith('relight.replicas="0"')))
    assert.ok(bad.problems.some((p) => p.startsWith('relight.sleep="pause"')))
  })

  it('picks the target port from the label or the only host-mode port', () => {
    const svc = (ports: object[]) => ({ ID: 'x', Version: { Index: 1 }, Spec: { EndpointSpec: { Ports: ports } } }) as unknown as Service
    const host = (target: number) => ({ Protocol: 'tcp', TargetPort: target, PublishMode: 'host' })
    assert.deepEqual(targetPort(svc([host(8080)]), undefined, 'relight'), { target: 8080 })
    assert.deepEqual(targetPort(svc([host(8080), host(9090)]), 9090, 'relight'), { target: 9090 })
    assert.match((targetPort(svc([host(8080), host(9090)]), undefined, 'relight') as { problem: string }).problem, /several host-mode ports \(8080, 9090\)/)
    assert.match((targetPort(svc([{ ...host(8080), PublishMode: 'ingress' }]), 8080, 'relight') as { problem: string }).problem, /not published in host mode/)
  })
})
