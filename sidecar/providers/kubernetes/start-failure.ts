/**
 * The core's readiness hook `startFailure` (core/provider.ts) for Kubernetes, and the same test
 * inside wake()'s wait for a Ready pod: a pod of the workload whose container failed to start
 * (exited non-zero, CrashLoopBackOff, ErrImagePull, ImagePullBackOff, CreateContainerConfigError)
 * after the wake began fails the wake with RELIGHT_ERR_BACKEND_EXITED instead of at wake_timeout.
 * Read from the view's pod cache only (no request of its own). "After the wake began": the
 * failure's key (pod uid, container, restartCount) was not among those the view held when the
 * wake started, so a pod already crash-looping fails the wake at its next restart, not at once.
 */
import type { Logger } from 'pino'
import type { KubernetesView } from './view.js'
import type { PodRecord } from './workloads.js'

/** The failures present now: what a wake starts from. */
export function failureKeys(pods: readonly PodRecord[]): Set<string> {
  const keys = new Set<string>()
  for (const p of pods) if (p.failure) keys.add(p.failure.key)
  return keys
}

/** The first failure of `pods` not in `before`, as a reason. */
export function newFailure(pods: readonly PodRecord[], before: ReadonlySet<string>): string | undefined {
  for (const p of pods) if (p.failure && !p.terminating && !before.has(p.failure.key)) return p.failure.reason
  return undefined
}

/**
 * Resolves with a reason once a pod of workload `id` fails to start after `before` was taken;
 * never resolves otherwise (also when no informer feeds the view: no request of its own), nor
 * after `signal` aborts.
 */
export function startFailure(view: KubernetesView, log: Logger, id: string, before: ReadonlySet<string>, signal: AbortSignal): Promise<string> {
  return new Promise<string>((resolve) => {
    if (!view.started) return
    view
      .waitFor(id, (entry, pods) => (entry ? newFailure(pods, before) : undefined), signal)
      .then((reason) => {
        log.warn({ workload: id, err: reason }, 'pod failed to start right after the wake')
        resolve(reason)
      }, () => undefined)
  })
}
