/**
 * What the Swarm provider's operations (service-*.ts, start-failure.ts) share: the engine calls,
 * the view, the label names, this sidecar's identity, and the one translation service → backend.
 */
import type { Logger } from 'pino'
import { RelightError, toRelightError } from '../../core/errors.js'
import type { BackendInfo, BackendSettings } from '../../core/provider.js'
import { withDeadline } from '../../core/timers.js'
import { problemTopic, type WarnOnce } from '../../core/warn-once.js'
import { type SharedLabels, readServiceLabels } from './labels.js'
import type { Service, ServiceSpec, SwarmServices, Task } from './services.js'
import { nodeAddress, targetPort, taskUpstreams } from './upstreams.js'
import type { SwarmView } from './view.js'

/** Compare-and-swap attempts for writes that must not be lost (wake, activity). */
export const CAS_ATTEMPTS = 8
/** Task states after which a task never runs again. */
export const TASK_FAILED: ReadonlySet<string> = new Set(['failed', 'rejected', 'orphaned'])
export const TASK_ENDED: ReadonlySet<string> = new Set(['complete', 'shutdown', 'failed', 'rejected', 'remove', 'orphaned'])

export class SwarmContext {
  /** Task ids each wake saw (the start-failure hook judges those). */
  readonly woke = new Map<string, ReadonlySet<string>>()
  private localNode: string | undefined
  private readonly nodeHosts = new Map<string, string>()
  /** Deferred work by key (a dependency sleep to retry): one per key, cancelled on close. */
  private readonly timers = new Map<string, { timer: NodeJS.Timeout; stop: AbortController }>()

  constructor(
    readonly kind: string,
    readonly api: SwarmServices,
    readonly view: SwarmView,
    readonly log: Logger,
    readonly prefix: string,
    readonly labels: SharedLabels,
    readonly identity: string,
    readonly configSettings: BackendSettings,
    private readonly warned: WarnOnce,
  ) {}

  /** What the registry knows about a service; undefined when it is not routed (no domain, global mode, no host port). */
  toBackend(s: Service, tasks: readonly Task[]): BackendInfo | undefined {
    const labels = s.Spec.Labels ?? {}
    const facts = readServiceLabels(labels, this.prefix)
    if (facts.hosts.length === 0) return undefined
    const name = nameOf(s)
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
        ...(facts.activity !== undefined ? { activity: facts.activity } : {}),
      },
    }
  }

  /** Learn this node's id once (tasks here are reached on 127.0.0.1). */
  async knowLocalNode(signal: AbortSignal): Promise<void> {
    if (this.localNode !== undefined) return
    const info = await this.api.info(signal)
    this.localNode = info.Swarm?.NodeID || undefined
  }

  /** Addresses of the nodes tasks run on: this node is 127.0.0.1, others their node address. */
  async learnNodes(tasks: readonly Task[], signal: AbortSignal): Promise<void> {
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

  /** Run `fn` once in `ms` (replacing what was scheduled under `key`); bounded to 30 s; cancelled by closeTimers. */
  later(key: string, ms: number, fn: (signal: AbortSignal) => Promise<void>): void {
    this.cancel(key)
    const stop = new AbortController()
    const timer = setTimeout(() => {
      this.timers.delete(key)
      const bound = withDeadline(stop.signal, 30_000)
      void fn(bound.signal)
        .catch(() => undefined)
        .finally(bound.clear)
    }, ms)
    timer.unref()
    this.timers.set(key, { timer, stop })
  }

  private cancel(key: string): void {
    const t = this.timers.get(key)
    if (!t) return
    clearTimeout(t.timer)
    t.stop.abort()
    this.timers.delete(key)
  }

  closeTimers(): void {
    for (const key of [...this.timers.keys()]) this.cancel(key)
  }

  /** The nodes Swarm reports `ready` now (one `GET /nodes`). */
  async readyNodes(signal: AbortSignal): Promise<ReadonlySet<string>> {
    const nodes = await this.api.nodes(signal)
    return new Set(nodes.filter((n) => n.Status?.State === 'ready').map((n) => n.ID))
  }

  hostOf(nodeId: string | undefined): string | undefined {
    if (nodeId === undefined || nodeId === this.localNode) return '127.0.0.1'
    return this.nodeHosts.get(nodeId)
  }

  /** The idle_timeout a service's label or the provider's settings give (undefined: the top-level default, which providers do not see). */
  explicitIdleTimeout(s: Service): number | undefined {
    return readServiceLabels(s.Spec.Labels ?? {}, this.prefix).settings.idle_timeout ?? this.configSettings.idle_timeout
  }

  refused(name: string, why: string): RelightError {
    return new RelightError('RELIGHT_ERR_SLEEP_REFUSED', `service ${name} stays up: ${why}`, { backend: name, provider: this.kind })
  }

  failed(service: Service, message: string): RelightError {
    return new RelightError('RELIGHT_ERR_PROVIDER_FAILED', message, { backend: nameOf(service), provider: this.kind })
  }

  engineError(err: unknown, service: Service, what: string, outOfSequence: boolean): RelightError {
    const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: nameOf(service), provider: this.kind })
    if (outOfSequence) {
      return new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `could not ${what} service ${nameOf(service)}: it kept changing (${CAS_ATTEMPTS} updates out of sequence)`, error.context, { cause: err })
    }
    return error
  }

  /** Warn once per service and topic (label name): keys never hold label values (they could grow without bound). */
  warnOnce(id: string, topic: string, message: string, fields: object, what: string): void {
    if (!this.warned.first(id, topic)) return
    this.log.warn({ ...fields }, what.includes(message) ? what : `${what}: ${message}`)
  }

  throwIfAborted(signal: AbortSignal): void {
    if (signal.aborted) throw toRelightError(signal.reason, 'RELIGHT_ERR_ABORTED', { provider: this.kind })
  }
}

export function nameOf(s: Service): string {
  return s.Spec.Name ?? s.ID.slice(0, 12)
}

export function replicasOf(s: Service): number {
  return s.Spec.Mode?.Replicated?.Replicas ?? 0
}

/** A copy of `spec` with `replicas` (unless undefined) and labels edited by `edit`. */
export function withReplicas(spec: ServiceSpec, replicas: number | undefined, edit: (labels: Record<string, string>) => void): ServiceSpec {
  const labels = { ...(spec.Labels ?? {}) }
  edit(labels)
  const mode = replicas === undefined ? spec.Mode : { ...spec.Mode, Replicated: { ...spec.Mode?.Replicated, Replicas: replicas } }
  return { ...spec, Labels: labels, ...(mode ? { Mode: mode } : {}) }
}

/** A short random pause before retrying a lost compare-and-swap, longer with each attempt. */
export function jitter(attempt: number): number {
  return Math.floor(Math.random() * 5 * attempt) + 5 * attempt
}

/** A task's reason for not running (engine text). */
export function taskReason(t: Task): string {
  return t.Status.Err ?? t.Status.Message ?? t.Status.State
}
