/**
 * sleepIf (core/shared.ts; docs/plans/issue-21-shared-decisions.md §4.6): scale the workload to 0
 * only if its activity token is still `unchangedSince`, with the engine's precondition.
 *
 * 1. The view already shows another token: `changed`, no request.
 * 2. A fresh GET that must answer within FRESH_READ_MS (the proof that the engine answers now: a
 *    frozen API server keeps a watch open and silent). Slow or failed: `changed`, and the view is
 *    distrusted (not live) until its informers list again, which resets every `seenAt`.
 * 3. Its token differs: `changed` (seen now). At 0 already: `slept`.
 * 4. A merge PATCH `{"metadata":{"resourceVersion":<the GET's>},"spec":{"replicas":0}}`: any write
 *    since the GET (another sidecar's token) makes it 409 Conflict. On 409: read again; the token
 *    unchanged (a status write by a controller) ⇒ try again (≤ 3 times), else `changed`.
 * 5. Slept: wait (bounded) until the cached pods are gone or terminating, so a wake right after
 *    does not route to a pod the controller is about to delete.
 */
import { isRelightError, RelightError } from '../../core/errors.js'
import type { Observation, SleepIfAnswer } from '../../core/shared.js'
import { withDeadline } from '../../core/timers.js'
import { getWorkload, patchWorkload, type WorkloadOps } from './workload-patch.js'
import { waitForPods } from './workload-wake.js'
import { specReplicas, type Workload, workloadId, type WorkloadRef } from './workloads.js'

/** The fresh read before a scale-down must answer within this (ms). */
export const FRESH_READ_MS = 1000
/** 409s with the token unchanged (status writes) tried again. */
const CONFLICT_RETRIES = 3
/** How long a sleep waits for the pods of a workload scaled to 0 to be gone or terminating. */
const PODS_GONE_TIMEOUT_MS = 30_000

export async function sleepIf(ops: WorkloadOps, ref: WorkloadRef, unchangedSince: string, signal: AbortSignal, freshReadMs = FRESH_READ_MS): Promise<SleepIfAnswer> {
  const id = workloadId(ref)
  const changed = (): SleepIfAnswer => ({ result: 'changed', observation: observation(ops, id) })
  if (ops.view.started && ops.view.observe(id) !== undefined && ops.view.observe(id)?.version !== unchangedSince) return changed()
  for (let attempt = 0; ; attempt++) {
    let fresh: Workload
    const bound = withDeadline(signal, freshReadMs, () => new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `the API server did not answer the fresh read within ${freshReadMs} ms`, { provider: 'kubernetes' }))
    try {
      fresh = await getWorkload(ops, ref, bound.signal)
    } catch (err) {
      if (signal.aborted || isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) throw err
      if (ops.client.statusOf(err) !== undefined) {
        // The API server answered (RBAC, a server error): it is not frozen, only unhelpful. Stay up.
        ops.log.warn({ workload: id, err: (err as Error).message }, 'sleep refused: the fresh read before the scale-down failed')
        return changed()
      }
      ops.view.distrust()
      ops.log.warn({ workload: id, err: (err as Error).message }, `engine did not answer the fresh read within ${freshReadMs} ms: no scale-down until the view is listed again`)
      return changed()
    } finally {
      bound.clear()
    }
    ops.view.read(ref.kind, id, fresh)
    if (tokenOf(ops, fresh) !== unchangedSince) {
      ops.log.debug({ workload: id }, 'sleep refused: another sidecar wrote activity since (token changed)')
      return changed()
    }
    if (specReplicas(fresh) === 0) return slept(ops, ref, fresh, signal)
    const write = ops.view.ownWrite(id, tokenOf(ops, fresh) ?? '', 0)
    let answer: Workload | undefined
    try {
      answer = await patchWorkload(ops, ref, { resourceVersion: fresh.metadata.resourceVersion ?? '0', replicas: 0 }, signal)
    } catch (err) {
      if (ops.client.statusOf(err) !== 409 || signal.aborted) throw err
      ops.log.debug({ workload: id, attempt }, 'scale-down conflict (409): reading again')
      if (attempt + 1 >= CONFLICT_RETRIES) return changed()
      continue
    } finally {
      ops.view.settle(ref.kind, id, write, answer)
    }
    ops.log.debug({ workload: id }, 'scaled to 0')
    return slept(ops, ref, answer, signal)
  }
}

async function slept(ops: WorkloadOps, ref: WorkloadRef, w: Workload, signal: AbortSignal): Promise<SleepIfAnswer> {
  const bound = withDeadline(signal, PODS_GONE_TIMEOUT_MS, () => new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `pods still there ${PODS_GONE_TIMEOUT_MS} ms after the scale-down`, { provider: 'kubernetes' }))
  await waitForPods(ops, ref.kind, w, bound.signal, (pods) => pods.every((p) => p.terminating))
    .catch((err: unknown) => {
      if (signal.aborted) throw err
      ops.log.debug({ workload: workloadId(ref), err: (err as Error).message }, 'pods still there after the scale-down')
    })
    .finally(() => bound.clear())
  return { result: 'slept' }
}

function tokenOf(ops: WorkloadOps, w: Workload): string {
  return w.metadata.annotations?.[ops.view.annotation] ?? 'none'
}

function observation(ops: WorkloadOps, id: string): Observation {
  return ops.view.observe(id) ?? { version: 'none', seenAt: ops.view.now(), agoMs: 0, live: ops.view.live }
}
