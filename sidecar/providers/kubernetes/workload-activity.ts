/**
 * recordActivity (core/shared.ts): one merge PATCH of a fresh token into the workload's
 * `<prefix>.activity` annotation, with no precondition (Kubernetes needs no retry: the API server
 * applies a patch without resourceVersion to the newest object). The answer says whether the
 * workload is at 0 replicas (another sidecar slept it): `asleep`, and the caller wakes it.
 */
import type { ActivityAnswer, Observation } from '../../core/shared.js'
import { newToken, patchWorkload, type WorkloadOps } from './workload-patch.js'
import { specReplicas, workloadId, type WorkloadRef } from './workloads.js'

export async function recordActivity(ops: WorkloadOps, ref: WorkloadRef, agoMs: number, signal: AbortSignal): Promise<ActivityAnswer> {
  const id = workloadId(ref)
  const token = newToken(ops.identity, agoMs)
  const write = ops.view.ownWrite(id, token, undefined)
  let answer
  try {
    answer = await patchWorkload(ops, ref, { token }, signal)
  } finally {
    ops.view.settle(ref.kind, id, write, answer)
  }
  ops.log.debug({ workload: id, token, replicas: specReplicas(answer) }, 'activity written')
  if (specReplicas(answer) === 0) return { state: 'asleep' }
  return { state: 'awake', observation: ops.view.observe(id) ?? ownObservation(ops, token, agoMs) }
}

/** Our own token, when the view does not hold the workload (not annotated, or not started). */
export function ownObservation(ops: Pick<WorkloadOps, 'view'>, token: string, agoMs: number): Observation {
  return { version: token, seenAt: ops.view.now(), agoMs, live: ops.view.live }
}
