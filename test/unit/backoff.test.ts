import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { Backoff, backoffDelay } from '../../sidecar/providers/process/backoff.js'

describe('restart backoff (caddy-supervisor schedule)', () => {
  it('is 0 s, then 1 s doubling, capped at 5 min', () => {
    assert.deepEqual(
      Array.from({ length: 12 }, (_, i) => backoffDelay(i) / 1000),
      [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300],
    )
  })
  it('counts every exit, resets only after 10 minutes of stable running', () => {
    const b = new Backoff()
    const t = 1_000_000
    assert.deepEqual([b.next(5, t), b.next(5, t + 1), b.next(5, t + 2), b.next(5, t + 3)], [0, 1000, 2000, 4000])
    assert.equal(b.next(9 * 60_000, t + 4), 8000, '9 minutes is not stable enough')
    assert.equal(b.next(10 * 60_000, t + 5), 0, 'reset after 10 minutes')
    assert.equal(b.next(1, t + 6), 1000)
  })
  it('resets after 10 minutes without an exit (short runs ended by sleeps do not count as crashes)', () => {
    const b = new Backoff()
    const t = 1_000_000
    assert.deepEqual([b.next(5, t), b.next(5, t + 1), b.next(5, t + 2)], [0, 1000, 2000])
    assert.equal(b.next(5, t + 2 + 9 * 60_000), 4000)
    assert.equal(b.next(5, t + 2 + 19 * 60_000 + 1), 0)
  })
})
