/**
 * Docker Swarm services, tasks and nodes over the shared EngineClient: answer shapes and the
 * few calls the Swarm provider makes. Swarm answers these only on a manager node.
 *
 * Facts this relies on (Docker 20.10, API 1.41):
 * - An update POSTs the whole `Spec` back to `/services/{id}/update?version=N`; a stale N
 *   answers HTTP 500 "update out of sequence" (not 409). That is the compare-and-swap the
 *   sidecars share decisions through.
 * - Changing `Spec.Labels` does not restart tasks.
 * - `/tasks` has no events: task progress is polled.
 * - A task's host-mode published ports (also the ephemeral ones Swarm picks when the spec
 *   names no PublishedPort) are in `Status.PortStatus.Ports`, sometimes listed twice.
 */
import { RelightError } from '../../core/errors.js'
import { type EngineClient, engineStatus } from '../moby/client.js'
import type { MobyEvent } from '../moby/events.js'

export type Filters = Record<string, string[]>

export interface PortConfig {
  readonly Protocol?: 'tcp' | 'udp' | 'sctp'
  readonly TargetPort?: number
  readonly PublishedPort?: number
  readonly PublishMode?: 'ingress' | 'host'
}

export interface ServiceSpec {
  readonly Name?: string
  Labels?: Record<string, string> | null
  readonly Mode?: {
    Replicated?: { Replicas?: number }
    readonly Global?: object
    readonly ReplicatedJob?: object
    readonly GlobalJob?: object
  }
  readonly EndpointSpec?: { readonly Mode?: 'vip' | 'dnsrr'; readonly Ports?: PortConfig[] | null }
  readonly TaskTemplate?: { readonly ContainerSpec?: { readonly Image?: string } }
  readonly [key: string]: unknown
}

export interface Service {
  readonly ID: string
  readonly Version: { readonly Index: number }
  /** Set by the raft leader on every write (RFC 3339, ns); equals the `timeNano` of the write's `update` event. */
  readonly UpdatedAt?: string
  readonly Spec: ServiceSpec
  readonly Endpoint?: { readonly Ports?: PortConfig[] | null }
  readonly ServiceStatus?: { readonly RunningTasks?: number; readonly DesiredTasks?: number }
}

export type TaskState =
  | 'new'
  | 'allocated'
  | 'pending'
  | 'assigned'
  | 'accepted'
  | 'preparing'
  | 'ready'
  | 'starting'
  | 'running'
  | 'complete'
  | 'shutdown'
  | 'failed'
  | 'rejected'
  | 'remove'
  | 'orphaned'

export interface Task {
  readonly ID: string
  readonly ServiceID: string
  readonly NodeID?: string
  readonly Slot?: number
  readonly CreatedAt?: string
  readonly DesiredState?: TaskState
  readonly Status: {
    readonly State: TaskState
    readonly Err?: string
    readonly Message?: string
    readonly PortStatus?: { readonly Ports?: PortConfig[] | null }
    readonly ContainerStatus?: { readonly ContainerID?: string; readonly ExitCode?: number }
  }
}

export interface SwarmNode {
  readonly ID: string
  readonly Status?: { readonly State?: string; readonly Addr?: string }
  readonly ManagerStatus?: { readonly Addr?: string }
}

export interface SwarmInfo {
  readonly ServerVersion?: string
  readonly Swarm?: {
    readonly NodeID?: string
    readonly NodeAddr?: string
    readonly LocalNodeState?: 'inactive' | 'pending' | 'active' | 'error' | 'locked'
    readonly ControlAvailable?: boolean
    readonly Error?: string
  }
}

/** The engine refused an update because the version we sent is no longer the service's. */
export function isOutOfSequence(err: unknown): boolean {
  if (engineStatus(err) !== 500) return false
  const engine = (err as RelightError).context.engine
  return engine?.kind === 'status' && engine.engineMessage.includes('update out of sequence')
}

