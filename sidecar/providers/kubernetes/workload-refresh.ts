/**
 * refresh (core/shared.ts): read the workload now, for the request path while the view is not
 * live (bounded by the caller's signal): GET the workload, and the pods by its selector when it
 * is up and routed to pods. The view's entry follows the read.
 */
import { isRelightError } from '../../core/errors.js'
import { getWorkload, type WorkloadOps } from './workload-patch.js'
import { listPods } from './workload-wake.js'
import { isAnnotated, specReplicas, workloadId, type WorkloadRef } from './workloads.js'

export async function refreshWorkload(ops: WorkloadOps, ref: WorkloadRef, routePods: boolean, signal: AbortSignal): Promise<'awake' | 'asleep' | 'gone'> {
  let w
  try {
    w = await getWorkload(ops, ref, signal)
  } catch (err) {
    if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) return 'gone'
    throw err
  }
  if (!isAnnotated(w, ops.prefix)) return 'gone'
  ops.view.read(ref.kind, workloadId(ref), w)
  if (specReplicas(w) === 0) return 'asleep'
  if (routePods) {
    const { pods } = await listPods(ops, ref.kind, w, signal)
    ops.view.putPods(pods)
  }
  return 'awake'
}
