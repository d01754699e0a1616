/**
 * The short form of the contention suite of issue 21, shared by the two engine files
 * (test/integration/{swarm,kubernetes}-contention.test.ts): each starts its engine and one
 * three-sidecar Cluster, then registers these tests, which assert the targets on it —
 * 0 needless sleeps, 0 failed requests (outside a killed sidecar), engine requests per sidecar
 * that do not grow with the number of sidecars — and print their figures as diagnostics.
 */
import assert from 'node:assert/strict'
import { it, type TestContext } from 'node:test'
import type { Cluster } from './contention.js'
import { type CostFigures, costCompare, s1, s10, s2, s3, s4, s5, s7 } from './contention-scenarios.js'
import { fakeTimeSkip } from './faketime.js'

export interface ContentionSuite {
  /** The file's cluster (started in its `before`). */
  readonly cluster: () => Cluster
  readonly idleMs: number
  /** What the engine is called in test names: 'engine', 'API server'. */
  readonly api: string
  /** S7, a request right after a scale-down (Swarm: the old task may still hold the host port). */
  readonly s7?: boolean
  /** A known gap, measured: S8's "traffic at every sidecar" is expected to exceed the margin (why). */
  readonly busyEachTodo?: string
}

/**
 * S8's margin: with 3 sidecars, each sidecar's engine requests (the busiest one's) may exceed
 * the figure of the same sidecar alone by at most this fraction plus `COST_SLACK` requests in
 * the window (one stray read-back or re-list must not fail it; growth with N would be ×2–×3).
 */
export const COST_MARGIN = 0.25
export const COST_SLACK = 3
/** S8's windows (ms): the whole test takes about 2 × (wake + 3 windows + idle) + two restarts. */
const COST_WINDOW_MS = 6000

/** Which per-sidecar figures with N sidecars exceed the lone sidecar's by more than the margin ('' when none). */
export function costExcess(many: CostFigures, one: CostFigures, windowMs: number, figures: readonly CostFigure[]): string {
  const bad: string[] = []
  const slack = { wake: COST_SLACK, perMinute: (COST_SLACK * 60_000) / windowMs }
  for (const f of figures) {
    const worst = Math.max(...many[f])
    const base = one[f][0] ?? 0
    const limit = base * (1 + COST_MARGIN) + (f === 'wake' ? slack.wake : slack.perMinute)
    if (worst > limit) bad.push(`${f}: ${worst} with ${many.sidecars} sidecars > ${limit.toFixed(1)} (${base} alone)`)
  }
  return bad.join('; ')
}

export type CostFigure = 'wake' | 'busyPerMinute' | 'busyEachPerMinute' | 'idlePerMinute'

export function contentionTests(s: ContentionSuite): void {
  const { idleMs } = s
  const report = (t: TestContext, name: string, r: unknown, since: number) => {
    t.diagnostic(`${name} ${JSON.stringify(r)}`)
    t.diagnostic(`${name} sidecar log: ${JSON.stringify(s.cluster().sleepLog(since))}`)
  }
  const outcome = (r: { failed: number; failures: string[]; needless: number }, needless = 'needless sleeps') => {
    assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    assert.equal(r.needless, 0, needless)
  }

  it('S1: traffic hopping between the sidecars: no failure, no scale-down during, one after', async (t) => {
    const since = Date.now()
    const r = await s1(s.cluster(), 40_000)
    report(t, 'S1', r, since)
    outcome(r)
    assert.equal(r.downsDuring, 0, 'scale-downs during the traffic')
    assert.equal(r.downsAfter, 1, 'exactly one scale-down after the traffic')
    assert.ok(r.sleepAfterMs !== undefined && r.sleepAfterMs >= idleMs && r.sleepAfterMs <= idleMs + 1500, `scale-down ${r.sleepAfterMs} ms after the last request`)
  })

  it('S2: bursts at two sidecars 100–500 ms before the scaler\'s read are never slept', async (t) => {
    const since = Date.now()
    const r = await s2(s.cluster(), 6)
    report(t, 'S2', r, since)
    outcome(r, `needless sleeps (${r.slept} of ${r.trials} trials)`)
  })

  it('S3: kill -9 of the busy sidecar: no needless sleep, failures only at the dead edge', async (t) => {
    const since = Date.now()
    const r = await s3(s.cluster())
    report(t, 'S3', r, since)
    outcome(r)
  })

  for (const mode of ['freeze', 'cut'] as const) {
    it(`S4 (${mode}): the ${s.api} ${mode === 'freeze' ? 'frozen' : 'cut off'} for 1.5·idle while B has traffic`, async (t) => {
      const since = Date.now()
      const r = await s4(s.cluster(), mode)
      report(t, 'S4', r, since)
      outcome(r)
    })
  }

  if (s.s7) {
    it('S7: a request right after a scale-down waits for the wake instead of failing', async (t) => {
      const since = Date.now()
      const r = await s7(s.cluster(), 3)
      report(t, 'S7', r, since)
      assert.equal(r.missed, 0, 'trials without a scale-down')
      assert.equal(r.failed, 0, `failed: ${r.failures.join('; ')}`)
    })
  }

  it('S10: a restarted sidecar scales nothing down for one idle_timeout after its start', async (t) => {
    const since = Date.now()
    const r = await s10(s.cluster())
    report(t, 'S10', r, since)
    outcome(r)
    assert.ok(r.downAfterStartMs !== undefined && r.downAfterStartMs >= idleMs, `scale-down ${r.downAfterStartMs} ms after the restarted sidecar started`)
  })

  it(`S8: engine requests per sidecar with 3 sidecars ≤ 1 sidecar's + ${COST_MARGIN * 100} % + ${COST_SLACK} requests`, async (t) => {
    const r = await costCompare(s.cluster(), COST_WINDOW_MS)
    t.diagnostic(`S8 3 sidecars: ${JSON.stringify(r.many)}`)
    t.diagnostic(`S8 1 sidecar: ${JSON.stringify(r.one)}`)
    await t.test('one wake, traffic at one sidecar, asleep after a scale-down', () => {
      assert.equal(costExcess(r.many, r.one, COST_WINDOW_MS, ['wake', 'busyPerMinute', 'idlePerMinute']), '', 'engine requests per sidecar grew with the number of sidecars')
    })
    await t.test('traffic at every sidecar', s.busyEachTodo ? { todo: s.busyEachTodo } : {}, () => {
      assert.equal(costExcess(r.many, r.one, COST_WINDOW_MS, ['busyEachPerMinute']), '', 'engine requests per sidecar grew with the number of sidecars')
    })
  })

  // last: it restarts two sidecars under libfaketime
  it('S5: A 120 s ahead, C 120 s behind: no needless sleep, one scale-down ≥ idle after the last request', { skip: fakeTimeSkip() }, async (t) => {
    const since = Date.now()
    const r = await s5(s.cluster())
    report(t, 'S5', r, since)
    outcome(r)
    assert.equal(r.downsAfter, 1, 'exactly one scale-down after the traffic')
    assert.ok(r.sleepAfterMs !== undefined && r.sleepAfterMs >= idleMs, `scale-down ${r.sleepAfterMs} ms after the last request`)
  })
}
