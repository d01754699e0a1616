/**
 * `wake()`: every wake writes activity, in the same one spec update as the replica count
 * (also when the service is already up: then the token alone), so no other sidecar can scale it
 * down on a view older than this request. A group member found at 0 first ensures its
 * dependencies are up AND token-written (rule 1 of §3: another sidecar's conditional scale-down
 * of a dependency then fails), and only then writes the member.
 *
 * A wake right after a scale-down can meet the old task still holding the host port: the wake
 * first waits for tasks that are shutting down, and a new task that fails with "port is already
 * allocated" is not final (Swarm starts its replacement).
 */
import { delay, withDeadline } from '../../core/timers.js'
import { RelightError, isRelightError } from '../../core/errors.js'
import type { BackendInfo } from '../../core/provider.js'
import { domainLabel } from '../kit/labels.js'
import { CAS_ATTEMPTS, type SwarmContext, TASK_ENDED, TASK_FAILED, jitter, nameOf, replicasOf, taskReason, withReplicas } from './context.js'
import { readServiceLabels } from './labels.js'
import { type Service, type Task, isOutOfSequence, isPortBusy } from './services.js'
import { stampActivity } from './stamp.js'
import { targetPort, taskUpstreams } from './upstreams.js'
import { SKIP } from './view.js'

/** Old tasks still stopping are waited for at most this long before writing (then the port-busy tolerance covers any overlap). */
export const OLD_TASK_WAIT_MS = 15_000
/** New tasks failing with "port is already allocated" count as final after this long with no old task of ours stopping. */
export const PORT_BUSY_FINAL_MS = 20_000

export async function wakeService(ctx: SwarmContext, id: string, signal: AbortSignal): Promise<BackendInfo> {
  ctx.throwIfAborted(signal)
  let service = await routedService(ctx, id, signal)
  const facts = readServiceLabels(service.Spec.Labels ?? {}, ctx.prefix)
  const choice = targetPort(service, facts.port, ctx.prefix)
  if ('problem' in choice) throw ctx.failed(service, `service ${nameOf(service)} ${choice.problem}`)
  const port = choice
  const watch = ctx.view.tasks(service.ID)
  let before: ReadonlySet<string> | undefined
  let written: { service: Service; wasAsleep: boolean }
  // "From 0" is decided on the base the write uses: a write that finds 0 where the view said up
  // (another sidecar slept it, and maybe its dependencies, in between) comes back here first.
  for (;;) {
    if (replicasOf(service) === 0 && before === undefined) {
      const group = readServiceLabels(service.Spec.Labels ?? {}, ctx.prefix).group
      if (group !== undefined) await ensureDependencies(ctx, group, signal)
      before = await waitOldTasks(ctx, service, signal)
    }
    let r: Awaited<ReturnType<typeof ensureUp>>
    if (before !== undefined) r = await ensureUp(ctx, service.ID, 0, signal, true)
    else {
      // Already up: the token is what keeps other sidecars from scaling it down under this request;
      // a sidecar that cannot write (read-only socket proxy) still routes to what runs.
      try {
        r = await ensureUp(ctx, service.ID, 0, signal, false)
      } catch (err) {
        if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND') || signal.aborted) throw err
        ctx.log.warn({ service: nameOf(service), err: (err as Error).message }, 'could not write activity into a running service; routing to it anyway')
        r = { service, wasAsleep: false }
      }
    }
    if ('unprepared' in r) {
      service = r.unprepared
      continue
    }
    written = r
    break
  }
  if (written.wasAsleep) ctx.log.info({ service: nameOf(written.service), replicas: replicasOf(written.service) }, 'scaled up')
  let known = before
  let portBusy: { reason: string; since: number } | undefined
  await ctx.knowLocalNode(signal)
  let running: readonly Task[] = []
  while (taskUpstreams(running, port.target, (n) => ctx.hostOf(n)).length === 0) {
    try {
      running = await waitRunning()
    } catch (err) {
      // A wake that timed out while new tasks met a busy port says so (not a bare timeout).
      if (signal.aborted && portBusy !== undefined) throw portError(ctx, written.service, port.target, portBusy.reason, signal.reason)
      throw err
    }
    await ctx.learnNodes(running, signal)
  }
  ctx.woke.set(service.ID, new Set(running.map((t) => t.ID)))
  const info = ctx.toBackend(written.service, running)
  if (!info || info.state !== 'running') throw ctx.failed(service, `service ${nameOf(service)} changed while waking (no longer routed, or scaled down)`)
  return info // the core probes these upstreams

  function waitRunning(): Promise<readonly Task[]> {
    return watch.wait((tasks) => {
      const up = tasks.filter((t) => t.DesiredState === 'running' && t.Status.State === 'running')
      // A task on a node this sidecar has not resolved yet: learn the node, then judge again.
      if (up.some((t) => taskUpstreams([t], port.target, (n) => ctx.hostOf(n)).length > 0 || ctx.hostOf(t.NodeID) === undefined)) return up
      // Failures from before this wake looked are not this wake's.
      known ??= new Set(tasks.filter((t) => TASK_FAILED.has(t.Status.State)).map((t) => t.ID))
      const fresh = tasks.filter((t) => !known?.has(t.ID) && TASK_FAILED.has(t.Status.State))
      const failed = fresh.find((t) => !isPortBusy(taskReason(t)))
      if (failed) throw exited(ctx, written.service, failed)
      const busy = fresh.find((t) => isPortBusy(taskReason(t)))
      if (busy !== undefined) {
        // Not final while an old task may still hold the port (Swarm starts a replacement); final
        // once it lasted PORT_BUSY_FINAL_MS with none of ours stopping (something else holds it).
        const stopping = tasks.some((t) => t.DesiredState !== 'running' && !TASK_ENDED.has(t.Status.State))
        const now = ctx.view.now()
        if (portBusy === undefined || stopping) portBusy = { reason: taskReason(busy), since: now }
        else if (now - portBusy.since >= PORT_BUSY_FINAL_MS) throw portError(ctx, written.service, port.target, portBusy.reason)
      }
      return undefined
    }, signal)
  }
}

