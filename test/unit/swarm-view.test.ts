/**
 * The Swarm view (providers/swarm/view.ts) over an in-memory swarm: own writes are silent even
 * when their event arrives before the update's answer; someone else's write moves the
 * observation without a task list; replicas.new raises one upsert; inspects are coalesced; a
 * reconnect re-lists and resets every seenAt.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fakeSwarmSetup, until } from '../helpers/swarm-fake.js'
import { drain } from '../helpers/wait.js'
import { deferred } from '../fakes/memory-provider.js'

const WEB = { 'relight.domain': 'web.example.com' }

describe('swarm view', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('recognises its own write by UpdatedAt (event before the answer): no upsert, no inspect, not stale', async () => {
    swarm().add('web', WEB)
    const a = await sidecar()
    const calls = swarm().calls.length
    const answer = await a.provider.shared.recordActivity('web', 0, AbortSignal.timeout(2000))
    await drain() // the own event arrived before the answer; an inspect it caused would start now (inspectEveryMs 0, no timer)
    assert.equal(answer.state, 'awake')
    assert.deepEqual(swarm().calls.slice(calls), ['POST /services/web/update', 'GET /services/web'], 'one update and one read-back, nothing after the own event')
    assert.equal(a.provider.view.entry('web')?.stale, false)
    assert.deepEqual(a.events.filter((e) => e.type !== 'resync' && e.type !== 'connection'), [])
    const us = BigInt(Date.parse((swarm().services.get('web')?.UpdatedAt ?? '').slice(0, 19) + 'Z')) * 1000n
    assert.ok(BigInt(a.provider.shared.observe('web')?.version ?? '0') - us < 1_000_000n)
  })

  it('someone else\'s write moves seenAt (on its own clock), marks stale, reads once, lists no tasks', async () => {
    swarm().add('web', WEB)
    const a = await sidecar()
    const before = a.provider.shared.observe('web')
    a.clock.now += 5000
    const calls = swarm().calls.length
    swarm().writeAsOther('web', (spec) => ({ ...spec, Labels: { ...spec.Labels, 'relight.activity': 'v1 edge-2 0123456789abcdef 700' } }))
    await until(() => a.provider.shared.observe('web')?.agoMs === 700, 'the coalesced inspect')
    const after = a.provider.shared.observe('web')
    assert.notEqual(after?.version, before?.version)
    assert.equal(after?.seenAt, before!.seenAt + 5000)
    assert.deepEqual(swarm().calls.slice(calls), ['GET /services/web'])
    assert.deepEqual(a.events.filter((e) => e.type !== 'resync' && e.type !== 'connection'), [], 'a token write changes nothing routing uses')
  })

  it('replicas.new from someone else raises one upsert (scaled_to_zero)', async () => {
    swarm().add('web', WEB)
    const a = await sidecar()
    swarm().writeAsOther('web', (spec) => ({ ...spec, Mode: { Replicated: { Replicas: 0 } } }))
    await until(() => a.events.some((e) => e.type === 'upsert'))
    await drain() // the event's inspect (no timer with inspectEveryMs 0) has been absorbed
    const upserts = a.events.filter((e) => e.type === 'upsert')
    assert.equal(upserts.length, 1)
    assert.equal(upserts[0]?.type === 'upsert' && upserts[0].backend.state, 'scaled_to_zero')
  })

  it('coalesces the inspects of a burst of writes', async () => {
    swarm().add('web', WEB)
    const a = await sidecar({ inspectEveryMs: 50 })
    // The first read is held until every write of the burst has arrived, and the scripted clock
    // is then past inspectEveryMs: the one further read needs no real timer.
    const api = swarm().api as unknown as { inspect: (id: string, s: AbortSignal) => Promise<unknown> }
    const orig = api.inspect
    const release = deferred()
    let held = false
    api.inspect = async (id: string, s: AbortSignal) => {
      if (!held) {
        held = true
        await release.promise
      }
      return orig(id, s)
    }
    const calls = swarm().calls.length
    for (let i = 0; i < 5; i++) swarm().writeAsOther('web', (spec) => ({ ...spec, Labels: { ...spec.Labels, 'relight.activity': `v1 edge-2 0123456789abcde${i} 0` } }))
    await until(() => held, 'the first read')
    await drain() // the rest of the burst arrives while the first read is held
    a.clock.now += 50
    release.resolve()
    await drain()
    assert.equal(a.provider.view.entry('web')?.stale, false)
    assert.deepEqual(swarm().calls.slice(calls), ['GET /services/web', 'GET /services/web'], 'one read, then one for the writes that came during it')
  })

  it('a reconnect re-lists at once and resets every seenAt; the core is told', async () => {
    swarm().add('web', WEB)
    const a = await sidecar()
    let reconnects = 0
    a.provider.shared.onReconnect(() => reconnects++)
    a.clock.now += 60_000
    swarm().cut()
    await until(() => !a.provider.view.live, 'not live')
    assert.equal(a.provider.shared.observe('web')?.live, false)
    await until(() => a.provider.view.live, 'live again')
    assert.equal(a.provider.shared.observe('web')?.seenAt, a.clock.now)
    assert.equal(reconnects, 1)
  })

  it('reopens promptly after an outage: the backoff is reset when a stream opens (and delivered)', async () => {
    swarm().add('web', WEB)
    const a = await sidecar()
    // Three failed attempts: the delay has grown to 1.6 s.
    swarm().failEvents = 3
    swarm().cut()
    await until(() => !a.provider.view.live, 'not live')
    // Up to 200 + 400 + 800 + 1600 ms of backoff (the cut itself may count): more than until's default 3 s on busy cores.
    await until(() => a.provider.view.live, 'live after three failures', 10_000)
    const events = a.provider.view.entry('web')?.events ?? 0
    swarm().writeAsOther('web', (spec) => ({ ...spec, Labels: { ...spec.Labels, x: '1' } }))
    await until(() => (a.provider.view.entry('web')?.events ?? 0) > events, 'the stream delivered the write')
    const cutAt = Date.now()
    swarm().cut()
    await until(() => !a.provider.view.live, 'not live')
    await until(() => a.provider.view.live, 'live again')
    const took = Date.now() - cutAt
    assert.ok(took < 1000, `reopened after ${took} ms (the first delay, not the grown one)`)
  })
})
