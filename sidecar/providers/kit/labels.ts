/**
 * The relight label grammar (`<prefix>.domain`, `.port`, `.group`, the per-backend settings).
 * Pure functions over a name → text map, so any engine object carrying such metadata uses them:
 * Docker and Podman container labels (compatible with caddy-relight-podman), Swarm service
 * labels, Kubernetes annotations.
 */
import type { BackendSettings, SleepMode } from '../../core/provider.js'
import { readSettings } from '../../core/settings.js'

export const COMPOSE_PROJECT_LABEL = 'com.docker.compose.project'
export const COMPOSE_SERVICE_LABEL = 'com.docker.compose.service'
/**
 * Whether an engine object (known by its labels) belongs to another provider, and then why in
 * words (`belongs to a Swarm service (providers.swarm drives it)`); undefined when it does not.
 * The composition root builds it from the other kinds' `claims` hooks (providers/plugin.ts), so
 * a provider never names a sibling kind.
 */
export type ClaimedElsewhere = (labels: Readonly<Record<string, string>>) => string | undefined

/** Nothing is another provider's (a provider built on its own, as in tests). */
export const claimedByNone: ClaimedElsewhere = () => undefined

export interface LabelFacts {
  /** Declared hosts (`<prefix>.domain`, comma-separated); empty for a non-routed container. */
  readonly hosts: string[]
  /** `<prefix>.port`, when valid. */
  readonly port?: number
  /** `<prefix>.group`, else the compose project. */
  readonly group?: string
  readonly settings: BackendSettings
  /** Labels present but unusable, in words (logged once per container). */
  readonly problems: string[]
}

const SLEEP_LABEL_MODES: readonly SleepMode[] = ['pause', 'stop']

export function domainLabel(prefix: string): string {
  return `${prefix}.domain`
}

/** The group a container belongs to: `<prefix>.group`, else its compose project. */
export function groupOf(labels: Readonly<Record<string, string>>, prefix: string): string | undefined {
  const explicit = labels[`${prefix}.group`]?.trim()
  if (explicit) return explicit
  const project = labels[COMPOSE_PROJECT_LABEL]?.trim()
  return project || undefined
}

export function isRouted(labels: Readonly<Record<string, string>>, prefix: string): boolean {
  return splitHosts(labels[domainLabel(prefix)]).length > 0
}

function splitHosts(value: string | undefined): string[] {
  if (value === undefined) return []
  return value
    .split(',')
    .map((h) => h.trim())
    .filter((h) => h !== '')
}

/**
 * `sleepModes`: the modes a `<prefix>.sleep` label may name (Docker: pause, stop; Podman adds
 * checkpoint).
 */
export function readLabels(labels: Readonly<Record<string, string>>, prefix: string, sleepModes: readonly SleepMode[] = SLEEP_LABEL_MODES): LabelFacts {
  const problems: string[] = []
  const get = (name: string): string | undefined => {
    const v = labels[`${prefix}.${name}`]
    return v === undefined ? undefined : v.trim()
  }
  let port: number | undefined
  const portText = get('port')
  if (portText !== undefined) {
    const n = Number(portText)
    if (/^\d+$/.test(portText) && n >= 1 && n <= 65535) port = n
    else problems.push(`${prefix}.port="${portText}" is not a port number (1-65535)`)
  }
  const settings = labelSettings(labels, prefix, sleepModes, problems)
  const group = groupOf(labels, prefix)
  return {
    hosts: splitHosts(labels[domainLabel(prefix)]),
    ...(port !== undefined ? { port } : {}),
    ...(group !== undefined ? { group } : {}),
    settings,
    problems,
  }
}

/** The per-backend settings in `<prefix>.<key>` labels (keys and bounds: core/settings.ts); problems are pushed in words. */
export function labelSettings(labels: Readonly<Record<string, string>>, prefix: string, sleepModes: readonly SleepMode[], problems: string[]): BackendSettings {
  return readSettings(
    (key) => labels[`${prefix}.${key}`]?.trim(),
    sleepModes,
    (key, text, expected) => problems.push(`${prefix}.${key}="${text}" must be ${expected}`),
  )
}
