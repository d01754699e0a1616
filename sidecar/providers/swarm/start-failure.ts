/**
 * The core's readiness hook `startFailure` (core/provider.ts): while the core probes a woken
 * service, the shared TaskWatch of the service looks for the failure Swarm sends no event for:
 * every task the wake saw failed, and none runs. Never resolves otherwise (a task that failed
 * only because the old task still held the port is not final: Swarm starts its replacement).
 */
import { type SwarmContext, TASK_FAILED, taskReason } from './context.js'
import { isPortBusy } from './services.js'

export function startFailure(ctx: SwarmContext, id: string, signal: AbortSignal): Promise<string> {
  const woke = ctx.woke.get(id)
  const name = ctx.view.entry(id)?.service.Spec.Name ?? id.slice(0, 12)
  return new Promise<string>((resolve) => {
    ctx.view
      .tasks(id)
      .wait((tasks) => {
        if (tasks.some((t) => t.DesiredState === 'running' && t.Status.State === 'running')) return undefined
        const failed = tasks.find((t) => (woke === undefined || woke.has(t.ID)) && TASK_FAILED.has(t.Status.State) && !isPortBusy(taskReason(t)))
        if (!failed) return undefined
        ctx.log.warn({ service: name, task: failed.ID, err: taskReason(failed) }, 'task failed right after the wake')
        return `a task of service ${name} ${failed.Status.State}: ${taskReason(failed)}`
      }, signal)
      .then(resolve, () => undefined)
  })
}
