/**
 * Swarm provider: warn-once bookkeeping for label values that change all the time stays bounded.
 * Recorded-engine set-up from test/helpers/swarm-recorded.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { recordedSwarm, webService as service } from '../helpers/swarm-recorded.js'

describe('swarm: warnings for changing label values', () => {
  const swarm = recordedSwarm()
  it('F5: label values that change all the time do not grow the provider\'s memory without bound', () => {
    for (let i = 0; i < 10_000; i++) swarm.provider.toBackend(service({ 'relight.replicas': `x${i}` }), [])
    const warned = (swarm.provider as unknown as { warned: Set<string> }).warned
    assert.ok(warned.size < 1000, `warn-once keys kept: ${warned.size}`)
  })
})
