/**
 * `check` on a live system: is a sidecar with this config running, and how is it? Found by its
 * pid file (written by `serve`) or, when there is none, by what answers healthz on `listen` and
 * holds that address. Read-only: one healthz request on `listen` (or `ops_listen`), /proc reads;
 * never a connection to the access-log socket (the live sidecar would log it).
 */
import { Agent, request } from 'undici'
import type { Config } from '../config/schema.js'
import { sidecarEndpoint } from '../health-client.js'
import { runningSidecarPid } from '../reload-client.js'
import { parseTcpAddress, unixPath } from '../startup/listen-address.js'
import { tcpPortHolder, unixSocketHolder } from '../startup/port-holder.js'

export interface Health {
  readonly status: string
  readonly backends: number
  readonly providers: Record<string, { ok: boolean; backends: number; awake?: number; reason?: string }>
  readonly access_log: string
  readonly snippet?: string | null
  readonly snippet_current?: string
  readonly snippet_outdated?: boolean
  /** Named by relight_fast's calls over a unix-socket `listen` (proven Caddy) only. */
  readonly fast_lane_dirs?: readonly string[]
  /** relight_fast calls whose directory was not recorded (over TCP, or too long). */
  readonly fast_lane_dirs_unproven?: number
  readonly version?: string
  readonly uptime_s?: number
}

export type Live =
  | { readonly running: false; readonly why: string }
  | { readonly running: true; readonly pid: number; readonly health: Health; readonly via: string }
  /** A process holds the pid file's pid, but healthz does not answer. */
  | { readonly running: true; readonly pid: number; readonly health: undefined; readonly error: string; readonly via: string }

/** GET healthz at `address` (`host:port` or `unix:/path`), bounded by `timeoutMs`. */
export async function fetchHealth(address: string, timeoutMs = 5000): Promise<Health> {
  const endpoint = sidecarEndpoint(address)
  const dispatcher = endpoint.socketPath !== undefined ? new Agent({ connect: { socketPath: endpoint.socketPath } }) : undefined
  try {
    const res = await request(`${endpoint.origin}/_relight/healthz`, { signal: AbortSignal.timeout(timeoutMs), ...(dispatcher ? { dispatcher } : {}) })
    const body = await res.body.text()
    const health = JSON.parse(body) as Health
    if (typeof health.status !== 'string' || typeof health.providers !== 'object') throw new Error(`not a relight-sidecar healthz answer: ${body.slice(0, 80)}`)
    return health
  } finally {
    await dispatcher?.close()
  }
}

/** The pid listening at `address`, from /proc (undefined when not found or not visible). */
function holderOf(address: string): number | undefined {
  const path = unixPath(address)
  return (path === undefined ? tcpPortHolder(parseTcpAddress(address).port) : unixSocketHolder(path))?.pid
}

/** Is this config's sidecar running? Its pid and healthz when it is. */
export async function findRunningSidecar(config: Config, baseDir: string): Promise<Live> {
  const recorded = runningSidecarPid(config, baseDir)
  const addresses = [config.listen, config.ops_listen].filter((a): a is string => a !== undefined)
  if ('pid' in recorded) {
    let error = ''
    for (const via of addresses) {
      try {
        return { running: true, pid: recorded.pid, health: await fetchHealth(via), via }
      } catch (err) {
        error ||= `${via}: ${(err as Error).message}`
      }
    }
    return { running: true, pid: recorded.pid, health: undefined, error, via: config.listen }
  }
  // No (current) pid file: a sidecar whose pid file could not be written still answers healthz.
  for (const via of addresses) {
    const pid = holderOf(via)
    if (pid === undefined) continue
    try {
      return { running: true, pid, health: await fetchHealth(via), via }
    } catch {
      // something else holds it: preflight names it
    }
  }
  return { running: false, why: recorded.error }
}
