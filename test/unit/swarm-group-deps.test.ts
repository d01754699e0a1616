/**
 * Swarm group dependencies across sidecars (issue 21 §3): a dependency another sidecar's wake
 * just touched is not scaled down under it. Round 2 guarded the dependency with only its own
 * version and a wall-clock last_activity; now sidecar B's wake writes a token into the
 * dependency BEFORE the member, and A scales a dependency down only when every routed member is
 * at 0 and the dependency's own observation was unchanged for idle_timeout here, with the
 * version of that read. In-memory swarm (test/fakes/swarm-engine.ts), two provider instances.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fakeSwarmSetup, until } from '../helpers/swarm-fake.js'

const replicas = (s: { Spec: { Mode?: { Replicated?: { Replicas?: number } } } } | undefined) => s?.Spec.Mode?.Replicated?.Replicas

describe('swarm: group dependencies', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('does not scale down a dependency another sidecar woke a moment ago (its wake of the routed member is under way)', async () => {
    swarm().add('db', { 'relight.group': 'shop' }, 0)
    swarm().add('shop', { 'relight.domain': 'shop.example.com', 'relight.group': 'shop', 'relight.idle_timeout': '10s' }, 1)
    swarm().add('admin', { 'relight.domain': 'admin.example.com', 'relight.group': 'shop' }, 0)
    const a = await sidecar({ identity: 'edge-a' })
    const b = await sidecar({ identity: 'edge-b' })
    a.clock.now += 60_000
    // B wakes admin, slowly: the database is ensured up first; admin's own write is held back.
    let release: () => void = () => undefined
    const held = new Promise<void>((r) => (release = r))
    swarm().beforeUpdate = async (id) => {
      if (id === 'admin') await held
    }
    const waking = b.provider.wake('admin', AbortSignal.timeout(5000))
    await until(() => replicas(swarm().services.get('db')) === 1, 'B scaled the database up')
    // Meanwhile A sleeps shop (idle everywhere): the group looks asleep (admin still at 0).
    const obs = a.provider.shared.observe('shop')
    const answer = await a.provider.shared.sleepIf('shop', obs?.version ?? '', AbortSignal.timeout(5000))
    assert.deepEqual(answer, { result: 'slept' })
    assert.equal(replicas(swarm().services.get('db')), 1, 'the database B just woke stays up')
    release()
    await waking
    assert.equal(replicas(swarm().services.get('admin')), 1)
  })
})
