/**
 * `recordActivity()`: a new token in the service (labels only), with the version the view holds
 * (a fresh read when it is stale or the view is not live); a lost compare-and-swap is retried on
 * a fresh read. A service at 0 replicas is not written: another sidecar slept it, the caller wakes it.
 */
import { delay } from '../../core/timers.js'
import type { ActivityAnswer } from '../../core/shared.js'
import { CAS_ATTEMPTS, type SwarmContext, jitter, replicasOf, withReplicas } from './context.js'
import { type Service, isOutOfSequence } from './services.js'
import { stampActivity } from './stamp.js'
import { SKIP } from './view.js'

export async function recordActivity(ctx: SwarmContext, id: string, agoMs: number, signal: AbortSignal): Promise<ActivityAnswer> {
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await ctx.view.write(
        id,
        (s) => (replicasOf(s) === 0 ? SKIP : withReplicas(s.Spec, undefined, (labels) => stampActivity(labels, ctx.labels, ctx.identity, agoMs))),
        signal,
        attempt === 1 && ctx.view.live ? 'cached' : 'fresh',
      )
      if (r.skipped) return { state: 'asleep' }
      const observation = ctx.view.observe(id)
      if (!observation) return { state: 'awake', observation: { version: '', seenAt: 0, agoMs: 0, live: false } }
      return { state: 'awake', observation }
    } catch (err) {
      if (!isOutOfSequence(err) || attempt >= CAS_ATTEMPTS) {
        const s = ctx.view.entry(id)?.service ?? ({ ID: id, Version: { Index: 0 }, Spec: {} } as Service)
        throw ctx.engineError(err, s, 'write the activity of', isOutOfSequence(err))
      }
    }
    await delay(jitter(attempt), signal)
  }
}