/**
 * Old tasks still stopping may hold the host port: let them end first. Only tasks on this node
 * or on a node that is `ready` count (a down node's task stays "running" until the node returns
 * or 24 h pass), and the wait is bounded on its own by OLD_TASK_WAIT_MS (then the port-busy
 * tolerance covers any overlap). Answers the task ids seen (not this wake's).
 */
async function waitOldTasks(ctx: SwarmContext, service: Service, signal: AbortSignal): Promise<ReadonlySet<string>> {
  await ctx.knowLocalNode(signal)
  let ready: ReadonlySet<string> | undefined
  const counts = (t: Task) => ready === undefined || t.NodeID === undefined || ctx.hostOf(t.NodeID) === '127.0.0.1' || ready.has(t.NodeID)
  const stopping = (ts: readonly Task[]) => ts.some((t) => t.DesiredState !== 'running' && !TASK_ENDED.has(t.Status.State) && counts(t))
  const deadline = withDeadline(signal, OLD_TASK_WAIT_MS)
  const bound = deadline.signal
  const watch = ctx.view.tasks(service.ID)
  try {
    let seen = await watch.wait((ts) => ts, bound)
    if (stopping(seen)) {
      ready = await ctx.readyNodes(bound)
      if (stopping(seen)) seen = await watch.wait((ts) => (stopping(ts) ? undefined : ts), bound)
    }
    return new Set(seen.map((t) => t.ID))
  } catch (err) {
    if (signal.aborted) throw err
    ctx.log.warn({ service: nameOf(service), waited_ms: OLD_TASK_WAIT_MS, err: (err as Error).message }, 'old tasks still stopping; scaling up anyway')
    return new Set((watch.latest ?? []).map((t) => t.ID))
  } finally {
    deadline.clear()
  }
}

function portError(ctx: SwarmContext, service: Service, target: number, reason: string, cause?: unknown): RelightError {
  const published = service.Spec.EndpointSpec?.Ports?.find((p) => p.TargetPort === target && p.PublishMode === 'host')?.PublishedPort
  const where = published !== undefined ? `host port ${published}` : `the host port of target port ${target}`
  return new RelightError(
    'RELIGHT_ERR_BACKEND_EXITED',
    `service ${nameOf(service)} cannot start: ${where} is held by something else (${reason})`,
    { backend: nameOf(service), provider: ctx.kind },
    cause !== undefined ? { cause } : undefined,
  )
}

/**
 * One write: replicas to the awake count when at 0 (dropping the asleep marker) and a new
 * activity token always. A lost compare-and-swap is retried on a fresh read. `fromZero`: the
 * caller prepared a wake from 0 (dependencies, old tasks); without it a base at 0 writes nothing
 * and is answered as `unprepared` (the caller prepares and writes again).
 */
