/**
 * The shared-engine contract (core/shared.ts; docs/plans/issue-21-shared-decisions.md §7.5): what
 * every cluster provider's `shared` port must do, run with TWO provider instances on one engine
 * (two sidecars: A and B), each following the engine through its own `watch()`. The first
 * real-engine tests that interleave two deciders.
 *
 * - wake-records: a wake that finds the backend up still writes activity (the other view sees a new version).
 * - own-writes-silent: a sidecar's own activity write raises no upsert/state on its own listener.
 * - sleepIf-after-activity-fails: A judged version v; B records activity; A's sleepIf(v) answers
 *   `changed` and the workload stays up (whether or not A's view saw B's write yet).
 * - sleepIf-clean: unchanged since v: `slept`, and the engine says 0; recordActivity then answers `asleep`.
 * - reconnect-resets-seenAt (when the target can cut A's view): after the view is back, seenAt ≥ the reconnect.
 *
 * Used by test/integration/kubernetes-shared.test.ts (real API server) and, for Swarm, by the
 * swarm helper's suite: a target supplies `make()`.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { Provider, ProviderEvent } from '../../sidecar/core/provider.js'
import type { SharedEngine } from '../../sidecar/core/shared.js'
import { until } from '../helpers/wait.js'

export type SharedProvider = Provider & { readonly shared: SharedEngine }

export interface SharedPair {
  readonly a: SharedProvider
  readonly b: SharedProvider
  /** A backend both can wake and sleep, asleep (0 replicas) when made. */
  readonly id: string
  /** Replicas the engine reports now (its own answer, not a provider's). */
  replicas(): Promise<number>
  /**
   * Optional: break A's view of the engine (streams fail) until the returned function restores
   * it. Without it the reconnect test is skipped.
   */
  cut?(): Promise<() => Promise<void>>
  cleanup(): Promise<void>
}

export interface SharedContractTarget {
  /** Bound for each test (ms). */
  readonly timeout?: number
  make(): Promise<SharedPair>
}

export function runSharedEngineContract(name: string, target: SharedContractTarget): void {
  describe(`shared-engine contract: ${name}`, { timeout: (target.timeout ?? 60_000) * 6 }, () => {
    let pair: SharedPair
    const events: { a: ProviderEvent[]; b: ProviderEvent[] } = { a: [], b: [] }
    const stop = new AbortController()
    const signal = () => AbortSignal.timeout(target.timeout ?? 60_000)

    before(async () => {
      pair = await target.make()
      pair.a.watch?.((e) => events.a.push(e), stop.signal)
      pair.b.watch?.((e) => events.b.push(e), stop.signal)
      await until(() => pair.a.shared.observe(pair.id)?.live && pair.b.shared.observe(pair.id)?.live, 'both views to list the backend and go live')
    })
    after(async () => {
      stop.abort()
      await pair?.cleanup()
    })

    /** Both views show the same version (what the engine holds now, once their watches caught up). */
    const agreed = (): Promise<string> =>
      until(() => {
        const va = pair.a.shared.observe(pair.id)?.version
        return va !== undefined && va === pair.b.shared.observe(pair.id)?.version ? va : undefined
      }, 'both views to agree on the version')

    it('wake-records: a wake that finds the backend up still writes activity, and the other view sees it', async () => {
      await pair.a.wake(pair.id, signal())
      assert.ok((await pair.replicas()) > 0)
      const before = await agreed()
      await pair.b.wake(pair.id, signal()) // already up: a token only
      await until(() => pair.a.shared.observe(pair.id)?.version !== before, "A's view to see B's wake as activity")
      assert.ok((await pair.replicas()) > 0)
    })

    it('own-writes-silent: a sidecar raises no upsert for its own activity write', async () => {
      await agreed()
      const upserts = () => events.a.filter((e) => (e.type === 'upsert' && e.backend.id === pair.id) || (e.type === 'state' && e.id === pair.id)).length
      const counted = upserts()
      const answer = await pair.a.shared.recordActivity(pair.id, 0, signal())
      assert.equal(answer.state, 'awake')
      const written = answer.state === 'awake' ? answer.observation.version : ''
      // B's view receiving the write proves the engine sent it out; A's own event is bounded by the same watch delay.
      await until(() => pair.b.shared.observe(pair.id)?.version === written && pair.a.shared.observe(pair.id)?.version === written, 'both views to show the write')
      await new Promise((r) => setTimeout(r, 300)) // A's own event may trail B's: a bounded grace, not a synchronisation
      assert.equal(upserts() - counted, 0, `A emitted for its own write: ${JSON.stringify(events.a.slice(-3))}`)
    })

    it('sleepIf-after-activity-fails: A judged v, B records activity, A.sleepIf(v) answers changed and the workload stays up', async () => {
      const v = await agreed()
      const recorded = await pair.b.shared.recordActivity(pair.id, 0, signal())
      assert.equal(recorded.state, 'awake')
      // No wait for A's view: the fresh read or the engine's precondition must catch it.
      const answer = await pair.a.shared.sleepIf(pair.id, v, signal())
      assert.equal(answer.result, 'changed')
      assert.ok((await pair.replicas()) > 0, 'still up')
    })

    it('sleepIf-clean: unchanged since v ⇒ slept; then recordActivity answers asleep', async () => {
      const v = await agreed()
      const answer = await pair.a.shared.sleepIf(pair.id, v, signal())
      assert.equal(answer.result, 'slept')
      assert.equal(await pair.replicas(), 0)
      const late = await pair.b.shared.recordActivity(pair.id, 0, signal())
      assert.equal(late.state, 'asleep', 'a token write that finds it at 0 says so (the caller wakes it)')
    })

    it('reconnect-resets-seenAt: after A’s view is cut and back, it counts from the reconnect', async (t) => {
      if (!pair.cut) return t.skip('the target cannot cut a view')
      const restore = await pair.cut()
      await until(() => pair.a.shared.observe(pair.id)?.live === false, "A's view to notice the cut")
      const back = performance.now()
      let reconnected = 0
      const off = pair.a.shared.onReconnect(() => reconnected++)
      await restore()
      await until(() => pair.a.shared.observe(pair.id)?.live, "A's view to be live again")
      off()
      assert.equal(reconnected, 1, 'onReconnect fired once')
      assert.ok((pair.a.shared.observe(pair.id)?.seenAt ?? 0) >= back, 'seenAt reset to the reconnect')
    })
  })
}
