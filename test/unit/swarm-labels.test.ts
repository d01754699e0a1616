/** The activity token the Swarm sidecars write: no time of day, only `ago_ms`; unreadable values count as 0 (the safe side). */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { activityToken, readServiceLabels, sharedLabels, tokenAgoMs } from '../../sidecar/providers/swarm/labels.js'

describe('swarm labels: activity token', () => {
  it('writes `v1 <identity> <16 hex> <ago_ms>`, a new random part each time, and reads ago_ms back', () => {
    const a = activityToken('edge 1', 1234.6)
    const b = activityToken('edge 1', 1234.6)
    assert.match(a, /^v1 edge_1 [0-9a-f]{16} 1235$/)
    assert.notEqual(a, b)
    assert.equal(tokenAgoMs(a), 1235)
    assert.equal(tokenAgoMs('v1 x 0123456789abcdef -5'), 0)
    assert.equal(tokenAgoMs('2026-12-07T17:00:00Z'), 0)
    assert.equal(tokenAgoMs(undefined), 0)
    assert.equal(activityToken('e', -50).endsWith(' 0'), true)
  })

  it('names relight.activity and keeps last_activity only as a name to write', () => {
    assert.deepEqual(sharedLabels('blue'), { activity: 'blue.activity', lastActivity: 'blue.last_activity', asleepSince: 'blue.asleep.since', asleepReplicas: 'blue.asleep.replicas' })
    const facts = readServiceLabels({ 'relight.domain': 'a', 'relight.last_activity': '2099-01-01T00:00:00Z', 'relight.activity': 'v1 e 0123456789abcdef 5' }, 'relight')
    assert.equal(facts.activity, 'v1 e 0123456789abcdef 5')
    assert.equal('lastActivity' in facts, false, 'the wall-clock label is not read')
  })
})
