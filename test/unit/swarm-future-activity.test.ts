/**
 * Swarm provider: a relight.last_activity label in the future (skewed clock, hand edit) changes
 * nothing: since issue 21 no sidecar reads a wall-clock time another host wrote (the label is
 * written for older sidecars only). Recorded-engine set-up from test/helpers/swarm-recorded.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { parseUpdatedAt } from '../../sidecar/providers/swarm/services.js'
import { JSON_HEADERS, recordedSwarm, webService as service } from '../helpers/swarm-recorded.js'

describe('swarm: last_activity in the future', () => {
  const swarm = recordedSwarm({ callHistory: true })
  it('F2: a skewed last_activity label (2099) changes nothing: the scale-down judged on the UpdatedAt goes through', async () => {
    const svc = service({ 'relight.last_activity': '2099-01-01T00:00:00.000Z' })
    swarm.agent.get('http://localhost').intercept({ method: 'GET', path: (p) => p.split('?')[0] === '/services/svc1' }).reply(200, svc, JSON_HEADERS).times(2)
    swarm.agent.get('http://localhost').intercept({ method: 'POST', path: (p) => p.split('?')[0] === '/services/svc1/update' }).reply(200, {}, JSON_HEADERS)
    const answer = await swarm.provider.shared.sleepIf('svc1', String(parseUpdatedAt(svc.UpdatedAt)), AbortSignal.timeout(5000))
    assert.deepEqual(answer, { result: 'slept' })
    // The service was scaled down: one update, to 0 replicas, at the version that was read.
    const updates = (swarm.agent.getCallHistory()?.calls() ?? []).filter((c) => c.method === 'POST')
    assert.equal(updates.length, 1, 'one service update')
    assert.equal(updates[0]?.searchParams.version, '42')
    const spec = JSON.parse(String(updates[0]?.body)) as { Mode?: { Replicated?: { Replicas?: number } } }
    assert.equal(spec.Mode?.Replicated?.Replicas, 0, 'scaled to 0 replicas')
  })
})