export async function ensureUp(
  ctx: SwarmContext,
  id: string,
  agoMs: number,
  signal: AbortSignal,
  fromZero = true,
): Promise<{ service: Service; wasAsleep: boolean } | { unprepared: Service }> {
  let wasAsleep = false
  let unprepared: Service | undefined
  for (let attempt = 1; ; attempt++) {
    try {
      const r = await ctx.view.write(
        id,
        (s) => {
          unprepared = undefined
          if (!s.Spec.Mode?.Replicated) return SKIP
          const facts = readServiceLabels(s.Spec.Labels ?? {}, ctx.prefix)
          wasAsleep = replicasOf(s) === 0
          if (wasAsleep && !fromZero) {
            unprepared = s
            return SKIP
          }
          return withReplicas(s.Spec, wasAsleep ? facts.replicas : undefined, (labels) => {
            if (wasAsleep) {
              delete labels[ctx.labels.asleepSince]
              delete labels[ctx.labels.asleepReplicas]
            }
            stampActivity(labels, ctx.labels, ctx.identity, agoMs)
          })
        },
        signal,
        attempt === 1 && ctx.view.live ? 'cached' : 'fresh',
      )
      if (unprepared !== undefined) return { unprepared }
      const service = r.written ?? r.base
      if (r.written === undefined && !r.skipped && wasAsleep) {
        // The read-back failed: the write stands; say what we wrote.
        const facts = readServiceLabels(r.base.Spec.Labels ?? {}, ctx.prefix)
        return { service: { ...r.base, Spec: withReplicas(r.base.Spec, facts.replicas, () => undefined) }, wasAsleep }
      }
      return { service, wasAsleep }
    } catch (err) {
      if (!isOutOfSequence(err) || attempt >= CAS_ATTEMPTS) {
        const s = ctx.view.entry(id)?.service ?? ({ ID: id, Version: { Index: 0 }, Spec: {} } as Service)
        throw ctx.engineError(err, s, 'scale up', isOutOfSequence(err))
      }
    }
    await delay(jitter(attempt), signal)
  }
}

/** Rule 1 of §3: a group's dependencies (members without a domain) up and token-written before the member. */
async function ensureDependencies(ctx: SwarmContext, group: string, signal: AbortSignal): Promise<void> {
  const members = await ctx.api.list({ label: [`${ctx.prefix}.group=${group}`] }, signal)
  const deps = members.filter((s) => s.Spec.Mode?.Replicated && readServiceLabels(s.Spec.Labels ?? {}, ctx.prefix).hosts.length === 0)
  if (deps.length === 0) return
  for (const d of deps) ctx.view.absorb(d, false)
  const asleep = deps.filter((s) => replicasOf(s) === 0)
  if (asleep.length > 0) ctx.log.info({ group, services: asleep.map(nameOf) }, 'waking group dependencies')
  // The first dependency that fails ends the others' waits too (their pollers stop with their last waiter).
  const local = new AbortController()
  const both = AbortSignal.any([signal, local.signal])
  await Promise.all(
    deps.map(async (dep) => {
      try {
        await ensureDependency(dep, both)
      } catch (err) {
        local.abort(err)
        throw err
      }
    }),
  )

  async function ensureDependency(dep: Service, signal: AbortSignal): Promise<void> {
      const r = await ensureUp(ctx, dep.ID, 0, signal, true)
      const depService = 'unprepared' in r ? r.unprepared : r.service
      // Also when it was up already: a sibling's wake may have scaled it up a moment ago, and its task may not run yet.
      let known: ReadonlySet<string> | undefined
      await ctx.view.tasks(dep.ID).wait((tasks) => {
        if (tasks.some((t) => t.DesiredState === 'running' && t.Status.State === 'running')) return true
        known ??= new Set(tasks.filter((t) => TASK_FAILED.has(t.Status.State)).map((t) => t.ID))
        const failed = tasks.find((t) => !known?.has(t.ID) && TASK_FAILED.has(t.Status.State) && !isPortBusy(taskReason(t)))
        if (failed) throw exited(ctx, depService, failed)
        return undefined
      }, signal)
  }
}

/** The service, routed (domain label, replicated): the view's copy when it is current, else a read. */
export async function routedService(ctx: SwarmContext, id: string, signal: AbortSignal): Promise<Service> {
  const entry = ctx.view.entry(id)
  const service = entry && !entry.stale && ctx.view.live ? entry.service : await ctx.view.read(id, signal)
  const facts = readServiceLabels(service.Spec.Labels ?? {}, ctx.prefix)
  if (facts.hosts.length === 0) {
    throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `service ${nameOf(service)} has no ${domainLabel(ctx.prefix)} label`, { backend: id, provider: ctx.kind })
  }
  if (!service.Spec.Mode?.Replicated) throw ctx.failed(service, `service ${nameOf(service)} is not a replicated service (global or job mode); only replicated services scale to zero`)
  return service
}

function exited(ctx: SwarmContext, service: Service, failed: Task): RelightError {
  const why = taskReason(failed)
  const code = failed.Status.ContainerStatus?.ExitCode
  ctx.log.warn({ service: nameOf(service), task: failed.ID, state: failed.Status.State, err: why, ...(code !== undefined ? { exit_code: code } : {}) }, 'task failed while waking')
  return new RelightError('RELIGHT_ERR_BACKEND_EXITED', `a task of service ${nameOf(service)} ${failed.Status.State}: ${why}`, {
    backend: nameOf(service),
    provider: ctx.kind,
    ...(code !== undefined ? { exitCode: code } : {}),
  })
}
