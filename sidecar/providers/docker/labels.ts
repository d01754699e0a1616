/**
 * Reading a container's relight labels. Pure functions over the label map, shared with the
 * Podman provider (same labels, compatible with caddy-relight-podman).
 */
import { parseDuration } from '../../config/duration.js'
import type { BackendSettings, Readiness, SleepMode, Strategy } from '../../core/provider.js'

export const COMPOSE_PROJECT_LABEL = 'com.docker.compose.project'
export const COMPOSE_SERVICE_LABEL = 'com.docker.compose.service'

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
  const settings: BackendSettings = {}
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
  for (const key of ['idle_timeout', 'wake_timeout', 'max_request_duration'] as const) {
    const text = get(key)
    if (text === undefined) continue
    const ms = parseDuration(text)
    if (ms === undefined) problems.push(`${prefix}.${key}="${text}" is not a duration (write 30s, 5m, 1h)`)
    else settings[key] = ms
  }
  const sleep = get('sleep')
  if (sleep !== undefined) {
    if ((sleepModes as readonly string[]).includes(sleep)) settings.sleep = sleep as SleepMode
    else problems.push(`${prefix}.sleep="${sleep}" must be ${sleepModes.slice(0, -1).join(', ')} or ${sleepModes.at(-1)}`)
  }
  const strategy = get('strategy')
  if (strategy !== undefined) {
    if (strategy === 'blocking' || strategy === 'waiting_page') settings.strategy = strategy as Strategy
    else problems.push(`${prefix}.strategy="${strategy}" must be blocking or waiting_page`)
  }
  const readiness = get('readiness')
  if (readiness !== undefined) {
    if (readiness === 'tcp' || /^http:\/.*/.test(readiness)) settings.readiness = readiness as Readiness
    else problems.push(`${prefix}.readiness="${readiness}" must be tcp or http:/path`)
  }
  const group = groupOf(labels, prefix)
  return {
    hosts: splitHosts(labels[domainLabel(prefix)]),
    ...(port !== undefined ? { port } : {}),
    ...(group !== undefined ? { group } : {}),
    settings,
    problems,
  }
}
