/**
 * An in-memory Swarm manager behind the calls SwarmServices makes (list, inspect, update with
 * ?version=, tasks, info, nodes, events), for the Swarm view and operation tests: several
 * SwarmProvider instances on one FakeSwarm are several sidecars on one engine. Every write gets
 * a new Version.Index and UpdatedAt and one `update` event whose timeNano is that UpdatedAt (as
 * probed on Docker 20.10), delivered before the update's answer (the ordering the view must
 * survive). Every call is counted in `calls` ("GET /services/{id}", "POST /services/{id}/update"…).
 */
import { RelightError } from '../../sidecar/core/errors.js'
import type { MobyEvent } from '../../sidecar/providers/moby/events.js'
import type { Filters, Service, ServiceSpec, SwarmServices, Task } from '../../sidecar/providers/swarm/services.js'

export class FakeSwarm {
  readonly services = new Map<string, Service>()
  readonly tasks: Task[] = []
  readonly calls: string[] = []
  private index = 100
  private ns = 1_796_663_422_101_986_584n
  private readonly streams = new Set<{ push: (e: MobyEvent) => void; end: (err?: Error) => void }>()
  /** Called before an update is applied (a test writes "as another sidecar" here). */
  beforeUpdate: ((id: string) => void | Promise<void>) | undefined
  /** The next this many `/events` requests fail (an engine that is down). */
  failEvents = 0
  /** Delay (ms) of every inspect answer (a slow engine). */
  inspectDelayMs = 0
  /** Tasks a scale-up creates: their states, one per poll (the last repeats). Default: running at once. */
  taskScript: Array<Partial<Task['Status']> & { desired?: Task['DesiredState'] }>[] | undefined
  /** Per-service task scripts (override `taskScript`). */
  readonly taskScripts = new Map<string, Array<Partial<Task['Status']> & { desired?: Task['DesiredState'] }>[]>()
  private polls = new Map<string, number>()

