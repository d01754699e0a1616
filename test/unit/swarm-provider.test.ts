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
import { type Service, parseUpdatedAt } from '../../sidecar/providers/swarm/services.js'
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
    // The compat label relight.last_activity is written for older sidecars, never read (issue 21: no wall clock from another host).
    assert.equal(list[0]?.details?.last_activity, undefined)
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

  // The view is not started here: the judged version is the fixture's UpdatedAt in µs.
  const judged = String(parseUpdatedAt(service.UpdatedAt))

  it('a scale-down that loses the compare-and-swap (HTTP 500 "update out of sequence") answers changed', async () => {
    on('GET', `/services/${ID}`, 200, service)
    on('POST', `/services/${ID}/update`, 500, fixture('update-out-of-sequence.json'))
    const answer = await swarm.provider.shared.sleepIf(ID, judged, signal())
    assert.equal(answer.result, 'changed')
    const [post] = posts()
    assert.equal(post?.searchParams.version, String(service.Version.Index), 'sent with the version of the fresh read')
    const spec = JSON.parse(String(post?.body)) as Service['Spec']
    assert.equal(spec.Mode?.Replicated?.Replicas, 0)
    assert.ok(spec.Labels?.['relight.asleep.since'], 'asleep marker in the same update')
    assert.equal(spec.Labels?.['relight.asleep.replicas'], '1')
  })

  it('answers changed, without writing, when the fresh read shows another UpdatedAt than the one judged idle', async () => {
    on('GET', `/services/${ID}`, 200, { ...service, UpdatedAt: '2026-11-30T14:20:29.000000001Z' })
    const answer = await swarm.provider.shared.sleepIf(ID, judged, signal())
    assert.equal(answer.result, 'changed')
    assert.equal(posts().length, 0)
  })

  it('an activity write puts a new token and replaces a last_activity far in the future (compat label from this clock, never read)', async () => {
    const future = { ...service, Spec: { ...service.Spec, Labels: { ...service.Spec.Labels, 'relight.last_activity': '2099-01-01T00:00:00.000Z' } } }
    on('GET', `/services/${ID}`, 200, future)
    on('POST', `/services/${ID}/update`, 200, '')
    on('GET', `/services/${ID}`, 200, { ...future, UpdatedAt: '2026-11-30T14:30:00.000000001Z' })
    const before = Date.now()
    const answer = await swarm.provider.shared.recordActivity(ID, 0, signal())
    assert.equal(answer.state, 'awake')
    const written = JSON.parse(String(posts()[0]?.body)) as Service['Spec']
    assert.match(written.Labels?.['relight.activity'] ?? '', /^v1 \S+ [0-9a-f]{16} 0$/)
    const at = Date.parse(written.Labels?.['relight.last_activity'] ?? '')
    assert.ok(at >= before && at <= Date.now(), `last_activity written: ${written.Labels?.['relight.last_activity']}`)
    assert.equal(written.Mode?.Replicated?.Replicas, 1, 'an activity write changes nothing else')
  })

  it('writes activity with compare-and-swap: a lost race is retried on a fresh read; a refused write rejects (no "failed write" state: a view that is not live blocks sleeps)', async () => {
    on('GET', `/services/${ID}`, 200, service, 2)
    on('POST', `/services/${ID}/update`, 500, fixture('update-out-of-sequence.json'))
    on('POST', `/services/${ID}/update`, 200, '')
    on('GET', `/services/${ID}`, 200, { ...service, UpdatedAt: '2026-11-30T14:30:00.000000001Z' })
    await swarm.provider.shared.recordActivity(ID, 1500, signal())
    assert.equal(posts().length, 2)
    const written = JSON.parse(String(posts()[1]?.body)) as Service['Spec']
    assert.match(written.Labels?.['relight.activity'] ?? '', / 1500$/)

    on('GET', `/services/${ID}`, 200, service)
    on('POST', `/services/${ID}/update`, 403, { message: 'forbidden' })
    await assert.rejects(swarm.provider.shared.recordActivity(ID, 0, signal()), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
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
