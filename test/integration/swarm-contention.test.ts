/**
 * The contention suite of issue 21, short form, on the local swarm: three sidecar processes, each
 * behind its own real Caddy and its own counting, pausable proxy to the Docker socket, one busybox
 * service published on a 127.0.0.1 host port, idle_timeout 4 s. Truth from the engine's own
 * events (test/helpers/contention.ts). The targets of the issue are asserted: 0 needless sleeps,
 * 0 failed requests (outside a killed sidecar).
 *
 * On the round-2 protocol (labels compared by wall clock; no `sleepIf` in the Swarm provider) the
 * scenarios are known to miss those targets (issue 21's measurements): they run and report their
 * figures, marked TODO, so the file documents the gap; with the shared-decision port they count.
 * Long form with figures: `npm run soak:cluster`.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { caddySkip } from '../helpers/caddy.js'
import { Cluster, sharedProtocol } from '../helpers/contention.js'
import { s1, s10, s2, s3, s4, s5, s7 } from '../helpers/contention-scenarios.js'
import { fakeTimeSkip } from '../helpers/faketime.js'
import { swarmSkip } from '../helpers/swarm.js'

const skip = (await swarmSkip()) ?? caddySkip()
const IDLE_MS = 4000
const todo = sharedProtocol('swarm') ? undefined : 'round-2 protocol (no shared-decision port in the Swarm provider): issue 21 targets expected to be missed'
const opts = (extra: { skip?: string | undefined } = {}) => ({ ...(todo ? { todo } : {}), ...(extra.skip ? { skip: extra.skip } : {}) })

describe('swarm contention: three sidecars, one service', { skip, timeout: 420_000 }, () => {
  let c: Cluster

  before(async () => {
    c = await Cluster.start({ engine: 'swarm', sidecars: 3, idleMs: IDLE_MS })
  })
  after(async () => {
    await c?.close()
  })

  it('S1: traffic hopping between the sidecars: no failure, no scale-down during, one after', opts(), async (t) => {
    const since = Date.now()
    const r = await s1(c, 40_000)
    t.diagnostic(`S1 ${JSON.stringify(r)}`)
    t.diagnostic(`S1 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.equal(r.downsDuring, 0, 'scale-downs during the traffic')
    assert.equal(r.downsAfter, 1, 'exactly one scale-down after the traffic')
    assert.ok(r.sleepAfterMs !== undefined && r.sleepAfterMs >= IDLE_MS && r.sleepAfterMs <= IDLE_MS + 1500, `scale-down ${r.sleepAfterMs} ms after the last request`)
  })

  it('S2: bursts at two sidecars as the idle timer expires are never slept', opts(), async (t) => {
    const since = Date.now()
    const r = await s2(c, 6)
    t.diagnostic(`S2 ${JSON.stringify(r)}`)
    t.diagnostic(`S2 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, `needless sleeps (${r.slept} of ${r.trials} trials)`)
  })

  it('S3: kill -9 of the busy sidecar: no needless sleep, failures only at the dead edge', opts(), async (t) => {
    const since = Date.now()
    const r = await s3(c)
    t.diagnostic(`S3 ${JSON.stringify(r)}`)
    t.diagnostic(`S3 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
  })

  for (const mode of ['freeze', 'cut'] as const) {
    it(`S4 (${mode}): the engine ${mode === 'freeze' ? 'frozen' : 'cut off'} for 1.5·idle while B has traffic`, opts(), async (t) => {
      const since = Date.now()
      const r = await s4(c, mode)
      t.diagnostic(`S4 ${JSON.stringify(r)}`)
      t.diagnostic(`S4 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
      assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
      assert.equal(r.needless, 0, 'needless sleeps')
    })
  }

  it('S7: a request right after a scale-down waits for the wake instead of failing', opts(), async (t) => {
    const since = Date.now()
    const r = await s7(c, 3)
    t.diagnostic(`S7 ${JSON.stringify(r)}`)
    t.diagnostic(`S7 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.missed, 0, 'trials without a scale-down')
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
  })

  it('S10: a restarted sidecar scales nothing down for one idle_timeout after its start', opts(), async (t) => {
    const since = Date.now()
    const r = await s10(c)
    t.diagnostic(`S10 ${JSON.stringify(r)}`)
    t.diagnostic(`S10 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.ok(r.downAfterStartMs !== undefined && r.downAfterStartMs >= IDLE_MS, `scale-down ${r.downAfterStartMs} ms after the restarted sidecar started`)
  })

  // last: it restarts two sidecars under libfaketime
  it('S5: A 120 s ahead, C 120 s behind: no needless sleep, one scale-down ≥ idle after the last request', opts({ skip: fakeTimeSkip() }), async (t) => {
    const since = Date.now()
    const r = await s5(c)
    t.diagnostic(`S5 ${JSON.stringify(r)}`)
    t.diagnostic(`S5 sidecar log: ${JSON.stringify(c.sleepLog(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.equal(r.downsAfter, 1, 'exactly one scale-down after the traffic')
    assert.ok(r.sleepAfterMs !== undefined && r.sleepAfterMs >= IDLE_MS, `scale-down ${r.sleepAfterMs} ms after the last request`)
  })
})