  add(id: string, labels: Record<string, string>, replicas = 1): Service {
    const s: Service = {
      ID: id,
      Version: { Index: ++this.index },
      UpdatedAt: this.nextTime(),
      Spec: {
        Name: id,
        Labels: labels,
        Mode: { Replicated: { Replicas: replicas } },
        EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishMode: 'host' }] },
        TaskTemplate: { ContainerSpec: { Image: 'sha256:abc' } },
      },
    }
    this.services.set(id, s)
    if (replicas > 0) this.startTasks(id, replicas)
    return s
  }

  /** A write by someone else (another sidecar, an operator). */
  writeAsOther(id: string, edit: (spec: ServiceSpec) => ServiceSpec): void {
    const s = this.services.get(id)
    if (!s) throw new Error(`no service ${id}`)
    this.apply(s, edit(structuredClone(s.Spec)))
  }

  count(prefix: string): number {
    return this.calls.filter((c) => c.startsWith(prefix)).length
  }

  /** End every open event stream with an error (an engine restart). */
  cut(): void {
    for (const s of [...this.streams]) s.end(new Error('connection reset'))
  }

  readonly api = {
    info: async () => {
      this.calls.push('GET /info')
      return { Swarm: { NodeID: 'node1', LocalNodeState: 'active', ControlAvailable: true } }
    },
    version: async () => ({ ApiVersion: '1.41' }),
    nodes: async () => {
      this.calls.push('GET /nodes')
      return []
    },
    list: async (filters: Filters) => {
      this.calls.push('GET /services')
      const wanted = filters.label ?? []
      return [...this.services.values()]
        .filter((s) =>
          wanted.every((f) => {
            const [k, v] = f.split('=', 2) as [string, string | undefined]
            const have = s.Spec.Labels?.[k]
            return have !== undefined && (v === undefined || have === v)
          }),
        )
        .map((s) => structuredClone(s))
    },
    inspect: async (id: string, signal: AbortSignal) => {
      this.calls.push(`GET /services/${id}`)
      if (this.inspectDelayMs > 0) {
        await new Promise<void>((resolve, reject) => {
          const t = setTimeout(resolve, this.inspectDelayMs)
          signal.addEventListener('abort', () => {
            clearTimeout(t)
            reject(signal.reason)
          }, { once: true })
        })
      }
      const s = this.services.get(id)
      if (!s) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `service ${id} does not exist`, { backend: id, provider: 'swarm' })
      return structuredClone(s)
    },
    update: async (id: string, version: number, spec: ServiceSpec) => {
      this.calls.push(`POST /services/${id}/update`)
      await this.beforeUpdate?.(id)
      const s = this.services.get(id)
      if (!s) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `service ${id} does not exist`, { backend: id, provider: 'swarm' })
      if (s.Version.Index !== version) {
        throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'docker refused POST update: 500 update out of sequence', {
          provider: 'docker',
          engine: { kind: 'status', status: 500, engineMessage: 'rpc error: code = Unknown desc = update out of sequence' },
        } as never)
      }
      this.apply(s, structuredClone(spec))
    },
    tasks: async (filters: Filters) => {
      this.calls.push('GET /tasks')
      const ids = filters.service
      const desired = filters['desired-state']
      for (const id of ids ?? []) this.poll(id)
      return this.tasks.filter((t) => (!ids || ids.includes(t.ServiceID)) && (!desired || desired.includes(t.DesiredState ?? 'running'))).map((t) => structuredClone(t))
    },
    events: async (_filters: Filters, signal: AbortSignal): Promise<AsyncIterable<MobyEvent>> => {
      this.calls.push('GET /events')
      if (this.failEvents > 0) {
        this.failEvents--
        throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'connect ECONNREFUSED /var/run/docker.sock', { provider: 'docker' })
      }
      const queue: MobyEvent[] = []
      let wake: (() => void) | undefined
      let ended: Error | null | undefined
      const stream = {
        push: (e: MobyEvent) => {
          queue.push(e)
          wake?.()
        },
        end: (err?: Error) => {
          ended = err ?? null
          wake?.()
        },
      }
      this.streams.add(stream)
      signal.addEventListener('abort', () => stream.end(), { once: true })
      const streams = this.streams
      return {
        async *[Symbol.asyncIterator]() {
          try {
            for (;;) {
              while (queue.length > 0) yield queue.shift() as MobyEvent
              if (ended !== undefined) {
                if (ended) throw ended
                return
              }
              await new Promise<void>((r) => (wake = r))
              wake = undefined
            }
          } finally {
            streams.delete(stream)
          }
        },
      }
    },
  } as unknown as SwarmServices

  private apply(s: Service, spec: ServiceSpec): void {
    const before = s.Spec.Mode?.Replicated?.Replicas ?? 0
    const after = spec.Mode?.Replicated?.Replicas ?? 0
    const time = this.nextTime()
    const next: Service = { ...s, Version: { Index: (this.index += 3) }, UpdatedAt: time, Spec: spec }
    this.services.set(s.ID, next)
    if (before === 0 && after > 0) this.startTasks(s.ID, after)
    if (before > 0 && after === 0) for (const t of this.tasks.filter((t) => t.ServiceID === s.ID)) Object.assign(t, { DesiredState: 'shutdown', Status: { ...t.Status, State: 'shutdown' } })
    const attributes: Record<string, string> = { name: s.Spec.Name ?? s.ID }
    if (before !== after) Object.assign(attributes, { 'replicas.old': String(before), 'replicas.new': String(after) })
    const ns = BigInt(Date.parse(time.slice(0, 19) + 'Z')) * 1_000_000n + BigInt(time.slice(20, 29))
    const event: MobyEvent = { Type: 'service', Action: 'update', Actor: { ID: s.ID, Attributes: attributes }, time: Number(ns / 1_000_000_000n), timeNano: Number(ns) }
    for (const st of this.streams) st.push(event)
  }

  private startTasks(id: string, n: number): void {
    for (let i = 0; i < n; i++) {
      this.tasks.push({ ID: `${id}-t${this.tasks.length}`, ServiceID: id, NodeID: 'node1', DesiredState: 'running', Status: { State: this.taskScripts.has(id) || this.taskScript ? 'pending' : 'running', PortStatus: { Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishedPort: 30000 + this.tasks.length, PublishMode: 'host' }] } } })
    }
    this.polls.set(id, 0)
  }

  /** Advance the task script of a service by one poll. */
  private poll(id: string): void {
    const script = this.taskScripts.get(id) ?? this.taskScript
    if (!script || !this.polls.has(id)) return
    const n = this.polls.get(id) ?? 0
    this.polls.set(id, n + 1)
    const step = script[Math.min(n, script.length - 1)] ?? []
    const mine = this.tasks.filter((t) => t.ServiceID === id)
    step.forEach((st, i) => {
      const t = mine[i]
      if (!t) {
        this.tasks.push({ ID: `${id}-t${this.tasks.length}`, ServiceID: id, NodeID: 'node1', DesiredState: st.desired ?? 'running', Status: { State: st.State ?? 'running', ...(st.Err ? { Err: st.Err } : {}), PortStatus: { Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishedPort: 31000 + i, PublishMode: 'host' }] } } })
        return
      }
      Object.assign(t, { DesiredState: st.desired ?? t.DesiredState, Status: { ...t.Status, State: st.State ?? t.Status.State, ...(st.Err ? { Err: st.Err } : {}) } })
    })
  }

  private nextTime(): string {
    this.ns += 1_234_567_891n // 1.23 s between writes: distinct µs, ns precision beyond a double's
    const s = Number(this.ns / 1_000_000_000n)
    const frac = (this.ns % 1_000_000_000n).toString().padStart(9, '0')
    return `${new Date(s * 1000).toISOString().slice(0, 19)}.${frac}Z`
  }
}
