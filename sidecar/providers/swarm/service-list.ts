/**
 * `list()`: the routed services (and, when any is in a group, the groups' members, which the
 * view follows for the dependency rules), plus one task list for the running ones. The view
 * takes the answer as its new truth (a missed event counts as a change seen now).
 */
import type { BackendInfo } from '../../core/provider.js'
import { type SwarmContext, replicasOf } from './context.js'
import type { Task } from './services.js'

export async function listServices(ctx: SwarmContext, signal: AbortSignal): Promise<BackendInfo[]> {
  const services = await ctx.view.listOurs(signal)
  ctx.view.absorbList(services)
  // Only the up services' tasks: a large swarm runs many others.
  const up = services.filter((s) => replicasOf(s) > 0).map((s) => s.ID)
  const tasks = up.length === 0 ? [] : await ctx.api.tasks({ service: up, 'desired-state': ['running'] }, signal)
  await ctx.learnNodes(tasks, signal)
  const byService = new Map<string, Task[]>()
  for (const t of tasks) {
    let list = byService.get(t.ServiceID)
    if (!list) byService.set(t.ServiceID, (list = []))
    list.push(t)
  }
  const out: BackendInfo[] = []
  for (const s of services) {
    const info = ctx.toBackend(s, byService.get(s.ID) ?? [])
    if (info) out.push(info)
  }
  return out
}
