/**
 * Docker Engine API container operations and answer shapes, over the shared EngineClient.
 * Podman's Docker-compatible endpoints answer the same way, so the Podman provider can reuse
 * this with its own client. Each operation is idempotent where Docker's answer allows it:
 * 304 (already started/stopped) and "already paused/unpaused" 409s count as success.
 */
import { RelightError } from '../../core/errors.js'
import { type EngineClient, engineStatus } from '../moby/client.js'
import type { MobyEvent } from '../moby/events.js'
import type { UpstreamInput } from '../moby/upstream.js'

/** `State.Status` values. */
export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead'

export interface ContainerSummary {
  readonly Id: string
  readonly Names?: string[]
  readonly Labels?: Record<string, string> | null
  readonly State?: ContainerStatus
}

export interface ContainerInspect extends UpstreamInput {
  readonly Id: string
  readonly Name?: string
  readonly State: {
    readonly Status: ContainerStatus
    readonly Running?: boolean
    readonly Paused?: boolean
    readonly ExitCode?: number
    readonly Error?: string
    readonly Health?: { readonly Status?: 'starting' | 'healthy' | 'unhealthy' | 'none' }
  }
  readonly Config?: {
    readonly Image?: string
    readonly Labels?: Record<string, string> | null
    readonly ExposedPorts?: Record<string, object> | null
    readonly Healthcheck?: { readonly Test?: string[] | null } | null
  }
}

export type Filters = Record<string, string[]>

export function containerName(c: ContainerInspect): string {
  return (c.Name ?? '').replace(/^\//, '') || c.Id.slice(0, 12)
}

export function labelsOf(c: ContainerInspect | ContainerSummary): Record<string, string> {
  if ('Config' in c && c.Config) return c.Config.Labels ?? {}
  return (c as ContainerSummary).Labels ?? {}
}

/** Whether the container (or its image) defines a health check Docker runs. */
export function hasHealthcheck(c: ContainerInspect): boolean {
  if (c.State.Health && c.State.Health.Status !== 'none') return true
  const test = c.Config?.Healthcheck?.Test
  return Array.isArray(test) && test.length > 0 && test[0] !== 'NONE'
}

/** The only exposed TCP port, when the image or container exposes exactly one. */
export function singleExposedPort(c: ContainerInspect): number | undefined {
  const tcp = Object.keys(c.Config?.ExposedPorts ?? {})
    .filter((k) => k.endsWith('/tcp'))
    .map((k) => Number(k.slice(0, -4)))
  return tcp.length === 1 ? tcp[0] : undefined
}

function notFound(id: string, provider: string): RelightError {
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${id} does not exist`, { backend: id, provider })
}

function notFoundAs404<T>(id: string, engine: EngineClient, p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    if (engineStatus(err) === 404) throw notFound(id, engine.name)
    throw err
  })
}

export class DockerContainers {
  constructor(readonly engine: EngineClient) {}

  ping(signal: AbortSignal): Promise<unknown> {
    return this.engine.request('GET', '/_ping', { signal })
  }

  version(signal: AbortSignal): Promise<{ Version?: string; ApiVersion?: string }> {
    return this.engine.json('GET', '/version', { signal })
  }

  list(filters: Filters, signal: AbortSignal): Promise<ContainerSummary[]> {
    return this.engine.json<ContainerSummary[]>('GET', '/containers/json', { query: { all: true, filters }, signal })
  }

  /** RELIGHT_ERR_BACKEND_NOT_FOUND when the container does not exist. */
  inspect(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    return notFoundAs404(id, this.engine, this.engine.json<ContainerInspect>('GET', `/containers/${encodeURIComponent(id)}/json`, { signal }))
  }

  async start(id: string, signal: AbortSignal): Promise<void> {
    await notFoundAs404(
      id,
      this.engine,
      this.engine.request('POST', `/containers/${encodeURIComponent(id)}/start`, { signal }).catch((err: unknown) => {
        if (engineStatus(err) === 304) return undefined // already started
        throw err
      }),
    )
  }

  /** `t`: seconds Docker waits after the stop signal before SIGKILL. Stopping a paused container works. */
  async stop(id: string, timeoutSeconds: number, signal: AbortSignal): Promise<void> {
    await notFoundAs404(
      id,
      this.engine,
      this.engine.request('POST', `/containers/${encodeURIComponent(id)}/stop`, { query: { t: timeoutSeconds }, signal }).catch((err: unknown) => {
        if (engineStatus(err) === 304) return undefined // already stopped
        throw err
      }),
    )
  }

  /** Pause; a 409 is re-checked: already paused counts as done. */
  async pause(id: string, signal: AbortSignal): Promise<void> {
    await notFoundAs404(
      id,
      this.engine,
      this.engine.request('POST', `/containers/${encodeURIComponent(id)}/pause`, { signal }).catch(async (err: unknown) => {
        if (engineStatus(err) === 409 && (await this.inspect(id, signal)).State.Status === 'paused') return undefined
        throw err
      }),
    )
  }

  /** Unpause; a 409 is re-checked: not paused (already running) counts as done. */
  async unpause(id: string, signal: AbortSignal): Promise<void> {
    await notFoundAs404(
      id,
      this.engine,
      this.engine.request('POST', `/containers/${encodeURIComponent(id)}/unpause`, { signal }).catch(async (err: unknown) => {
        if (engineStatus(err) === 409 && (await this.inspect(id, signal)).State.Status === 'running') return undefined
        throw err
      }),
    )
  }

  /** Follow `/events`; resolves once the engine accepted the stream. */
  events(filters: Filters, signal: AbortSignal): Promise<AsyncIterable<MobyEvent>> {
    return this.engine.stream<MobyEvent>('/events', { query: { filters }, signal })
  }
}
