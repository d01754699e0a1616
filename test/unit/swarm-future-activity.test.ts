/**
 * Swarm provider: a relight.last_activity label in the future (skewed clock, hand edit) does not
 * keep a service up for ever. Recorded-engine set-up from test/helpers/swarm-recorded.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { isRelightError } from '../../sidecar/core/errors.js'
import { JSON_HEADERS, recordedSwarm, webService as service } from '../helpers/swarm-recorded.js'

describe('swarm: last_activity in the future', () => {
  const swarm = recordedSwarm({ callHistory: true })
  it('F2: a last_activity far in the future (skewed clock, hand edit) does not keep a service up for ever', async () => {
    // Idle for a day by every real clock; the label says a sidecar saw traffic in 2099.
    swarm.agent.get('http://localhost').intercept({ method: 'GET', path: (p) => p.split('?')[0] === '/services/svc1' }).reply(200, service({ 'relight.last_activity': '2099-01-01T00:00:00.000Z' }), JSON_HEADERS)
    swarm.agent.get('http://localhost').intercept({ method: 'POST', path: (p) => p.split('?')[0] === '/services/svc1/update' }).reply(200, {}, JSON_HEADERS)
    await swarm.provider.sleep('svc1', 'scale', AbortSignal.timeout(5000), { idleTimeout: 60_000 }).catch((e: unknown) => {
      assert.fail(`refused: ${isRelightError(e) ? e.message : String(e)}`)
    })
    // The service was scaled down: one update, to 0 replicas, at the version that was read.
    const updates = (swarm.agent.getCallHistory()?.calls() ?? []).filter((c) => c.method === 'POST')
    assert.equal(updates.length, 1, 'one service update')
    assert.equal(updates[0]?.searchParams.version, '42')
    const spec = JSON.parse(String(updates[0]?.body)) as { Mode?: { Replicated?: { Replicas?: number } } }
    assert.equal(spec.Mode?.Replicated?.Replicas, 0, 'scaled to 0 replicas')
  })
})
