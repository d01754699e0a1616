/**
 * sleepIf() on an in-memory swarm, and the shared-engine contract with two provider instances
 * (two sidecars): A observes, B records, A's sleepIf answers changed and the service stays up.
 * Group dependencies go down only when every member is at 0 and they too were untouched for idle_timeout.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fakeSwarmSetup, until } from '../helpers/swarm-fake.js'

const WEB = { 'relight.domain': 'web.example.com' }
const replicas = (s: { Spec: { Mode?: { Replicated?: { Replicas?: number } } } } | undefined) => s?.Spec.Mode?.Replicated?.Replicas

describe('swarm sleepIf', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('scales down with the version of a fresh read when nothing changed', async () => {
    swarm().add('web', WEB, 1)
    const a = await sidecar()
    const obs = a.provider.shared.observe('web')
    assert.ok(obs)
    const answer = await a.provider.shared.sleepIf('web', obs.version, AbortSignal.timeout(2000))
    assert.deepEqual(answer, { result: 'slept' })
    assert.equal(replicas(swarm().services.get('web')), 0)
    assert.equal(swarm().services.get('web')?.Spec.Labels?.['relight.asleep.replicas'], '1')
  })

  it('two sidecars: A observes, B records, A\'s sleepIf answers changed without a write; the service stays up', async () => {
    swarm().add('web', WEB, 1)
    const a = await sidecar({ identity: 'edge-a' })
    const b = await sidecar({ identity: 'edge-b' })
    const judged = a.provider.shared.observe('web')?.version ?? ''
    await b.provider.shared.recordActivity('web', 0, AbortSignal.timeout(2000))
    const posts = swarm().count('POST')
    // Whether or not A's view has seen B's event yet: the fresh read shows a newer UpdatedAt.
    const answer = await a.provider.shared.sleepIf('web', judged, AbortSignal.timeout(2000))
    assert.equal(answer.result, 'changed')
    assert.equal(swarm().count('POST'), posts, 'no write')
    assert.equal(replicas(swarm().services.get('web')), 1)
  })

  it('a write landing between the fresh read and the update (out of sequence) answers changed', async () => {
    swarm().add('web', WEB, 1)
    const a = await sidecar()
    swarm().beforeUpdate = (id) => swarm().writeAsOther(id, (spec) => ({ ...spec, Labels: { ...spec.Labels, 'relight.activity': 'v1 edge-2 0123456789abcdef 0' } }))
    const answer = await a.provider.shared.sleepIf('web', a.provider.shared.observe('web')?.version ?? '', AbortSignal.timeout(2000))
    assert.equal(answer.result, 'changed')
    assert.equal(replicas(swarm().services.get('web')), 1)
  })

  it('a fresh read slower than 1 s answers changed and restarts only that service\'s idle clock; two in a row take the view off live (it re-lists)', async () => {
    swarm().add('web', WEB, 1)
    swarm().add('api', { 'relight.domain': 'api.example.com' }, 1)
    const a = await sidecar()
    const apiSeen = a.provider.shared.observe('api')?.seenAt
    a.clock.now += 60_000
    swarm().inspectDelayMs = 1500
    const answer = await a.provider.shared.sleepIf('web', a.provider.shared.observe('web')?.version ?? '', AbortSignal.timeout(5000))
    assert.equal(answer.result, 'changed')
    assert.equal(a.provider.view.live, true, 'one slow answer of a working engine does not reset every service')
    assert.equal(a.provider.shared.observe('web')?.seenAt, a.clock.now, 'the judged service starts its idle time again')
    assert.equal(a.provider.shared.observe('api')?.seenAt, apiSeen, 'other services keep their idle clocks')
    assert.equal(replicas(swarm().services.get('web')), 1)
    const again = await a.provider.shared.sleepIf('api', a.provider.shared.observe('api')?.version ?? '', AbortSignal.timeout(5000))
    assert.equal(again.result, 'changed')
    assert.equal(a.provider.view.live, false, 'a second slow read in a row: the engine may be frozen')
    swarm().inspectDelayMs = 0
    await until(() => a.provider.view.live, 'live again after the re-list')
  })

  it('a dependency touched within idle_timeout stays up; untouched for idle_timeout it goes down with the group', async () => {
    swarm().add('db', { 'relight.group': 'shop' }, 1)
    swarm().add('web', { ...WEB, 'relight.group': 'shop', 'relight.idle_timeout': '10s' }, 1)
    const a = await sidecar()
    // Another sidecar's wake just touched the dependency.
    a.clock.now += 20_000
    swarm().writeAsOther('db', (spec) => ({ ...spec, Labels: { ...spec.Labels, 'relight.activity': 'v1 edge-2 0123456789abcdef 0' } }))
    await until(() => a.provider.view.entry('db')?.stale === false && a.provider.shared.observe('db')?.seenAt === a.clock.now)
    const answer = await a.provider.shared.sleepIf('web', a.provider.shared.observe('web')?.version ?? '', AbortSignal.timeout(2000))
    assert.deepEqual(answer, { result: 'slept' })
    assert.equal(replicas(swarm().services.get('db')), 1, 'the dependency stays up: touched 0 s ago')
    // Later: the group wakes and sleeps again, the dependency untouched for idle_timeout.
    await a.provider.wake('web', AbortSignal.timeout(2000))
    a.clock.now += 11_000
    const again = await a.provider.shared.sleepIf('web', a.provider.shared.observe('web')?.version ?? '', AbortSignal.timeout(2000))
    assert.deepEqual(again, { result: 'slept' })
    assert.equal(replicas(swarm().services.get('db')), 0)
  })
})
