/**
 * Container answer shapes and the one request path of the Moby kit's container operations
 * (container-*.ts beside this file). Two variants speak them: Docker's Engine API
 * (`/containers/{id}/…`) and Podman's libpod API (the same paths under `/v4.0.0/libpod`, through
 * an EngineClient made with that prefix). Inspect and list answers are read by the same fields;
 * where the variants differ (stop's timeout parameter, checkpoint) the operation says so.
 */
import { RelightError } from '../../core/errors.js'
import { type EngineClient, type Query, engineStatus } from './client.js'
import type { UpstreamInput } from './upstream.js'

/** `docker`: the Engine API (dockerd, or Podman's compatible endpoints); `libpod`: Podman's own API. */
export type EngineVariant = 'docker' | 'libpod'

/** Where container operations go: an engine client and the API variant it speaks. */
export interface ContainerApi {
  readonly engine: EngineClient
  readonly variant: EngineVariant
}

/**
 * `State.Status`: Docker's (created, running, paused, restarting, removing, exited, dead) and
 * libpod's additions (configured, initialized, stopping, stopped).
 */
export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead' | 'configured' | 'initialized' | 'stopping' | 'stopped'

/** A `GET /containers/json` entry (Docker and libpod name these fields alike). */
export interface ContainerSummary {
  readonly Id: string
  readonly Names?: string[]
  readonly Labels?: Record<string, string> | null
  readonly State?: string
}

/** The fields of `GET /containers/{id}/json` (Docker or libpod) the kit reads. */
export interface ContainerInspect extends UpstreamInput {
  readonly Id: string
  readonly Name?: string
  readonly State: {
    readonly Status?: ContainerStatus | (string & {})
    readonly Running?: boolean
    readonly Paused?: boolean
    readonly ExitCode?: number
    readonly Error?: string
    readonly StartedAt?: string
    readonly Health?: { readonly Status?: string } | null
    /** libpod: set once checkpointed (with `keep`, the container then looks exited). */
    readonly Checkpointed?: boolean
    readonly CheckpointedAt?: string
    readonly RestoredAt?: string
  }
  readonly Config?: {
    readonly Image?: string
    readonly Labels?: Record<string, string> | null
    readonly ExposedPorts?: Record<string, object> | null
    readonly Healthcheck?: { readonly Test?: string[] | null } | null
  }
  /** libpod: the image as the user named it. */
  readonly ImageName?: string
}

export type Filters = Record<string, string[]>

export function containerName(c: ContainerInspect): string {
  return (c.Name ?? '').replace(/^\//, '') || c.Id.slice(0, 12)
}

export function summaryName(c: ContainerSummary): string {
  return (c.Names?.[0] ?? c.Id).replace(/^\//, '')
}

export function labelsOf(c: ContainerInspect | ContainerSummary): Record<string, string> {
  if ('Config' in c && c.Config) return c.Config.Labels ?? {}
  return (c as ContainerSummary).Labels ?? {}
}

/** Whether the container (or its image) defines a health check the engine runs. */
export function hasHealthcheck(c: ContainerInspect): boolean {
  const status = c.State?.Health?.Status
  if (status && status !== 'none') return true
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

export function containerPath(id: string, op: string): string {
  return `/containers/${encodeURIComponent(id)}/${op}`
}

/** An engine 404 about container `id` becomes RELIGHT_ERR_BACKEND_NOT_FOUND; other errors pass. */
export function notFoundAsBackend(err: unknown, id: string, api: ContainerApi): unknown {
  if (engineStatus(err) !== 404) return err
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${id} does not exist`, { backend: id, provider: api.engine.name }, { cause: err })
}

/** POST a container operation. 304 (already in that state) resolves; 404 is "not found". */
export async function postContainer(api: ContainerApi, id: string, op: string, signal: AbortSignal, query?: Query): Promise<void> {
  try {
    await api.engine.request('POST', containerPath(id, op), { signal, ...(query ? { query } : {}) })
  } catch (err) {
    if (engineStatus(err) === 304) return
    throw notFoundAsBackend(err, id, api)
  }
}
