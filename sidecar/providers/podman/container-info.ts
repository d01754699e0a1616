/**
 * libpod container inspect → BackendInfo. Pure: labels, state (a checkpointed container looks
 * exited; `State.Checkpointed` tells it apart) and upstream address.
 */
import { parseDuration } from '../../config/duration.js'
import type { BackendInfo, BackendSettings, BackendState, Readiness, SleepMode, Strategy } from '../../core/provider.js'
import { SLEEP_MODES } from '../../core/provider.js'

/** The fields of `GET /libpod/containers/{id}/json` this provider reads. */
export interface LibpodInspect {
  readonly Id: string
  readonly Name?: string
  readonly State?: {
    readonly Status?: string
    readonly Running?: boolean
    readonly Paused?: boolean
    readonly ExitCode?: number
    readonly StartedAt?: string
    readonly Checkpointed?: boolean
    readonly CheckpointedAt?: string
    readonly RestoredAt?: string
  }
  readonly Config?: { readonly Labels?: Record<string, string> | null; readonly Image?: string }
  readonly ImageName?: string
  readonly Pod?: string
  readonly HostConfig?: {
    readonly NetworkMode?: string
    readonly PortBindings?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null
  }
  readonly NetworkSettings?: {
    readonly IPAddress?: string
    readonly Networks?: Record<string, { IPAddress?: string }> | null
    readonly Ports?: Record<string, { HostIp?: string; HostPort?: string }[] | null> | null
  }
}

export interface InfoOptions {
  readonly labelPrefix: string
  /** Port used when the container has no `<prefix>.port` label. */
  readonly appPort: number
  /** Host address for host-network containers and ports published on every interface. */
  readonly hostAddress: string
  /** Settings from the provider block; labels override them. */
  readonly settings: BackendSettings
  /** Told about a label that could not be used (logged once by the caller). */
  readonly onBadLabel?: (label: string, value: string, why: string) => void
}

const ZERO_TIME = /^0001-01-01/

function time(text: string | undefined): number {
  if (!text || ZERO_TIME.test(text)) return 0
  const t = Date.parse(text)
  return Number.isNaN(t) ? 0 : t
}

/**
 * The state a sidecar acts on. libpod reports a container checkpointed with `keep` as
 * exited/stopped with `State.Checkpointed: true`: that one is restored, not started. A
 * container started again since its checkpoint (fresh start) is plainly stopped once it exits.
 */
export function stateOf(inspect: LibpodInspect): BackendState {
  const s = inspect.State ?? {}
  const status = (s.Status ?? '').toLowerCase()
  if (status === 'running' || (s.Running && !s.Paused)) return 'running'
  if (status === 'paused' || s.Paused) return 'paused'
  switch (status) {
    case 'exited':
    case 'stopped':
    case 'created':
    case 'configured':
    case 'initialized': {
      if (!s.Checkpointed) return 'stopped'
      const checkpointedAt = time(s.CheckpointedAt)
      const startedAt = time(s.StartedAt)
      return checkpointedAt === 0 || startedAt === 0 || checkpointedAt >= startedAt ? 'checkpointed' : 'stopped'
    }
    case 'stopping':
      return 'stopped'
    default:
      return 'unknown'
  }
}

/** The container's domains, or undefined when it is not ours (no `<prefix>.domain` label). */
export function domainsOf(labels: Record<string, string> | null | undefined, prefix: string): string[] | undefined {
  const raw = labels?.[`${prefix}.domain`]
  if (raw === undefined) return undefined
  return raw
    .split(',')
    .map((d) => d.trim())
    .filter((d) => d !== '')
}

function bracket(host: string): string {
  return host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
}

/**
 * Where Caddy should send requests: the host network → hostAddress:port; a published port →
 * its host address (every interface → hostAddress); otherwise the container's own IP.
 */
