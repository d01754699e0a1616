/**
 * The libpod calls the Podman provider makes, over the shared Engine API client created with
 * the `/v4.0.0/libpod` prefix (served by Podman 4.x and 5.x). libpod answers 304 when a
 * container already is in the asked state: that counts as success here.
 */
import { RelightError } from '../../core/errors.js'
import { EngineClient, engineStatus } from '../moby/client.js'
import type { LibpodInspect } from './container-info.js'

export const LIBPOD_PREFIX = '/v4.0.0/libpod'

export function libpodClient(socket: string, dispatcher?: import('undici').Dispatcher, requestTimeout = 60_000): EngineClient {
  return new EngineClient({ address: socket, apiPrefix: LIBPOD_PREFIX, name: 'podman', requestTimeout, ...(dispatcher ? { dispatcher } : {}) })
}

export interface LibpodListEntry {
  readonly Id: string
  readonly Names?: string[]
  readonly State?: string
  readonly Labels?: Record<string, string> | null
}

const containerPath = (id: string, op: string) => `/containers/${encodeURIComponent(id)}/${op}`

/** An engine 404 about container `id` becomes RELIGHT_ERR_BACKEND_NOT_FOUND. */
export function notFoundAsBackend(err: unknown, id: string): unknown {
  if (engineStatus(err) !== 404) return err
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `Podman has no container ${id}`, { backend: id, provider: 'podman' }, { cause: err })
}

/** POST a container operation; 304 (already so) resolves. */
export async function containerOp(engine: EngineClient, id: string, op: string, signal: AbortSignal, query?: Record<string, string | number | boolean | undefined>): Promise<void> {
  try {
    await engine.request('POST', containerPath(id, op), { signal, ...(query ? { query } : {}) })
  } catch (err) {
    if (engineStatus(err) === 304) return
    throw notFoundAsBackend(err, id)
  }
}

/** Every container (any state) carrying `label`. */
export async function listContainers(engine: EngineClient, label: string, signal: AbortSignal): Promise<LibpodListEntry[]> {
  return (await engine.json<LibpodListEntry[] | null>('GET', '/containers/json', { query: { all: true, filters: { label: [label] } }, signal })) ?? []
}

export async function inspectContainer(engine: EngineClient, id: string, signal: AbortSignal): Promise<LibpodInspect> {
  try {
    return await engine.json<LibpodInspect>('GET', containerPath(id, 'json'), { signal })
  } catch (err) {
    throw notFoundAsBackend(err, id)
  }
}

export const startContainer = (engine: EngineClient, id: string, signal: AbortSignal) => containerOp(engine, id, 'start', signal)
export const pauseContainer = (engine: EngineClient, id: string, signal: AbortSignal) => containerOp(engine, id, 'pause', signal)
export const unpauseContainer = (engine: EngineClient, id: string, signal: AbortSignal) => containerOp(engine, id, 'unpause', signal)
/** `timeoutSeconds` undefined: the container's own stop timeout. */
export const stopContainer = (engine: EngineClient, id: string, timeoutSeconds: number | undefined, signal: AbortSignal) =>
  containerOp(engine, id, 'stop', signal, { timeout: timeoutSeconds })

/** Figures of `GET /libpod/containers/stats?stream=false` this provider reads. */
export interface LibpodStats {
  readonly ContainerID?: string
  /** CPU percent averaged over the container's life. */
  readonly CPU?: number
  /** Container CPU time, ns. */
  readonly CPUNano?: number
  /** Wall clock of the sample, ns. */
  readonly SystemNano?: number
  /** Bytes. */
  readonly MemUsage?: number
}

/** One-shot stats of one container. */
export async function containerStats(engine: EngineClient, id: string, signal: AbortSignal): Promise<LibpodStats | undefined> {
  try {
    const body = await engine.json<{ Stats?: LibpodStats[] | null } | undefined>('GET', '/containers/stats', { query: { containers: id, stream: false }, signal })
    return body?.Stats?.[0] ?? undefined
  } catch (err) {
    throw notFoundAsBackend(err, id)
  }
}

export interface LibpodVersion {
  readonly Version?: string
  readonly ApiVersion?: string
}

export function version(engine: EngineClient, signal: AbortSignal): Promise<LibpodVersion> {
  return engine.json<LibpodVersion>('GET', '/version', { signal })
}

export interface LibpodInfo {
  readonly host?: { readonly ociRuntime?: { readonly name?: string; readonly path?: string } }
}

export function info(engine: EngineClient, signal: AbortSignal): Promise<LibpodInfo> {
  return engine.json<LibpodInfo>('GET', '/info', { signal })
}
