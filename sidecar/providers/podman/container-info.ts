/**
 * libpod container inspect → BackendInfo. Pure: labels and upstream address by the Docker
 * provider's shared rules (docker/labels.ts, docker/upstream.ts), and the libpod state (a
 * checkpointed container looks exited; `State.Checkpointed` tells it apart).
 */
import type { BackendInfo, BackendSettings, BackendState, SleepMode } from '../../core/provider.js'
import { isRouted, readLabels } from '../moby/labels.js'
import { chooseUpstream, type UpstreamInput } from '../moby/upstream.js'

/** Modes a `<prefix>.sleep` label may name on Podman. */
export const PODMAN_SLEEP_MODES: readonly SleepMode[] = ['checkpoint', 'pause', 'stop']

/** The fields of `GET /libpod/containers/{id}/json` this provider reads. */
export interface LibpodInspect extends UpstreamInput {
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
}

export interface InfoOptions {
  readonly labelPrefix: string
  /** Port used when the container has no `<prefix>.port` label. */
  readonly appPort: number
  /** Network whose IP to use when a container is on several (providers.podman.network). */
  readonly network?: string
  /** Settings from the provider block; labels override them. */
  readonly settings: BackendSettings
  /** Told about a label or address problem (logged once per container by the caller). */
  readonly onProblem?: (problem: string) => void
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

/** BackendInfo for a labelled container, or undefined when it declares no `<prefix>.domain`. */
export function containerInfo(inspect: LibpodInspect, options: InfoOptions): BackendInfo | undefined {
  const labels = inspect.Config?.Labels ?? {}
  if (!isRouted(labels, options.labelPrefix)) return undefined
  // The same labels as the Docker provider (caddy-relight-podman compatible), plus checkpoint.
  const facts = readLabels(labels, options.labelPrefix, PODMAN_SLEEP_MODES)
  for (const problem of facts.problems) options.onProblem?.(problem)
  const port = facts.port ?? options.appPort
  const choice = chooseUpstream(inspect, port, options.network)
  if (choice.warning) options.onProblem?.(choice.warning)
  const name = (inspect.Name ?? inspect.Id.slice(0, 12)).replace(/^\//, '')
  return {
    id: inspect.Id,
    name,
    hosts: facts.hosts,
    state: stateOf(inspect),
    upstreams: choice.upstream ? [choice.upstream] : [],
    ...(facts.group !== undefined ? { group: facts.group } : {}),
    settings: { ...options.settings, ...facts.settings },
    details: {
      image: inspect.ImageName ?? inspect.Config?.Image ?? '',
      status: inspect.State?.Status ?? 'unknown',
      port,
      upstream_rule: choice.rule,
      ...(inspect.State?.ExitCode ? { exit_code: inspect.State.ExitCode } : {}),
    },
  }
}