/**
 * A service's `UpdatedAt` in µs since the epoch (exact: no double in between), or undefined when
 * absent or unreadable. "2026-12-07T14:25:40.123456789Z" → 1796653540123456n.
 */
export function parseUpdatedAt(text: string | undefined): bigint | undefined {
  if (text === undefined) return undefined
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text)
  if (!m) return undefined
  const seconds = Date.parse(`${m[1]}${m[3]}`)
  if (!Number.isFinite(seconds)) return undefined
  const fraction = ((m[2] ?? '') + '000000').slice(0, 6)
  return BigInt(seconds) * 1000n + BigInt(fraction)
}

/**
 * An event's `timeNano` in µs. The JSON number (~1.8e18) reaches us as a double with 256 ns
 * steps, hence µs and a tolerance of 1 (`sameMicros`).
 */
export function eventMicros(timeNano: number | undefined): bigint | undefined {
  if (timeNano === undefined || !Number.isFinite(timeNano) || timeNano <= 0) return undefined
  return BigInt(Math.round(timeNano / 1000))
}

/** Two µs time stamps of one write (event time and inspected UpdatedAt) may differ by one. */
export function sameMicros(a: bigint, b: bigint): boolean {
  const d = a - b
  return d >= -1n && d <= 1n
}

/**
 * A task that could not bind its host port because the previous task still holds it (Swarm
 * retries it by its restart policy): not a failure of the wake. The one place that matches this text.
 */
export function isPortBusy(reason: string | undefined): boolean {
  return reason !== undefined && /port is already allocated|address already in use/i.test(reason)
}

export class SwarmServices {
  constructor(readonly engine: EngineClient) {}

  info(signal: AbortSignal): Promise<SwarmInfo> {
    return this.engine.json('GET', '/info', { signal })
  }

  version(signal: AbortSignal): Promise<{ Version?: string; ApiVersion?: string }> {
    return this.engine.json('GET', '/version', { signal })
  }

  list(filters: Filters, signal: AbortSignal): Promise<Service[]> {
    return this.engine.json<Service[]>('GET', '/services', { query: { status: true, filters }, signal })
  }

  /** RELIGHT_ERR_BACKEND_NOT_FOUND when the service does not exist. */
  async inspect(id: string, signal: AbortSignal): Promise<Service> {
    try {
      return await this.engine.json<Service>('GET', `/services/${encodeURIComponent(id)}`, { signal })
    } catch (err) {
      if (engineStatus(err) === 404) throw notFound(id)
      throw err
    }
  }

  /**
   * Write `spec` if the service is still at `version`. Rejects with the engine's error: check
   * `isOutOfSequence()` for a lost compare-and-swap; 404 becomes RELIGHT_ERR_BACKEND_NOT_FOUND.
   */
  async update(id: string, version: number, spec: ServiceSpec, signal: AbortSignal): Promise<void> {
    try {
      await this.engine.request('POST', `/services/${encodeURIComponent(id)}/update`, { query: { version }, body: spec, signal })
    } catch (err) {
      if (engineStatus(err) === 404) throw notFound(id)
      throw err
    }
  }

  tasks(filters: Filters, signal: AbortSignal): Promise<Task[]> {
    return this.engine.json<Task[]>('GET', '/tasks', { query: { filters }, signal })
  }

  nodes(signal: AbortSignal): Promise<SwarmNode[]> {
    return this.engine.json<SwarmNode[]>('GET', '/nodes', { signal })
  }

  /** Follow `/events`; resolves once the engine accepted the stream. */
  events(filters: Filters, signal: AbortSignal): Promise<AsyncIterable<MobyEvent>> {
    return this.engine.stream<MobyEvent>('/events', { query: { filters }, signal })
  }
}

function notFound(id: string): RelightError {
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `service ${id} does not exist`, { backend: id, provider: 'swarm' })
}
