/**
 * Podman's own calls besides the kit's container operations (moby/container-*.ts, which take
 * this client as their libpod variant): the client with the `/v4.0.0/libpod` prefix (served by
 * Podman 4.x and 5.x), stats, version and engine info.
 */
import { EngineClient } from '../moby/client.js'
import { notFoundAsBackend } from '../moby/containers.js'

export const LIBPOD_PREFIX = '/v4.0.0/libpod'

export function libpodClient(socket: string, dispatcher?: import('undici').Dispatcher, requestTimeout = 60_000): EngineClient {
  return new EngineClient({ address: socket, apiPrefix: LIBPOD_PREFIX, name: 'podman', requestTimeout, ...(dispatcher ? { dispatcher } : {}) })
}

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
    throw notFoundAsBackend(err, id, { engine, variant: 'libpod' })
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
