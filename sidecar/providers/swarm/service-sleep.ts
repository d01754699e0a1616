/**
 * `sleepIf()`: scale to 0 only if nobody wrote the service since the version the core judged.
 * A fresh read that must answer within FRESH_READ_MS starts it (a frozen engine sends nothing and
 * closes nothing: this read is the proof it answers now; a slow read marks the view not live).
 * An UpdatedAt other than the judged one is a change (no write); else the scale-down carries the
 * read's version, so any write since makes the engine refuse it (HTTP 500 out of sequence ⇒
 * changed, no retry). Dependencies of a group go down only when every routed member is at 0 and
 * they too were untouched for idle_timeout here, by the same conditional write.
 */
import { isRelightError, toRelightError } from '../../core/errors.js'
import { type Observation, type SleepIfAnswer, sharedBlocker } from '../../core/shared.js'
import { type SwarmContext, nameOf, replicasOf, withReplicas } from './context.js'
import { readServiceLabels } from './labels.js'
import { type Service, type ServiceSpec, isOutOfSequence, parseUpdatedAt, sameMicros } from './services.js'

/** The fresh read before a scale-down must answer within this. */
export const FRESH_READ_MS = 1_000

export async function sleepIf(ctx: SwarmContext, id: string, unchangedSince: string, signal: AbortSignal, idleTimeout?: number): Promise<SleepIfAnswer> {
  let fresh: Service
  try {
    fresh = await ctx.view.read(id, signal, FRESH_READ_MS)
  } catch (err) {
    if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND') || signal.aborted) throw err
    return changed(ctx, id)
  }
  const us = parseUpdatedAt(fresh.UpdatedAt)
  let judged: bigint | undefined
  try {
    judged = BigInt(unchangedSince)
  } catch {
    judged = undefined
  }
  if (us === undefined || judged === undefined || !sameMicros(us, judged)) {
    if (us !== undefined) ctx.view.noteChange(id, us)
    return changed(ctx, id)
  }
  const replicas = replicasOf(fresh)
  if (replicas === 0) return { result: 'slept' }
  // How long the member was untouched here: its observation's age WITHOUT the writer's ago_ms.
  // A wake writes the dependencies before the member, so a dependency untouched at least that
  // long was not touched by any wake since the member's last one. (With ago_ms added, a token's
  // ago after a restart or reconnect — every seenAt reset to the same instant — made the member
  // always "older" than its dependencies, and they stayed up for good.)
  const judgedObs = ctx.view.observe(id)
  const memberIdle = judgedObs ? ctx.view.now() - judgedObs.seenAt : 0
  try {
    await ctx.view.write(id, (s) => scaleDownSpec(ctx, s), signal, fresh)
  } catch (err) {
    if (isOutOfSequence(err)) return changed(ctx, id)
    throw ctx.engineError(err, fresh, 'scale down', false)
  }
  ctx.log.info({ service: nameOf(fresh), replicas_before: replicas }, 'scaled to zero')
  const group = readServiceLabels(fresh.Spec.Labels ?? {}, ctx.prefix).group
  if (group !== undefined) {
    await sleepGroupDependencies(ctx, group, idleTimeout ?? ctx.explicitIdleTimeout(fresh) ?? memberIdle, signal)
  }
  return { result: 'slept' }
}

/** Retries of a dependency sleep start no sooner than this after the last try. */
const DEPENDENCY_RETRY_MIN_MS = 1_000

/**
 * sleepDependencies, logged; a dependency touched too recently is tried again once it has been
 * quiet long enough (the core's sweep does not call sleepIf for a member already at 0, so nothing
 * else would retry it before the group's next wake and sleep).
 */
async function sleepGroupDependencies(ctx: SwarmContext, group: string, idleTimeout: number, signal: AbortSignal): Promise<void> {
  try {
    const r = await sleepDependencies(ctx, group, idleTimeout, signal)
    if (r.retryInMs !== undefined) {
      ctx.later(`deps:${group}`, Math.max(r.retryInMs, DEPENDENCY_RETRY_MIN_MS), (s) => sleepGroupDependencies(ctx, group, idleTimeout, s))
    }
  } catch (err) {
    const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { provider: ctx.kind })
    ctx.log.warn({ group, code: error.code, err: error.message }, 'could not scale the group\'s dependencies down; they stay up until the group sleeps again')
  }
}

/** Replicas 0, the asleep marker, and the awake count when no label says it. */
export function scaleDownSpec(ctx: SwarmContext, s: Service): ServiceSpec {
  const count = replicasOf(s)
  const explicitCount = s.Spec.Labels?.[`${ctx.prefix}.replicas`] !== undefined
  return withReplicas(s.Spec, 0, (labels) => {
    labels[ctx.labels.asleepSince] = new Date().toISOString()
    if (!explicitCount && count > 0) labels[ctx.labels.asleepReplicas] = String(count)
    else if (explicitCount) delete labels[ctx.labels.asleepReplicas]
  })
}

/**
 * After a routed member slept: a dependency goes down only when, in one fresh list of the group,
 * every routed member is at 0, and the dependency's own observation is live and unchanged for
 * idle_timeout here (the member's `<prefix>.idle_timeout` label or the provider's setting; the
 * provider does not see the top-level defaults, so otherwise: at least as long as the member the
 * core judged idle, which is at least idle_timeout); then with the version of that list (a wake's token written since ⇒ refused).
 */
export async function sleepDependencies(
  ctx: SwarmContext,
  group: string,
  idleTimeout: number,
  signal: AbortSignal,
): Promise<{ slept: string[]; retryInMs?: number }> {
  const members = await ctx.api.list({ label: [`${ctx.prefix}.group=${group}`] }, signal)
  for (const m of members) ctx.view.absorb(m, false)
  const routed = members.filter((s) => readServiceLabels(s.Spec.Labels ?? {}, ctx.prefix).hosts.length > 0)
  if (routed.some((s) => replicasOf(s) > 0)) return { slept: [] }
  const now = ctx.view.now()
  let retryInMs: number | undefined
  const deps = members.filter((s) => {
    if (!s.Spec.Mode?.Replicated || routed.includes(s) || replicasOf(s) === 0) return false
    const obs = ctx.view.observe(s.ID)
    if (obs === undefined) return false
    // A dependency touched within idle_timeout (a wake's ensureUp) may be under another sidecar's wake.
    if (sharedBlocker({ ...obs, agoMs: 0 }, obs.seenAt, now, idleTimeout) === undefined) return true
    const due = obs.seenAt + idleTimeout - now
    retryInMs = retryInMs === undefined ? due : Math.min(retryInMs, due)
    return false
  })
  const later = retryInMs !== undefined ? { retryInMs } : {}
  if (deps.length === 0) return { slept: [], ...later }
  ctx.log.info({ group, services: deps.map(nameOf) }, 'group asleep; scaling its dependencies down')
  const slept: string[] = []
  await Promise.all(
    deps.map(async (s) => {
      try {
        await ctx.view.write(s.ID, (cur) => scaleDownSpec(ctx, cur), signal, s)
        slept.push(s.ID)
      } catch (err) {
        // A lost race means someone changed the dependency (maybe woke the group): leave it up.
        if (!isOutOfSequence(err)) throw err
      }
    }),
  )
  return { slept, ...later }
}

function changed(ctx: SwarmContext, id: string): SleepIfAnswer {
  const observation: Observation = ctx.view.observe(id) ?? { version: '', seenAt: ctx.view.now(), agoMs: 0, live: false }
  return { result: 'changed', observation }
}
