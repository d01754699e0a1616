/**
 * wake: ONE merge PATCH of the workload: a fresh activity token and, when it is at 0, the awake
 * replica count (issue 21 §3: every wake records activity, also one that finds the workload up,
 * so another sidecar whose view is stale cannot scale it down right after). Then wait for a Ready
 * pod with an IP on the view (no second pod list+watch), or, when no informer feeds the view,
 * by a list and a watch of the workload's pods.
 */
import { isRelightError, throwIfAborted } from '../../core/errors.js'
import { RelightError } from '../../core/errors.js'
import { newFailure } from './start-failure.js'
import { newToken, patchWorkload, type WorkloadOps } from './workload-patch.js'
import {
  ownsPod,
  type Pod,
  type PodList,
  podRecord,
  type PodRecord,
  podsPath,
  selectorString,
  specReplicas,
  type Workload,
  type WorkloadKind,
  workloadId,
  type WorkloadRef,
} from './workloads.js'

export interface Woken {
  readonly workload: Workload
  readonly pods: PodRecord[]
}

/**
 * `current`: the workload as last seen (the view's entry, or a fresh GET). `awakeReplicas`: the
 * count to scale to from 0. Resolves once a pod is Ready with an IP (bounded by `signal`); rejects
 * with RELIGHT_ERR_BACKEND_EXITED when, before that, a pod fails to start with a failure not in
 * `failedBefore` (start-failure.ts: a crash-looping pod does not wait out wake_timeout). Without
 * `failedBefore` (no informer: nothing tells an old failure from a new one) it waits for Ready only.
 */
export async function wakeWorkload(
  ops: WorkloadOps,
  ref: WorkloadRef,
  current: Workload,
  awakeReplicas: number,
  signal: AbortSignal,
  failedBefore?: ReadonlySet<string>,
): Promise<Woken> {
  const id = workloadId(ref)
  let w = current
  // Up as far as we know: token only (an HPA's count is left alone). The answer says if it was
  // slept meanwhile; then one more write with the replicas.
  for (let scaleUp = specReplicas(w) === 0; ; scaleUp = true) {
    const token = newToken(ops.identity, 0)
    const write = ops.view.ownWrite(id, token, scaleUp ? awakeReplicas : undefined)
    let answer: Workload | undefined
    try {
      answer = await patchWorkload(ops, ref, scaleUp ? { token, replicas: awakeReplicas } : { token }, signal)
    } finally {
      ops.view.settle(ref.kind, id, write, answer)
    }
    w = answer
    ops.log.debug({ workload: id, token, ...(scaleUp ? { replicas: awakeReplicas } : {}) }, scaleUp ? 'scaled up (activity written)' : 'wake found it up: activity written')
    if (specReplicas(w) > 0) break
  }
  const ready = (pods: readonly PodRecord[]) => pods.some((p) => p.ready && p.ip !== undefined)
  const failed = (pods: readonly PodRecord[]) => (failedBefore === undefined ? undefined : newFailure(pods, failedBefore))
  const pods = await waitForPods(ops, ref.kind, w, signal, (pods) => ready(pods) || failed(pods) !== undefined)
  const failure = ready(pods) ? undefined : failed(pods)
  if (failure !== undefined) {
    ops.log.warn({ workload: id, err: failure }, 'pod failed to start during the wake')
    throw new RelightError('RELIGHT_ERR_BACKEND_EXITED', `workload ${id} stopped while starting: ${failure}`, { backend: id, provider: ops.kind })
  }
  return { workload: w, pods }
}

/**
 * The workload's pods once `done` holds for them: on the view when an informer feeds it, else
 * list (by the workload's selector), then watch from that list's resourceVersion, listing again
 * when the watch ends. Pods of another workload that the selector also matches are left out.
 */
export async function waitForPods(ops: WorkloadOps, kind: WorkloadKind, w: Workload, signal: AbortSignal, done: (pods: PodRecord[]) => boolean): Promise<PodRecord[]> {
  const ns = w.metadata.namespace ?? 'default'
  const selector = selectorString(w.spec?.selector)
  if (selector === '') throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `${ns}/${w.metadata.name} has no pod selector`, { backend: w.metadata.name, provider: ops.kind })
  const id = workloadId({ kind, namespace: ns, name: w.metadata.name })
  if (ops.view.started) {
    return ops.view.waitFor(id, (entry, pods) => (entry && done([...pods]) ? [...pods] : undefined), signal)
  }
  for (;;) {
    const { pods, resourceVersion } = await listPods(ops, kind, w, signal)
    const byName = new Map(pods.map((p) => [p.name, p]))
    if (done([...byName.values()])) return [...byName.values()]
    const stream = await ops.client.watch<Pod>(podsPath(ns), { labelSelector: selector, resourceVersion }, signal)
    try {
      for await (const event of stream) {
        if (event.type === 'ERROR') break // list again
        if (event.type === 'BOOKMARK') continue
        const record = podRecord(event.object)
        if (event.type === 'DELETED' || !ownsPod(kind, w, record)) byName.delete(record.name)
        else byName.set(record.name, record)
        if (done([...byName.values()])) return [...byName.values()]
      }
    } catch (err) {
      if (signal.aborted) throw err
      if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')) throw err
      // a dropped watch: list again
    }
    throwIfAborted(signal)
  }
}

/** The workload's pods, from the API (selector and controller ownerReference). */
export async function listPods(ops: WorkloadOps, kind: WorkloadKind, w: Workload, signal: AbortSignal): Promise<{ pods: PodRecord[]; resourceVersion: string }> {
  const selector = selectorString(w.spec?.selector)
  if (selector === '') return { pods: [], resourceVersion: '0' }
  const list = await ops.client.json<PodList>('GET', podsPath(w.metadata.namespace ?? 'default'), { query: { labelSelector: selector }, signal })
  return { pods: list.items.map(podRecord).filter((p) => ownsPod(kind, w, p)), resourceVersion: list.metadata.resourceVersion ?? '0' }
}