export function upstreamOf(inspect: LibpodInspect, port: number, hostAddress: string): string | undefined {
  const mode = inspect.HostConfig?.NetworkMode ?? ''
  if (mode === 'host') return `${bracket(hostAddress)}:${port}`
  const published = inspect.NetworkSettings?.Ports?.[`${port}/tcp`] ?? inspect.HostConfig?.PortBindings?.[`${port}/tcp`]
  const binding = published?.find((b) => b.HostPort)
  if (binding?.HostPort) {
    const ip = !binding.HostIp || binding.HostIp === '0.0.0.0' || binding.HostIp === '::' ? hostAddress : binding.HostIp
    return `${bracket(ip)}:${binding.HostPort}`
  }
  const direct = inspect.NetworkSettings?.IPAddress
  if (direct) return `${bracket(direct)}:${port}`
  for (const net of Object.values(inspect.NetworkSettings?.Networks ?? {})) {
    if (net.IPAddress) return `${bracket(net.IPAddress)}:${port}`
  }
  return undefined
}

function labelSettings(labels: Record<string, string>, prefix: string, bad: InfoOptions['onBadLabel']): BackendSettings {
  const out: BackendSettings = {}
  const get = (key: string) => labels[`${prefix}.${key}`]
  const dur = (key: 'idle_timeout' | 'wake_timeout' | 'waiting_page_after') => {
    const v = get(key)
    if (v === undefined) return
    const ms = parseDuration(v)
    if (ms === undefined) bad?.(`${prefix}.${key}`, v, 'not a duration (write 30s, 5m, 1h)')
    else out[key] = ms
  }
  dur('idle_timeout')
  dur('wake_timeout')
  dur('waiting_page_after')
  for (const key of ['sleep', 'fallback_sleep'] as const) {
    const v = get(key)
    if (v === undefined) continue
    if ((SLEEP_MODES as readonly string[]).includes(v)) out[key] = v as SleepMode
    else bad?.(`${prefix}.${key}`, v, `expected one of ${SLEEP_MODES.join(', ')}`)
  }
  const strategy = get('strategy')
  if (strategy !== undefined) {
    if (strategy === 'blocking' || strategy === 'waiting_page') out.strategy = strategy as Strategy
    else bad?.(`${prefix}.strategy`, strategy, 'expected blocking or waiting_page')
  }
  const readiness = get('readiness')
  if (readiness !== undefined) {
    if (readiness === 'tcp' || /^http:\/.*/.test(readiness)) out.readiness = readiness as Readiness
    else bad?.(`${prefix}.readiness`, readiness, 'expected tcp or http:/path')
  }
  const alwaysOn = get('always_on')
  if (alwaysOn !== undefined) {
    if (alwaysOn === 'true' || alwaysOn === 'false') out.always_on = alwaysOn === 'true'
    else bad?.(`${prefix}.always_on`, alwaysOn, 'expected true or false')
  }
  return out
}

/** BackendInfo for a labelled container, or undefined when it carries no `<prefix>.domain`. */
export function containerInfo(inspect: LibpodInspect, options: InfoOptions): BackendInfo | undefined {
  const labels = inspect.Config?.Labels ?? {}
  const hosts = domainsOf(labels, options.labelPrefix)
  if (hosts === undefined) return undefined
  const prefix = options.labelPrefix
  let port = options.appPort
  const portLabel = labels[`${prefix}.port`]
  if (portLabel !== undefined) {
    const n = Number(portLabel)
    if (Number.isInteger(n) && n >= 1 && n <= 65535) port = n
    else options.onBadLabel?.(`${prefix}.port`, portLabel, 'expected a port number 1-65535')
  }
  const state = stateOf(inspect)
  const upstream = upstreamOf(inspect, port, options.hostAddress)
  const name = (inspect.Name ?? inspect.Id.slice(0, 12)).replace(/^\//, '')
  const group = labels[`${prefix}.group`] ?? labels['com.docker.compose.project'] ?? labels['io.podman.compose.project']
  return {
    id: inspect.Id,
    name,
    hosts,
    state,
    upstreams: upstream ? [upstream] : [],
    ...(group ? { group } : {}),
    settings: { ...options.settings, ...labelSettings(labels, prefix, options.onBadLabel) },
    details: {
      image: inspect.ImageName ?? inspect.Config?.Image ?? '',
      status: inspect.State?.Status ?? 'unknown',
      port,
      ...(inspect.State?.ExitCode ? { exit_code: inspect.State.ExitCode } : {}),
    },
  }
}
