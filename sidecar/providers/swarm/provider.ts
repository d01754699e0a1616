import type { Logger } from 'pino'
import { RelightError, isRelightError, toRelightError } from '../../core/errors.js'
import type { BackendInfo, BackendSettings, CheckResult, Provider, ProviderEvent, SleepContext, SleepMode } from '../../core/provider.js'
import { delay } from '../../core/timers.js'
import { credibleActivity } from '../../core/activity-clock.js'
import { WarnOnce, problemTopic } from '../../core/warn-once.js'
import { settingsFrom } from '../../core/settings.js'
import { EngineClient } from '../moby/client.js'
import { type MobyEvent, followEvents } from '../moby/events.js'
import { domainLabel } from '../kit/labels.js'
import type { SwarmConfig } from './config.js'
import { SWARM_SLEEP_MODES } from './descriptor.js'
import { type ServiceFacts, readServiceLabels, sharedLabels } from './labels.js'
import { type Service, type ServiceSpec, SwarmServices, type Task, isOutOfSequence } from './services.js'
import { nodeAddress, targetPort, taskUpstreams } from './upstreams.js'

/** Swarm services sleep only by scaling to 0. */

/** Task polling while a wake waits for a task to run (Swarm has no task events). */
const TASK_POLL_MS = 20
/** Following a service another sidecar (or an operator) scaled up, until its tasks run. */
const FOLLOW_POLL_MS = 250
const FOLLOW_MAX_MS = 120_000
/** How long after a wake a task that exits still fails the wake (see watchAfterWake). */
const STABLE_AFTER_WAKE_MS = 5_000
/** Compare-and-swap attempts for writes that must not be lost (wake, shared activity). */
const CAS_ATTEMPTS = 8
/** Service events that can change what the registry knows. */
export const WATCHED_ACTIONS = ['create', 'update', 'remove'] as const

const TASK_FAILED = new Set(['failed', 'rejected', 'orphaned'])

export interface SwarmProviderOptions {
  /** Use this engine client instead of one built from `config.socket` (tests: recorded answers). */
  readonly engine?: EngineClient
}

/**
 * Docker Swarm services labelled `<prefix>.domain`, through a manager's Engine API. A service
 * is awake at its `<prefix>.replicas` count (default 1) and asleep at 0 replicas (mode
 * `scale`); upstreams are the host-mode published port of each running task.
 *
 * Several sidecars (one per edge node, each beside its Caddy) may drive the same services.
 * They share one fact through the engine: the last time any of them saw traffic, in the
 * `<prefix>.last_activity` service label. A sidecar scales a service down only when that value
 * is older than idle_timeout, and writes the scale-down with the service version it read the
 * value from, so a concurrent activity write (or wake, or scale-down) makes the engine refuse
 * it ("update out of sequence"): compare-and-swap through the engine, no other store. A
 * sidecar whose last activity write failed refuses to sleep the service.
 */
export class SwarmProvider implements Provider {
  readonly kind: string = 'swarm'
  readonly id: string
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = SWARM_SLEEP_MODES
  readonly api: SwarmServices
  private readonly engine: EngineClient
  private readonly prefix: string
  private readonly labels: ReturnType<typeof sharedLabels>
  private readonly configSettings: BackendSettings
  private readonly listeners = new Set<(event: ProviderEvent) => void>()
  /** Services whose last shared-activity write failed: never put to sleep until one succeeds. */
  private readonly shareFailed = new Set<string>()
  /** Services being followed until their tasks run (scaled up by someone else). */
  private readonly following = new Set<string>()
  private readonly warned = new WarnOnce()
  private localNode: string | undefined
  private readonly nodeHosts = new Map<string, string>()
  private readonly closer = new AbortController()
  private closed = false

