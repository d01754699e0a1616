/**
 * Container inspect (Docker or libpod) → BackendInfo: the one reading of a container for both
 * variants. Labels by labels.ts, the address by upstream.ts, the state by `stateOf`.
 *
 * The container port, first found wins: the `<prefix>.port` label; the provider block's
 * `app_port` (Docker's old name `port` still accepted); the only exposed TCP port of the image
 * or container; `defaults.app_port`.
 */
import type { BackendInfo, BackendSettings, BackendState, SleepMode } from '../../core/provider.js'
import { type ContainerInspect, containerName, singleExposedPort } from './containers.js'
import { readLabels } from '../kit/labels.js'
import { chooseUpstream } from './upstream.js'

export interface InfoOptions {
  readonly labelPrefix: string
  /** Modes a `<prefix>.sleep` label may name. */
  readonly sleepModes: readonly SleepMode[]
  /** The provider block's `app_port`. */
  readonly blockPort?: number
  /** `defaults.app_port`. */
  readonly appPort: number
  /** Network whose IP to use when a container is on several (the block's `network`). */
  readonly network?: string
  /** Settings from the provider block; labels override them. */
  readonly settings: BackendSettings
  /** Told about a label or address problem (the caller logs it once per container). */
  readonly onProblem?: (problem: string, what: 'label ignored' | 'upstream') => void
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
export function stateOf(inspect: Pick<ContainerInspect, 'State'>): BackendState {
  const s = inspect.State ?? {}
  const status = (s.Status ?? '').toLowerCase()
  if (status === 'restarting') return 'starting'
  if (status === 'running' || (s.Running && !s.Paused)) return 'running'
  if (status === 'paused' || s.Paused) return 'paused'
  switch (status) {
    case 'exited':
    case 'stopped':
    case 'created':
    case 'configured':
    case 'initialized':
    case 'stopping':
    case 'dead':
    case 'removing': {
      if (!s.Checkpointed) return 'stopped'
      const checkpointedAt = time(s.CheckpointedAt)
      const startedAt = time(s.StartedAt)
      return checkpointedAt === 0 || startedAt === 0 || checkpointedAt >= startedAt ? 'checkpointed' : 'stopped'
    }
    default:
      return 'unknown'
  }
}

/** The container port by the chain above. */
export function containerPort(inspect: ContainerInspect, labelPort: number | undefined, options: Pick<InfoOptions, 'blockPort' | 'appPort'>): number {
  return labelPort ?? options.blockPort ?? singleExposedPort(inspect) ?? options.appPort
}

/** BackendInfo for a labelled container, or undefined when it declares no `<prefix>.domain`. */
export function containerInfo(inspect: ContainerInspect, options: InfoOptions): BackendInfo | undefined {
  const labels = inspect.Config?.Labels ?? {}
  const facts = readLabels(labels, options.labelPrefix, options.sleepModes)
  if (facts.hosts.length === 0) return undefined
  for (const problem of facts.problems) options.onProblem?.(problem, 'label ignored')
  const port = containerPort(inspect, facts.port, options)
  const choice = chooseUpstream(inspect, port, options.network)
  if (choice.warning) options.onProblem?.(choice.warning, 'upstream')
  const name = containerName(inspect)
  const state = stateOf(inspect)
  const status = inspect.State?.Status ?? 'unknown'
  const exitCode = inspect.State?.ExitCode
  const health = inspect.State?.Health?.Status
  return {
    id: inspect.Id,
    name,
    hosts: facts.hosts,
    state,
    upstreams: choice.upstream ? [choice.upstream] : [],
    ...(facts.group !== undefined ? { group: facts.group } : {}),
    settings: { ...options.settings, ...facts.settings },
    details: {
      container: name,
      image: inspect.ImageName ?? inspect.Config?.Image ?? '',
      status,
      port,
      upstream_rule: choice.rule,
      ...((status === 'exited' || status === 'stopped') && exitCode !== undefined ? { exit_code: exitCode } : {}),
      ...(health && health !== 'none' ? { health } : {}),
    },
  }
}
