/** recordActivity(): a lost compare-and-swap is retried on a fresh read; a service at 0 is "asleep" and not written. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { fakeSwarmSetup } from '../helpers/swarm-fake.js'

const WEB = { 'relight.domain': 'web.example.com' }

describe('swarm activity', () => {
  const { swarm, sidecar } = fakeSwarmSetup()

  it('retries a lost compare-and-swap (another sidecar wrote first) on a fresh read', async () => {
    swarm().add('web', WEB, 1)
    const a = await sidecar()
    let raced = false
    swarm().beforeUpdate = (id) => {
      if (raced) return
      raced = true
      swarm().writeAsOther(id, (spec) => ({ ...spec, Labels: { ...spec.Labels, 'relight.activity': 'v1 edge-2 0123456789abcdef 0' } }))
    }
    const answer = await a.provider.shared.recordActivity('web', 250, AbortSignal.timeout(2000))
    assert.equal(answer.state, 'awake')
    assert.equal(swarm().count('POST /services/web/update'), 2)
    assert.match(swarm().services.get('web')?.Spec.Labels?.['relight.activity'] ?? '', /^v1 edge-1 [0-9a-f]{16} 250$/)
    assert.equal(answer.state === 'awake' && answer.observation.agoMs, 250)
  })

  it('answers asleep, without writing, when the service is at 0 replicas', async () => {
    swarm().add('web', WEB, 0)
    const a = await sidecar()
    const answer = await a.provider.shared.recordActivity('web', 0, AbortSignal.timeout(2000))
    assert.deepEqual(answer, { state: 'asleep' })
    assert.equal(swarm().count('POST'), 0)
  })
})
