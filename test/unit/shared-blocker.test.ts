import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { type Observation, sharedBlockedFor, sharedBlocker } from '../../sidecar/core/shared.js'

const IDLE = 10_000
const obs = (o: Partial<Observation>): Observation => ({ version: 'v1', seenAt: 0, agoMs: 0, live: true, ...o })

describe('sharedBlocker (the idle rule of a shared engine, on this host monotonic clock)', () => {
  it('blocks for idle_timeout after the token was first seen here, then lets it sleep', () => {
    assert.match(sharedBlocker(obs({ seenAt: 1000 }), 0, 1000 + IDLE - 1, IDLE) ?? '', /^shared activity changed 10 s ago$/)
    assert.equal(sharedBlocker(obs({ seenAt: 1000 }), 0, 1000 + IDLE, IDLE), undefined)
  })

  it('a view that is not live blocks whatever the age', () => {
    assert.equal(sharedBlocker(obs({ seenAt: 0, live: false }), 0, 10 * IDLE, IDLE), 'engine view disconnected')
  })

  it('counts from when it learnt of the backend while the view has not seen it', () => {
    assert.notEqual(sharedBlocker(undefined, 5000, 5000 + IDLE - 1, IDLE), undefined)
    assert.equal(sharedBlocker(undefined, 5000, 5000 + IDLE, IDLE), undefined)
  })

  it('moves seenAt back by the writer agoMs, clamped to [0, idle_timeout/4]', () => {
    // the writer's last request was 2 s before its write: sleepable 2 s earlier
    assert.equal(sharedBlocker(obs({ seenAt: 10_000, agoMs: 2000 }), 0, 10_000 + IDLE - 2000, IDLE), undefined)
    assert.notEqual(sharedBlocker(obs({ seenAt: 10_000, agoMs: 2000 }), 0, 10_000 + IDLE - 2001, IDLE), undefined)
    // a hostile or wrong value costs at most idle/4
    assert.notEqual(sharedBlocker(obs({ seenAt: 10_000, agoMs: 3_600_000 }), 0, 10_000 + IDLE * 0.75 - 1, IDLE), undefined)
    // a negative one counts as 0 (later, never earlier)
    assert.notEqual(sharedBlocker(obs({ seenAt: 10_000, agoMs: -5000 }), 0, 10_000 + IDLE - 1, IDLE), undefined)
  })

  it('sharedBlockedFor: the ms sharedBlocker goes on blocking with no new token; Infinity while the view is not live', () => {
    for (const [o, known] of [[obs({ seenAt: 1000 }), 0], [obs({ seenAt: 10_000, agoMs: 2000 }), 0], [undefined, 5000]] as const) {
      for (const now of [0, 3000, 8000, 9000, 10_999, 11_000, 15_000, 30_000]) {
        const left = sharedBlockedFor(o, known, now, IDLE)
        assert.equal(left > 0, sharedBlocker(o, known, now, IDLE) !== undefined, `blocks at ${now} iff time is left (${left})`)
        if (left > 0) assert.equal(sharedBlocker(o, known, now + left, IDLE), undefined, `free after ${left} ms`)
      }
    }
    assert.equal(sharedBlockedFor(obs({ seenAt: 1000 }), 0, 4000, IDLE), 7000)
    assert.equal(sharedBlockedFor(obs({ seenAt: 0, live: false }), 0, 10 * IDLE, IDLE), Infinity)
  })
})
