/**
 * The contention suite of issue 21, scenario S6, on the local swarm: a group (two routed members
 * X and Y, each with its own host, and one dependency without a domain) across three sidecar
 * processes, each behind its own real Caddy and its own counting, pausable proxy to the Docker
 * socket; idle_timeout 4 s. Truth from the engine's own events (test/helpers/contention-group.ts).
 *
 * - S6a: the scaling sidecar's update of the dependency (to 0) is held 1–5 s by its engine proxy
 *   while another sidecar wakes the group: the dependency is never at 0 while a member runs with
 *   a fresh token (the waker's token on the dependency makes the held conditional write fail);
 *   0 failed requests. On the round-2 protocol: 6 of 6 trials lost the dependency (issue 21).
 * - S6b: X idle on sidecar A while Y is served through sidecar B: nothing of the group is scaled
 *   down while Y is served; after the traffic the group sleeps, members first, then the dependency.
 * - Both: the group is never woken with no request since it slept (before the fix in the sweep's
 *   group rule, a sidecar whose member was kept up only by its startup_grace or by another
 *   sidecar's token re-woke the group another sidecar was putting to sleep: 2–3 times a run).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { caddySkip } from '../helpers/caddy.js'
import { GroupCluster, s6a, s6b } from '../helpers/contention-group.js'
import { uniform } from '../helpers/contention.js'
import { swarmSkip } from '../helpers/swarm.js'

const skip = (await swarmSkip()) ?? caddySkip()
const IDLE_MS = 4000
const TRIALS = Number(process.env.RELIGHT_S6A_TRIALS ?? 3)

describe('swarm contention: a group across three sidecars', { skip, timeout: 360_000 }, () => {
  let c: GroupCluster

  before(async () => {
    c = await GroupCluster.start({ sidecars: 3, idleMs: IDLE_MS })
  })
  after(async () => {
    await c?.close()
  })

  it('S6a: a dependency scale-down held 1–5 s while another sidecar wakes the group is refused', async (t) => {
    const since = Date.now()
    const r = await s6a(c, TRIALS, () => uniform(1000, 5000))
    const { timeline, ...figures } = r
    t.diagnostic(`S6a ${JSON.stringify(figures)}`)
    t.diagnostic(`S6a timeline: ${timeline}`)
    t.diagnostic(`S6a sidecar log: ${JSON.stringify(c.log(since))}`)
    assert.deepEqual(r.unprotected, [], 'the dependency was scaled to 0 while a member ran with a fresh token')
    assert.deepEqual(
      r.trials.map((x) => x.depReplicasAfter),
      r.trials.map(() => 1),
      'the dependency runs after the held scale-down went on',
    )
    // A trial whose waker wrote the dependency only after the hold (a short hold on a loaded box)
    // did not run the race: the held scale-down lands on a group still at 0, the waker scales the
    // dependency up again. It still counts for the checks above; at least one trial must race.
    const raced = r.trials.filter((x) => x.raced)
    assert.deepEqual(
      raced.filter((x) => x.heldLanded).map((x) => x.holder),
      [],
      "held scale-downs that landed although the waker's write of the dependency came first",
    )
    assert.equal(r.trials.length, TRIALS, 'trials that held a scale-down of the dependency')
    assert.ok(raced.length >= 1, "no trial ran the race (the waker's write of the dependency never landed during the hold)")
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.equal(r.unsettled, 0, 'trials whose group did not sleep afterwards')
    assert.deepEqual(r.unrequestedWakes, [], 'the group woken with no request since it slept (ms after the start)')
  })

  it('S6b: X idle on A while B serves Y: nothing of the group sleeps; afterwards members, then the dependency', async (t) => {
    const since = Date.now()
    const r = await s6b(c, 3 * IDLE_MS)
    const { timeline, ...figures } = r
    t.diagnostic(`S6b ${JSON.stringify(figures)}`)
    t.diagnostic(`S6b timeline: ${timeline}`)
    t.diagnostic(`S6b sidecar log: ${JSON.stringify(c.log(since))}`)
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.downsDuring, 0, 'scale-downs of the group while Y was served')
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.ok(r.xAfterMs !== undefined && r.yAfterMs !== undefined && r.depAfterMs !== undefined, 'every service of the group scaled down after the traffic')
    assert.ok(r.depAfterMs > Math.max(r.xAfterMs, r.yAfterMs), `the dependency after the members (x ${r.xAfterMs}, y ${r.yAfterMs}, dependency ${r.depAfterMs} ms)`)
    assert.ok(Math.min(r.xAfterMs, r.yAfterMs) >= IDLE_MS, `members scaled down ${r.xAfterMs} / ${r.yAfterMs} ms after the last request`)
    assert.equal(r.downsAfter, 3, 'exactly one scale-down per service after the traffic')
    assert.deepEqual(r.unrequestedWakes, [], 'the group woken with no request since it slept (ms after the start)')
  })
})
