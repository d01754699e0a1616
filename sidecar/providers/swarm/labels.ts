/**
 * A service's relight labels: the Docker provider's label parser (same syntax for domains,
 * port and per-backend settings), plus what only services carry: the awake replica count and
 * the labels the sidecars write themselves to share decisions (last activity, asleep marker).
 */
import { type LabelFacts, readLabels } from '../kit/labels.js'

/** Set by Swarm on every task container. */
export const SWARM_SERVICE_LABEL = 'com.docker.swarm.service.id'

/** A Swarm task's container: the service's to scale (providers.swarm), never a container provider's to stop or pause. */
export function isSwarmTask(labels: Readonly<Record<string, string>>): boolean {
  return labels[SWARM_SERVICE_LABEL] !== undefined
}

/** Labels the sidecars write. Never set them by hand (reading them is fine). */
export interface SharedLabels {
  /** ms since the epoch of the last request any sidecar saw (ISO 8601 in the label). */
  readonly lastActivity: string
  /** Set when a sidecar scaled the service to 0: when (ISO 8601). */
  readonly asleepSince: string
  /** Set with asleepSince when no `<prefix>.replicas` label says the awake count: the count before the sleep. */
  readonly asleepReplicas: string
}

export function sharedLabels(prefix: string): SharedLabels {
  return {
    lastActivity: `${prefix}.last_activity`,
    asleepSince: `${prefix}.asleep.since`,
    asleepReplicas: `${prefix}.asleep.replicas`,
  }
}

export interface ServiceFacts extends LabelFacts {
  /** How many replicas an awake service runs. */
  readonly replicas: number
  /** Last shared activity (ms since the epoch), when written and readable. */
  readonly lastActivity?: number
}

/** Most replicas a `<prefix>.replicas` label may ask for (a typo must not flood the swarm). */
export const MAX_REPLICAS = 100

export function readServiceLabels(labels: Readonly<Record<string, string>>, prefix: string): ServiceFacts {
  const facts = readLabels(labels, prefix, ['scale'])
  const problems = [...facts.problems]
  const shared = sharedLabels(prefix)
  let replicas: number | undefined
  const text = labels[`${prefix}.replicas`]?.trim()
  if (text !== undefined) {
    const n = Number(text)
    if (/^\d+$/.test(text) && n >= 1 && n <= MAX_REPLICAS) replicas = n
    else problems.push(`${prefix}.replicas="${text}" must be a whole number from 1 to ${MAX_REPLICAS}`)
  }
  if (replicas === undefined) {
    const before = Number(labels[shared.asleepReplicas])
    if (Number.isInteger(before) && before >= 1 && before <= MAX_REPLICAS) replicas = before
  }
  const activity = labels[shared.lastActivity] !== undefined ? Date.parse(labels[shared.lastActivity] as string) : NaN
  return {
    ...facts,
    problems,
    replicas: replicas ?? 1,
    ...(Number.isFinite(activity) ? { lastActivity: activity } : {}),
  }
}
