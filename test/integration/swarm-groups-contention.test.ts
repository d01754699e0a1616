/**
 * The contention suite of issue 21, scenario S6, on the local swarm: a group (two routed members
 * X and Y, each with its own host, and one dependency without a domain) across three sidecar
 * processes, each behind its own real Caddy and its own counting, pausable proxy to the Docker
 * socket; idle_timeout 4 s. Truth from the engine's own events (test/helpers/contention-group.ts).
 *
 * - S6a: the scaling sidecar's update of the dependency (to 0) is held by its engine proxy while
 *   another sidecar wakes the group, until the engine has reported the waker's write of the
 *   dependency (and at least 1–5 s): every trial runs the race. The dependency is never at 0 while a member runs with
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
import { CLOCK_TOLERANCE_MS, GroupCluster, s6a, s6b } from '../helpers/contention-group.js'
import { uniform } from '../helpers/contention.js'
import { swarmSkip } from '../helpers/swarm.js'

const skip = (await swarmSkip()) ?? caddySkip()
const IDLE_MS = 4000
const TRIALS = Number(process.env.RELIGHT_S6A_TRIALS ?? 3)
/**
 * Time budget (the suite's timeout is 360 s). Every wait of the scenarios is cut to its deadline,
 * so a slow engine fails an assertion with figures instead of the timeout: S6a ends by 200 s after
 * its start and leaves S6b at least 60 s; everything ends by 320 s after `before` began, leaving
 * 40 s for `after` (three sidecars, Caddies and the services removed). Typical: S6a 60–80 s, S6b
 * 25–30 s, start 5–10 s.
 */
const SUITE_BUDGET_MS = 320_000
const S6A_BUDGET_MS = 200_000
const S6B_AT_LEAST_MS = 60_000

describe('swarm contention: a group across three sidecars', { skip, timeout: 360_000 }, () => {
  let c: GroupCluster
  let suiteDeadline = Number.POSITIVE_INFINITY

  before(async () => {
    suiteDeadline = Date.now() + SUITE_BUDGET_MS
    c = await GroupCluster.start({ sidecars: 3, idleMs: IDLE_MS })
  })
  after(async () => {
    await c?.close()
  })

  it('S6a: a dependency scale-down held until another sidecar waking the group wrote the dependency is refused', async (t) => {
    const since = Date.now()
    c.deadline = Math.min(since + S6A_BUDGET_MS, suiteDeadline - S6B_AT_LEAST_MS)
    // each held write goes on 300 ms after the engine reported the waker's write of the dependency,
    // and not before 1–5 s (the hold); at most 30 s waiting for that write
    const r = await s6a(c, TRIALS, { minMs: () => uniform(1000, 5000), afterWriteMs: 300, maxMs: 30_000 })
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
    // The holds go on only after the waker's write of the dependency: every trial runs the race
    // (a trial that did not waited 30 s for a wake that never wrote the dependency)
    assert.equal(r.trials.length, TRIALS, 'trials that held a scale-down of the dependency')
    assert.deepEqual(
      r.trials.filter((x) => !x.raced).map((x) => `${x.holder}/${x.waker}: dependency written ${x.depWriteAfterMs} ms after the hold`),
      [],
      "trials that did not run the race (the waker's write of the dependency did not come during the hold)",
    )
    assert.deepEqual(
      r.trials.filter((x) => x.heldLanded).map((x) => x.holder),
      [],
      "held scale-downs that landed although the waker's write of the dependency came first",
    )
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, 'needless sleeps')
    assert.equal(r.unsettled, 0, 'trials whose group did not sleep afterwards')
    assert.deepEqual(r.unrequestedWakes, [], 'the group woken with no request since it slept (ms after the start)')
  })

  it('S6b: X idle on A while B serves Y: nothing of the group sleeps; afterwards members, then the dependency', async (t) => {
    const since = Date.now()
    c.deadline = suiteDeadline
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
    // the last request's end is the test's clock, which may lag the sidecar's (CLOCK_TOLERANCE_MS)
    assert.ok(Math.min(r.xAfterMs, r.yAfterMs) >= IDLE_MS - CLOCK_TOLERANCE_MS, `members scaled down ${r.xAfterMs} / ${r.yAfterMs} ms after the last request`)
    assert.equal(r.downsAfter, 3, 'exactly one scale-down per service after the traffic')
    assert.deepEqual(r.unrequestedWakes, [], 'the group woken with no request since it slept (ms after the start)')
  })
})
