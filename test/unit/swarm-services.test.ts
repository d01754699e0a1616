/** The two engine facts the Swarm view compares (UpdatedAt and event time in µs) and the one port-busy text match. */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { eventMicros, isPortBusy, parseUpdatedAt, sameMicros } from '../../sidecar/providers/swarm/services.js'

describe('swarm services: time stamps and texts', () => {
  it('parses UpdatedAt to exact µs, with trimmed or absent fractions', () => {
    assert.equal(parseUpdatedAt('2026-12-07T17:10:22.101986584Z'), 1796663422101986n)
    assert.equal(parseUpdatedAt('2026-12-07T17:10:22.1Z'), 1796663422100000n)
    assert.equal(parseUpdatedAt('2026-12-07T17:10:22Z'), 1796663422000000n)
    assert.equal(parseUpdatedAt('2026-12-07T17:10:13.55967259Z'), 1796663413559672n)
    assert.equal(parseUpdatedAt('yesterday'), undefined)
    assert.equal(parseUpdatedAt(undefined), undefined)
  })

  it('an event timeNano (a double: 256 ns steps) names the same write as the inspected UpdatedAt (probe on Docker 20.10)', () => {
    // Recorded pairs: event timeNano, inspect UpdatedAt (probe 1, docs/plans/issue-21 §9).
    const pairs: Array<[number, string]> = [
      [1796663422101986584, '2026-12-07T17:10:22.101986584Z'],
      [1796663422348382717, '2026-12-07T17:10:22.348382717Z'],
      [1796663422886292695, '2026-12-07T17:10:22.886292695Z'],
      [1796663426278432444, '2026-12-07T17:10:26.278432444Z'],
    ]
    for (const [nano, at] of pairs) {
      const ev = eventMicros(nano)
      const up = parseUpdatedAt(at)
      assert.ok(ev !== undefined && up !== undefined && sameMicros(ev, up), `${nano} vs ${at}`)
    }
    assert.equal(sameMicros(1796663422101986n, 1796663422101988n), false)
  })

  it('knows a task that lost the host port to the old task', () => {
    assert.ok(isPortBusy('starting container failed: Bind for 0.0.0.0:8080 failed: port is already allocated'))
    assert.ok(isPortBusy('listen tcp 0.0.0.0:8080: bind: address already in use'))
    assert.equal(isPortBusy('no such image'), false)
    assert.equal(isPortBusy(undefined), false)
  })
})