  constructor(
    config: SwarmConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    private readonly options: SwarmProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    this.prefix = config.label_prefix
    this.labels = sharedLabels(this.prefix)
    this.engine =
      options.engine ??
      new EngineClient({ address: config.socket, name: 'docker', ...(config.api_version ? { apiPrefix: `/v${config.api_version}` } : {}) })
    this.api = new SwarmServices(this.engine)
    this.configSettings = settingsFrom(config)
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.assertOpen()
    const services = await this.api.list({ label: [domainLabel(this.prefix)] }, signal)
    // Only the labelled services' tasks: a large swarm runs many others.
    const tasks = services.length === 0 ? [] : await this.api.tasks({ service: services.map((s) => s.ID), 'desired-state': ['running'] }, signal)
    await this.learnNodes(tasks, signal)
    const byService = new Map<string, Task[]>()
    for (const t of tasks) {
      let list = byService.get(t.ServiceID)
      if (!list) byService.set(t.ServiceID, (list = []))
      list.push(t)
    }
    const out: BackendInfo[] = []
    for (const s of services) {
      const info = this.toBackend(s, byService.get(s.ID) ?? [])
      if (info) out.push(info)
    }
    for (const id of this.shareFailed) if (!services.some((s) => s.ID === id)) this.shareFailed.delete(id)
    const present = new Set(services.map((s) => s.ID))
    this.warned.prune((id) => present.has(id))
    return out
  }

