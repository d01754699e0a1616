/**
 * A service's relight labels: the Docker provider's label parser (same syntax for domains,
 * port and per-backend settings), plus what only services carry: the awake replica count and
 * the labels the sidecars write themselves to share decisions (last activity, asleep marker).
 */
import { randomBytes } from 'node:crypto'
import { type LabelFacts, readLabels } from '../kit/labels.js'

/** Set by Swarm on every task container. */
export const SWARM_SERVICE_LABEL = 'com.docker.swarm.service.id'

/** A Swarm task's container: the service's to scale (providers.swarm), never a container provider's to stop or pause. */
export function isSwarmTask(labels: Readonly<Record<string, string>>): boolean {
  return labels[SWARM_SERVICE_LABEL] !== undefined
}

/** Labels the sidecars write. Never set them by hand (reading them is fine). */
export interface SharedLabels {
  /**
   * The activity token (`v1 <identity> <16 hex> <ago_ms>`): a new value on every write of a sidecar
   * that saw traffic. Other sidecars see the write as a new `UpdatedAt` (docs/plans/issue-21, §0).
   */
  readonly activity: string
  /**
   * Compatibility only: the writer's wall-clock time of its last request (ISO 8601), written for
   * one more release so older sidecars in a mixed fleet still see traffic. Never read.
   */
  readonly lastActivity: string
  /** Set when a sidecar scaled the service to 0: when (ISO 8601). */
  readonly asleepSince: string
  /** Set with asleepSince when no `<prefix>.replicas` label says the awake count: the count before the sleep. */
  readonly asleepReplicas: string
}

export function sharedLabels(prefix: string): SharedLabels {
  return {
    activity: `${prefix}.activity`,
    lastActivity: `${prefix}.last_activity`,
    asleepSince: `${prefix}.asleep.since`,
    asleepReplicas: `${prefix}.asleep.replicas`,
  }
}

export interface ServiceFacts extends LabelFacts {
  /** How many replicas an awake service runs. */
  readonly replicas: number
  /** The activity token as written (see SharedLabels.activity), when present. */
  readonly activity?: string
}

/** A fresh activity token: no time of day, only how long before the write the writer's last request was. */
export function activityToken(identity: string, agoMs: number): string {
  const ago = Math.max(0, Math.round(Number.isFinite(agoMs) ? agoMs : 0))
  return `v1 ${identity.replace(/\s+/g, '_')} ${randomBytes(8).toString('hex')} ${ago}`
}

/** The `ago_ms` of a token (0 when absent or unreadable: counts as "just now", the safe side). */
export function tokenAgoMs(token: string | undefined): number {
  const m = token === undefined ? null : /^v1 \S+ [0-9a-f]{16} (\d{1,12})$/.exec(token.trim())
  return m ? Number(m[1]) : 0
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
  const activity = labels[shared.activity]
  return {
    ...facts,
    problems,
    replicas: replicas ?? 1,
    ...(activity !== undefined ? { activity } : {}),
  }
}