  /** What the registry knows about a service; undefined when it is not routed (no domain, global mode, no host port). */
  toBackend(s: Service, tasks: readonly Task[]): BackendInfo | undefined {
    const labels = s.Spec.Labels ?? {}
    const facts = readServiceLabels(labels, this.prefix)
    if (facts.hosts.length === 0) return undefined
    const name = s.Spec.Name ?? s.ID.slice(0, 12)
    for (const problem of facts.problems) this.warnOnce(s.ID, problemTopic(problem), problem, { service: name }, 'label ignored')
    const replicated = s.Spec.Mode?.Replicated
    if (!replicated) {
      this.warnOnce(s.ID, 'mode', 'not replicated', { service: name }, 'service skipped: only replicated services can be scaled to zero (this one runs in global or job mode)')
      return undefined
    }
    const port = targetPort(s, facts.port, this.prefix)
    if ('problem' in port) {
      this.warnOnce(s.ID, 'port', port.problem, { service: name }, `service skipped: it ${port.problem}`)
      return undefined
    }
    const desired = replicated.Replicas ?? 0
    const upstreams = desired === 0 ? [] : taskUpstreams(tasks, port.target, (node) => this.hostOf(node))
    const settings: BackendSettings = { sleep: 'scale', fallback_sleep: 'scale', readiness: 'http:/', ...this.configSettings, ...facts.settings }
    return {
      id: s.ID,
      name,
      hosts: facts.hosts,
      state: desired === 0 ? 'scaled_to_zero' : upstreams.length > 0 ? 'running' : 'starting',
      upstreams,
      ...(facts.group !== undefined ? { group: facts.group } : {}),
      settings,
      details: {
        service: name,
        image: s.Spec.TaskTemplate?.ContainerSpec?.Image ?? '',
        replicas: desired,
        awake_replicas: facts.replicas,
        running_tasks: upstreams.length,
        port: port.target,
        ...(facts.lastActivity !== undefined ? { last_activity: new Date(facts.lastActivity).toISOString() } : {}),
      },
    }
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed) return
    const stop = AbortSignal.any([signal, this.closer.signal])
    this.listeners.add(onEvent)
    stop.addEventListener('abort', () => this.listeners.delete(onEvent), { once: true })
    void followEvents(
      this.engine,
      {
        // Service events carry no labels (only the name, and replicas when they change): every
        // service event is read, and services without our labels are dropped after inspect.
        query: { filters: { type: ['service'], event: [...WATCHED_ACTIONS] } },
        connected: () => onEvent({ type: 'resync' }),
        onEvent: (event) => this.handleEvent(event, onEvent, stop),
        log: this.log,
        engine: 'swarm',
      },
      stop,
    )
  }

  private async handleEvent(event: MobyEvent, emit: (event: ProviderEvent) => void, signal: AbortSignal): Promise<void> {
    const id = event.Actor?.ID ?? event.id
    if (!id) return
    if (event.Action === 'remove') {
      this.shareFailed.delete(id)
      this.warned.forget(id)
      emit({ type: 'remove', id })
      return
    }
    const info = await this.current(id, signal)
    if (!info) {
      emit({ type: 'remove', id })
      return
    }
    emit({ type: 'upsert', backend: info })
    if (info.state === 'starting') this.followStarting(id)
  }

  /** The service's current facts (the engine's, not an event's), or undefined when gone or not routed. */
  private async current(id: string, signal: AbortSignal): Promise<BackendInfo | undefined> {
    let s: Service
    try {
      s = await this.api.inspect(id, signal)
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) {
        this.warned.forget(id)
        return undefined
      }
      throw err
    }
    const tasks = await this.api.tasks({ service: [s.ID], 'desired-state': ['running'] }, signal)
    await this.learnNodes(tasks, signal)
    return this.toBackend(s, tasks)
  }

  /**
   * A service scaled up by someone else (another sidecar's wake, an operator) has no task
   * running yet, and Swarm sends no task events: look again until one runs, so this sidecar
   * routes to it without waiting for the next resync.
   */
  private followStarting(id: string): void {
    if (this.following.has(id) || this.closed) return
    this.following.add(id)
    const signal = AbortSignal.any([this.closer.signal, AbortSignal.timeout(FOLLOW_MAX_MS)])
    void (async () => {
      try {
        while (!signal.aborted) {
          await delay(FOLLOW_POLL_MS, signal)
          if (signal.aborted) return
          const info = await this.current(id, signal)
          if (!info) {
            this.emit({ type: 'remove', id })
            return
          }
          if (info.state !== 'starting') {
            this.emit({ type: 'upsert', backend: info })
            return
          }
        }
      } catch (err) {
        if (!signal.aborted) this.log.debug({ service: id, err: (err as Error).message }, 'following a starting service failed; the resync corrects it')
      } finally {
        this.following.delete(id)
      }
    })()
  }

  private emit(event: ProviderEvent): void {
    for (const listener of this.listeners) listener(event)
  }

  // ── wake ───────────────────────────────────────────────────────────────────────────────────

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    this.assertOpen()
    throwIfAbortedRelight(signal)
    const { service, facts } = await this.routed(id, signal)
    const port = targetPort(service, facts.port, this.prefix)
    if ('problem' in port) throw this.failed(service, `service ${nameOf(service)} ${port.problem}`)
    if (facts.group !== undefined) await this.wakeDependencies(facts.group, signal)
    const before = new Set((await this.api.tasks({ service: [service.ID] }, signal)).map((t) => t.ID))
    await this.scaleUp(service, signal)
    const tasks = await this.waitRunning(service, before, (t) => taskUpstreams([t], port.target, (n) => this.hostOf(n)).length > 0, signal)
    const info = this.toBackend(await this.api.inspect(service.ID, signal), tasks)
    if (!info || info.state !== 'running') throw this.failed(service, `service ${nameOf(service)} changed while waking (no longer routed, or scaled down)`)
    this.watchAfterWake(service, tasks)
    return info // the core probes these upstreams
  }

  /**
   * A task may run for a moment and then exit (a program that fails at start). Swarm sends no
   * task events, so for a short while after a wake the tasks are polled: when every task the
   * wake saw running failed and none runs, a `stopped` state ends the core's readiness probe
   * with RELIGHT_ERR_BACKEND_EXITED instead of a wake timeout.
   */
  private watchAfterWake(service: Service, woke: readonly Task[]): void {
    const ids = new Set(woke.map((t) => t.ID))
    const signal = AbortSignal.any([this.closer.signal, AbortSignal.timeout(STABLE_AFTER_WAKE_MS)])
    void (async () => {
      while (!signal.aborted) {
        await delay(FOLLOW_POLL_MS / 2, signal)
        if (signal.aborted) return
        const tasks = await this.api.tasks({ service: [service.ID] }, signal)
        if (tasks.some((t) => t.DesiredState === 'running' && t.Status.State === 'running')) continue
        const failed = tasks.find((t) => ids.has(t.ID) && TASK_FAILED.has(t.Status.State))
        if (failed) {
          const why = failed.Status.Err ?? failed.Status.Message ?? failed.Status.State
          this.log.warn({ service: nameOf(service), task: failed.ID, err: why }, 'task failed right after the wake')
          this.emit({ type: 'state', id: service.ID, state: 'stopped', reason: `a task of service ${nameOf(service)} ${failed.Status.State}: ${why}` })
          return
        }
      }
    })().catch(() => undefined)
  }

  /**
   * Scale to the awake count, dropping the asleep marker and recording the wake as activity,
   * in one update. A lost compare-and-swap is retried on a fresh read; a service someone else
   * woke meanwhile needs no write.
   */
  private async scaleUp(first: Service, signal: AbortSignal): Promise<void> {
    let service = first
    for (let attempt = 1; ; attempt++) {
      if ((service.Spec.Mode?.Replicated?.Replicas ?? 0) > 0) return
      const facts = readServiceLabels(service.Spec.Labels ?? {}, this.prefix)
      const spec = withReplicas(service.Spec, facts.replicas, (labels) => {
        delete labels[this.labels.asleepSince]
        delete labels[this.labels.asleepReplicas]
        // A value beyond the horizon in the future (skewed clock, hand edit) is replaced, not kept.
        const now = Date.now()
        const idleTimeout = facts.settings.idle_timeout ?? this.configSettings.idle_timeout
        labels[this.labels.lastActivity] = new Date(Math.max(now, credibleActivity(facts.lastActivity, now, idleTimeout) ?? 0)).toISOString()
      })
      try {
        await this.api.update(service.ID, service.Version.Index, spec, signal)
        this.log.info({ service: nameOf(service), replicas: facts.replicas }, 'scaled up')
        return
      } catch (err) {
        if (!isOutOfSequence(err) || attempt >= CAS_ATTEMPTS) throw this.engineError(err, service, 'scale up')
      }
      await delay(jitter(attempt), signal)
      service = await this.api.inspect(service.ID, signal)
    }
  }

  /**
   * Poll the service's tasks until one of those `ready` accepts runs. A task created since the
   * wake began that failed or was rejected fails the wake at once (Swarm would retry it
   * forever); a pending task's reason (no suitable node, port in use) is logged when the wake
   * is cancelled.
   */
  private async waitRunning(service: Service, before: ReadonlySet<string>, ready: (t: Task) => boolean, signal: AbortSignal): Promise<Task[]> {
    let pending: string | undefined
    try {
      for (;;) {
        const tasks = await this.api.tasks({ service: [service.ID] }, signal)
        const running = tasks.filter((t) => t.DesiredState === 'running' && t.Status.State === 'running')
        await this.learnNodes(running, signal)
        if (running.some(ready)) return running
        const failed = tasks.find((t) => !before.has(t.ID) && TASK_FAILED.has(t.Status.State))
        if (failed) {
          const why = failed.Status.Err ?? failed.Status.Message ?? failed.Status.State
          const code = failed.Status.ContainerStatus?.ExitCode
          this.log.warn({ service: nameOf(service), task: failed.ID, state: failed.Status.State, err: why, ...(code !== undefined ? { exit_code: code } : {}) }, 'task failed while waking')
          throw new RelightError('RELIGHT_ERR_BACKEND_EXITED', `a task of service ${nameOf(service)} ${failed.Status.State}: ${why}`, {
            backend: nameOf(service),
            provider: this.kind,
            ...(code !== undefined ? { exitCode: code } : {}),
          })
        }
        pending = tasks.find((t) => t.DesiredState === 'running' && t.Status.Err)?.Status.Err ?? pending
        await delay(TASK_POLL_MS, signal)
        throwIfAbortedRelight(signal)
      }
    } catch (err) {
      if (signal.aborted && pending) this.log.warn({ service: nameOf(service), pending }, 'no task ran before the wake ended')
      throw err
    }
  }

  /** A group's services without a domain label (databases, workers): scaled up before a routed member. */
  private async wakeDependencies(group: string, signal: AbortSignal): Promise<void> {
    const asleep = (await this.groupDependencies(group, signal)).filter((s) => (s.Spec.Mode?.Replicated?.Replicas ?? 0) === 0)
    if (asleep.length === 0) return
    this.log.info({ group, services: asleep.map(nameOf) }, 'waking group dependencies')
    await Promise.all(
      asleep.map(async (s) => {
        const before = new Set((await this.api.tasks({ service: [s.ID] }, signal)).map((t) => t.ID))
        await this.scaleUp(s, signal)
        await this.waitRunning(s, before, () => true, signal)
      }),
    )
  }

  private async groupDependencies(group: string, signal: AbortSignal): Promise<Service[]> {
    const members = await this.api.list({ label: [`${this.prefix}.group=${group}`] }, signal)
    return members.filter((s) => s.Spec.Mode?.Replicated && readServiceLabels(s.Spec.Labels ?? {}, this.prefix).hosts.length === 0)
  }

  // ── sleep ──────────────────────────────────────────────────────────────────────────────────

  /**
   * Scale to 0 when no sidecar saw traffic within `context.idleTimeout`, with the version the
   * shared activity was read at. Refused (RELIGHT_ERR_SLEEP_REFUSED) when the shared value is
   * younger, when this sidecar's last activity write failed, or when the service changed
   * between the read and the write.
   */
  async sleep(id: string, mode: SleepMode, signal: AbortSignal, context?: SleepContext): Promise<void> {
    this.assertOpen()
    throwIfAbortedRelight(signal)
    if (mode !== 'scale') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `swarm services sleep by scaling to 0 (scale), not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const { service, facts } = await this.routed(id, signal)
    const name = nameOf(service)
    const replicas = service.Spec.Mode?.Replicated?.Replicas ?? 0
    if (replicas === 0) return
    if (this.shareFailed.has(service.ID)) {
      throw this.refused(name, 'this sidecar could not write its last activity to the service; it does not scale the service down until a write succeeds')
    }
    // A last_activity beyond the horizon in the future (skewed clock, hand edit) counts as absent.
    const lastActivity = context ? credibleActivity(facts.lastActivity, Date.now(), context.idleTimeout) : undefined
    if (context && lastActivity !== undefined) {
      const age = Date.now() - lastActivity
      if (age < context.idleTimeout) {
        throw this.refused(name, `a sidecar saw traffic ${Math.max(0, Math.round(age / 1000))} s ago (${this.labels.lastActivity}), within idle_timeout`)
      }
    }
    const explicitCount = service.Spec.Labels?.[`${this.prefix}.replicas`] !== undefined
    const spec = withReplicas(service.Spec, 0, (labels) => {
      labels[this.labels.asleepSince] = new Date().toISOString()
      if (!explicitCount) labels[this.labels.asleepReplicas] = String(replicas)
      else delete labels[this.labels.asleepReplicas]
    })
    try {
      await this.api.update(service.ID, service.Version.Index, spec, signal)
    } catch (err) {
      if (isOutOfSequence(err)) throw this.refused(name, 'the service changed after its last activity was read (another sidecar wrote); backing off')
      throw this.engineError(err, service, 'scale down')
    }
    this.log.info({ service: name, replicas_before: replicas }, 'scaled to zero')
    const info = this.toBackend({ ...service, Spec: spec }, [])
    if (info) this.emit({ type: 'upsert', backend: info })
    if (facts.group !== undefined) {
      await this.sleepDependenciesIfGroupAsleep(facts.group, context?.idleTimeout ?? 0, signal).catch((err: unknown) => {
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { provider: this.kind })
        this.log.warn({ group: facts.group, code: error.code, err: error.message }, 'could not scale the group\'s dependencies down; they stay up until the group sleeps again')
      })
    }
  }

  /** After a routed member slept: when no routed member of the group is up, scale the others down too. */
  private async sleepDependenciesIfGroupAsleep(group: string, idleTimeout: number, signal: AbortSignal): Promise<void> {
    const members = await this.api.list({ label: [`${this.prefix}.group=${group}`] }, signal)
    const up = (s: Service) => (s.Spec.Mode?.Replicated?.Replicas ?? 0) > 0
    const routed = members.filter((s) => readServiceLabels(s.Spec.Labels ?? {}, this.prefix).hosts.length > 0)
    if (routed.some(up)) return
    // A dependency woken within idle_timeout (a wake writes its last activity) may be under
    // another sidecar's wake of a routed member: leave it up.
    const recent = (s: Service) => {
      const now = Date.now()
      return now - (credibleActivity(readServiceLabels(s.Spec.Labels ?? {}, this.prefix).lastActivity, now, idleTimeout) ?? -Infinity) < idleTimeout
    }
    const deps = members.filter((s) => s.Spec.Mode?.Replicated && !routed.includes(s) && up(s) && !recent(s))
    if (deps.length === 0) return
    this.log.info({ group, services: deps.map(nameOf) }, 'group asleep; scaling its dependencies down')
    await Promise.all(
      deps.map(async (s) => {
        const count = s.Spec.Mode?.Replicated?.Replicas ?? 0
        const explicitCount = s.Spec.Labels?.[`${this.prefix}.replicas`] !== undefined
        const spec = withReplicas(s.Spec, 0, (labels) => {
          labels[this.labels.asleepSince] = new Date().toISOString()
          if (!explicitCount) labels[this.labels.asleepReplicas] = String(count)
        })
        // A lost race means someone changed the service (maybe woke the group): leave it up.
        await this.api.update(s.ID, s.Version.Index, spec, signal).catch((err: unknown) => {
          if (!isOutOfSequence(err)) throw err
        })
      }),
    )
  }

  // ── shared activity ────────────────────────────────────────────────────────────────────────

  /**
   * Record that this sidecar saw traffic at `at` (ms since the epoch) in the service's
   * `<prefix>.last_activity` label, keeping the newest value any sidecar wrote. A lost
   * compare-and-swap is retried on a fresh read. A failure is remembered: sleeps of the service
   * are refused until a later write succeeds.
   */
  async shareActivity(id: string, at: number, signal: AbortSignal, context?: SleepContext): Promise<void> {
    this.assertOpen()
    try {
      for (let attempt = 1; ; attempt++) {
        const service = await this.api.inspect(id, signal)
        const facts = readServiceLabels(service.Spec.Labels ?? {}, this.prefix)
        // A value beyond the horizon in the future is replaced, not kept as the newest.
        const recorded = credibleActivity(facts.lastActivity, Date.now(), context?.idleTimeout)
        if (recorded !== undefined && recorded >= at) break
        const spec = withReplicas(service.Spec, undefined, (labels) => {
          labels[this.labels.lastActivity] = new Date(at).toISOString()
        })
        try {
          await this.api.update(service.ID, service.Version.Index, spec, signal)
          break
        } catch (err) {
          if (!isOutOfSequence(err) || attempt >= CAS_ATTEMPTS) throw this.engineError(err, service, 'write the last activity of')
        }
        await delay(jitter(attempt), signal)
        throwIfAbortedRelight(signal)
      }
      this.shareFailed.delete(id)
    } catch (err) {
      this.shareFailed.add(id)
      throw toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: id, provider: this.kind })
    }
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  /** Inspect a service this provider manages (domain label, replicated). */
  private async routed(id: string, signal: AbortSignal): Promise<{ service: Service; facts: ServiceFacts }> {
    const service = await this.api.inspect(id, signal)
    const facts = readServiceLabels(service.Spec.Labels ?? {}, this.prefix)
    if (facts.hosts.length === 0) {
      throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `service ${nameOf(service)} has no ${domainLabel(this.prefix)} label`, { backend: id, provider: this.kind })
    }
    if (!service.Spec.Mode?.Replicated) throw this.failed(service, `service ${nameOf(service)} is not a replicated service (global or job mode); only replicated services scale to zero`)
    return { service, facts }
  }

  /** Addresses of the nodes tasks run on: this node is 127.0.0.1, others their node address. */
  private async learnNodes(tasks: readonly Task[], signal: AbortSignal): Promise<void> {
    if (tasks.length === 0) return
    if (this.localNode === undefined) {
      const info = await this.api.info(signal)
      this.localNode = info.Swarm?.NodeID || undefined
    }
    if (!tasks.some((t) => t.NodeID !== undefined && t.NodeID !== this.localNode && !this.nodeHosts.has(t.NodeID))) return
    for (const node of await this.api.nodes(signal)) {
      const addr = nodeAddress(node)
      if (addr !== undefined) this.nodeHosts.set(node.ID, addr)
    }
  }

  private hostOf(nodeId: string | undefined): string | undefined {
    if (nodeId === undefined || nodeId === this.localNode) return '127.0.0.1'
    return this.nodeHosts.get(nodeId)
  }

  private refused(name: string, why: string): RelightError {
    return new RelightError('RELIGHT_ERR_SLEEP_REFUSED', `service ${name} stays up: ${why}`, { backend: name, provider: this.kind })
  }

  private failed(service: Service, message: string): RelightError {
    return new RelightError('RELIGHT_ERR_PROVIDER_FAILED', message, { backend: nameOf(service), provider: this.kind })
  }

  private engineError(err: unknown, service: Service, what: string): RelightError {
    const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: nameOf(service), provider: this.kind })
    if (isOutOfSequence(err)) {
      return new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `could not ${what} service ${nameOf(service)}: it kept changing (${CAS_ATTEMPTS} updates out of sequence)`, error.context, { cause: err })
    }
    return error
  }

  /** Warn once per service and topic (label name): keys never hold label values (they could grow without bound). */
  private warnOnce(id: string, topic: string, message: string, fields: object, what: string): void {
    if (!this.warned.first(id, topic)) return
    this.log.warn({ ...fields }, what.includes(message) ? what : `${what}: ${message}`)
  }

  private assertOpen(): void {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the swarm provider is closed', { provider: this.kind })
  }

  // ── check and lifecycle ────────────────────────────────────────────────────────────────────

  async check(signal: AbortSignal): Promise<CheckResult[]> {
    const results: CheckResult[] = []
    const where = this.engine.address.display
    let info
    try {
      info = await this.api.info(signal)
    } catch (err) {
      return [{ ok: false, message: `cannot use the Docker engine for swarm: ${isRelightError(err) ? err.message : String(err)}` }]
    }
    const swarm = info.Swarm
    if (swarm?.LocalNodeState !== 'active') {
      return [
        {
          ok: false,
          message: `the Docker engine at ${where} is not part of a swarm (state ${swarm?.LocalNodeState ?? 'unknown'}${swarm?.Error ? `: ${swarm.Error}` : ''}): run docker swarm init, or join it to a swarm`,
        },
      ]
    }
    if (!swarm.ControlAvailable) {
      return [
        {
          ok: false,
          message: `node ${swarm.NodeID ?? '?'} (${swarm.NodeAddr ?? where}) is a swarm worker, not a manager: Swarm answers service and task calls only on managers. Point providers.swarm.socket at a manager's Engine API, or run this sidecar on a manager`,
        },
      ]
    }
    results.push({ ok: true, message: `Docker Engine ${info.ServerVersion ?? '?'} at ${where} is a swarm manager (node ${swarm.NodeID ?? '?'}, ${swarm.NodeAddr ?? '?'})` })
    try {
      const services = await this.api.list({ label: [domainLabel(this.prefix)] }, signal)
      results.push({
        ok: true,
        message:
          services.length === 0
            ? `no service carries the ${domainLabel(this.prefix)} label yet (docker service create --label ${domainLabel(this.prefix)}=app.example.com …)`
            : `${services.length} service(s) labelled ${domainLabel(this.prefix)}: ${services.map(nameOf).join(', ')}`,
      })
      for (const s of services) {
        const facts = readServiceLabels(s.Spec.Labels ?? {}, this.prefix)
        for (const p of facts.problems) results.push({ ok: false, message: `service ${nameOf(s)}: ${p}` })
        if (!s.Spec.Mode?.Replicated) {
          results.push({ ok: false, message: `service ${nameOf(s)} runs in ${s.Spec.Mode?.Global ? 'global' : 'job'} mode: only replicated services can be scaled to zero (docker service create --mode replicated); it is not routed` })
          continue
        }
        const port = targetPort(s, facts.port, this.prefix)
        if ('problem' in port) results.push({ ok: false, message: `service ${nameOf(s)} ${port.problem}; it is not routed` })
      }
    } catch (err) {
      results.push({ ok: false, message: `cannot list services: ${(err as Error).message}` })
    }
    return results
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    this.listeners.clear()
    if (!this.options.engine) await this.engine.close()
  }
}

function nameOf(s: Service): string {
  return s.Spec.Name ?? s.ID.slice(0, 12)
}

/** A copy of `spec` with `replicas` (unless undefined) and labels edited by `edit`. */
function withReplicas(spec: ServiceSpec, replicas: number | undefined, edit: (labels: Record<string, string>) => void): ServiceSpec {
  const labels = { ...(spec.Labels ?? {}) }
  edit(labels)
  const mode = replicas === undefined ? spec.Mode : { ...spec.Mode, Replicated: { ...spec.Mode?.Replicated, Replicas: replicas } }
  return { ...spec, Labels: labels, ...(mode ? { Mode: mode } : {}) }
}

/** A short random pause before retrying a lost compare-and-swap, longer with each attempt. */
function jitter(attempt: number): number {
  return Math.floor(Math.random() * 10 * attempt) + 5
}

function throwIfAbortedRelight(signal: AbortSignal): void {
  if (signal.aborted) throw toRelightError(signal.reason, 'RELIGHT_ERR_ABORTED', { provider: 'swarm' })
}
