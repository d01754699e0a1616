/**
 * The one table of per-backend settings: name, type and bounds. Every input that can set them
 * reads it: the YAML schema (`defaults`, provider blocks, app entries; config/types.ts builds
 * its zod from here), Docker and Podman labels, Slicer tags, and later Kubernetes annotations
 * and Swarm labels (`readSettings`). A bound added here holds for every input at once.
 */
import { parseDuration } from './duration.js'
import { type IgnoreRule, parseIgnoreText } from './ignore.js'
import type { BackendSettings, Readiness, SleepMode, Strategy } from './provider.js'
import { Schedule } from './schedule.js'

export const STRATEGIES = ['blocking', 'waiting_page'] as const satisfies readonly Strategy[]

export type SettingKey =
  | 'idle_timeout'
  | 'wake_timeout'
  | 'sleep'
  | 'fallback_sleep'
  | 'strategy'
  | 'waiting_page_after'
  | 'readiness'
  | 'max_request_duration'
  | 'waiting_page_template'
  | 'awake_during'
  | 'asleep_during'
  // Idle policies (issue 26, README "When does a backend sleep?").
  | 'ignore'
  | 'ignore_status'
  | 'busy_cpu'
  | 'startup_grace'
  | 'fast_lane'
  | 'fast_lane_drain'

export interface SettingSpec {
  readonly key: SettingKey
  readonly type: 'duration' | 'sleep' | 'strategy' | 'readiness' | 'template' | 'ignore' | 'status' | 'percent' | 'switch' | 'schedule'
  /**
   * Accepted from the configuration file only (defaults, provider blocks, app entries): a label,
   * tag or annotation naming it is reported as a problem and ignored.
   */
  readonly configOnly?: true
  /** Durations: the least accepted value (ms) and why, in words ("100ms (a wake needs time…)"). */
  readonly min?: { readonly ms: number; readonly why: string }
}

export const BACKEND_SETTINGS = [
  { key: 'idle_timeout', type: 'duration' },
  { key: 'wake_timeout', type: 'duration', min: { ms: 100, why: '100ms (a wake needs time to happen)' } },
  { key: 'sleep', type: 'sleep' },
  { key: 'fallback_sleep', type: 'sleep' },
  { key: 'strategy', type: 'strategy' },
  { key: 'waiting_page_after', type: 'duration' },
  { key: 'readiness', type: 'readiness' },
  // How long a request the sidecar authorised may stay in flight without its access-log line
  // (a lost line, or an /auth call Caddy did not make) before it stops counting (core/tickets.ts).
  { key: 'max_request_duration', type: 'duration', min: { ms: 1000, why: '1s (streams and downloads need time)' } },
  // An HTML file the sidecar reads and publishes (pages/template.ts): never from a label or tag.
  { key: 'waiting_page_template', type: 'template', configOnly: true },
  // Weekly windows (core/schedule.ts): kept awake inside awake_during, kept asleep inside asleep_during.
  { key: 'awake_during', type: 'schedule' },
  { key: 'asleep_during', type: 'schedule' },
  // Idle policies (issue 26): requests that neither count nor wake (core/ignore.ts), the status
  // they get while the backend sleeps, the CPU above which a sleep is refused (percent of one
  // core), and how long a backend found running is left awake.
  { key: 'ignore', type: 'ignore' },
  { key: 'ignore_status', type: 'status' },
  { key: 'busy_cpu', type: 'percent' },
  { key: 'startup_grace', type: 'duration' },
  // Awake, the backend is proxied by Caddy directly (snippet 4's relight_fast; core/fast-lane.ts).
  { key: 'fast_lane', type: 'switch' },
  // A sleep of a fast-lane backend waits this long after removing its flag before it looks for
  // open connections: a request Caddy admitted just before opens its own meanwhile (core/backend.ts).
  { key: 'fast_lane_drain', type: 'duration', min: { ms: 100, why: '100ms (a request admitted just before the flag went needs time to open its connection)' } },
] as const satisfies readonly SettingSpec[]

export const SETTING_KEYS: readonly SettingKey[] = BACKEND_SETTINGS.map((s) => s.key)

/** `tcp`, or `http:/path`. */
export const READINESS = /^(tcp|http:\/.*)$/

export type SettingValue = number | SleepMode | Strategy | Readiness | string | readonly IgnoreRule[] | boolean | Schedule

/** A schedule's text parsed: the Schedule, or what is wrong with it in words. */
export function scheduleFromText(text: string): { value: Schedule } | { expected: string } {
  try {
    return { value: Schedule.parse(text) }
  } catch (err) {
    return { expected: `weekly windows such as "Mon-Fri 08:00-18:00 Europe/Berlin" (${(err as Error).message})` }
  }
}

/**
 * `ignore_status`: what an ignored request gets while its backend sleeps. Not a 2xx: Caddy's
 * forward_auth passes a 2xx answer on to the upstream, and a sleeping backend has none.
 */
export const STATUS_RANGE = { min: 300, max: 599 } as const
/** `busy_cpu`: percent of one core (a multi-threaded app can exceed 100, like `docker stats`). */
export const PERCENT_RANGE = { min: 0.1, max: 10_000 } as const

/**
 * `10%` or `2.5%` → 2.5; undefined when not a percentage in PERCENT_RANGE. The `%` is required:
 * a bare `0.5` may mean half a core (50%), so it is refused (percentProblem says how to write it).
 */
export function parsePercent(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(text)
  if (m === null) return undefined
  const n = Number(m[1])
  return n >= PERCENT_RANGE.min && n <= PERCENT_RANGE.max ? n : undefined

}

/** Why `text` is not a busy_cpu percentage, in words (a bare number gets the hint durations get). */
export function percentProblem(text: string): string {
  const range = `${PERCENT_RANGE.min}% to ${PERCENT_RANGE.max}%; 100% is one core`
  if (/^\s*\d+(?:\.\d+)?\s*$/.test(text)) return `${text.trim()} has no unit; write it like ${text.trim()}% (percent of one core: half a core is 50%)`
  return `expected a CPU percentage such as 10% (${range}), got ${JSON.stringify(text)}`
}

/** A switch's spellings: `on`/`off` (and `true`/`false`) → boolean; undefined for anything else. */
export function switchFromText(text: string): boolean | undefined {
  if (text === 'on' || text === 'true') return true
  if (text === 'off' || text === 'false') return false
  return undefined
}

/** A duration already parsed (YAML) checked against its spec's bound: the problem in words, or undefined. */
export function durationProblem(spec: SettingSpec, ms: number): string | undefined {
  return spec.min !== undefined && ms < spec.min.ms ? `must be at least ${spec.min.why}` : undefined
}

function list(words: readonly string[]): string {
  return words.length < 2 ? (words[0] ?? '') : `${words.slice(0, -1).join(', ')} or ${words.at(-1)}`
}

/**
 * One setting from text (a label, tag or annotation value). `sleepModes`: the modes this input
 * may name (the provider's). Returns the value, or what was expected in words.
 */
export function settingFromText(spec: SettingSpec, text: string, sleepModes: readonly SleepMode[]): { value: SettingValue } | { expected: string } {
  switch (spec.type) {
    case 'duration': {
      const ms = parseDuration(text)
      if (ms === undefined) return { expected: 'a duration such as 30s, 5m or 1h' }
      if (spec.min !== undefined && ms < spec.min.ms) return { expected: `at least ${spec.min.why}` }
      return { value: ms }
    }
    case 'sleep':
      return (sleepModes as readonly string[]).includes(text) ? { value: text as SleepMode } : { expected: list(sleepModes) }
    case 'strategy':
      return (STRATEGIES as readonly string[]).includes(text) ? { value: text as Strategy } : { expected: list(STRATEGIES) }
    case 'readiness':
      return READINESS.test(text) ? { value: text as Readiness } : { expected: 'tcp or http:/path' }
    case 'template':
      return { expected: 'nothing here: waiting_page_template is set in the configuration file only' }
    case 'schedule':
      return scheduleFromText(text)
    case 'ignore': {
      const parsed = parseIgnoreText(text)
      return 'rules' in parsed ? { value: parsed.rules } : { expected: `rules such as user_agent=UptimeRobot; path=/healthz,method=GET (${parsed.problem})` }
    }
    case 'status': {
      const n = Number(text)
      return /^\d{3}$/.test(text) && n >= STATUS_RANGE.min && n <= STATUS_RANGE.max ? { value: n } : { expected: `an HTTP status from ${STATUS_RANGE.min} to ${STATUS_RANGE.max} (a 2xx would be passed on to a backend that sleeps)` }
    }
    case 'percent': {
      const n = parsePercent(text)
      return n !== undefined ? { value: n } : { expected: `a CPU percentage such as 10% (${PERCENT_RANGE.min}% to ${PERCENT_RANGE.max}%, 100% is one core, the % is required)` }
    }
    case 'switch': {
      const on = switchFromText(text)
      return on === undefined ? { expected: 'on or off' } : { value: on }
    }
  }
}

/**
 * Every setting a source names: `get(key)` answers the text for a key (undefined when absent),
 * `problem` hears about each unusable one (which is then left out, so the defaults apply).
 */
export function readSettings(
  get: (key: SettingKey) => string | undefined,
  sleepModes: readonly SleepMode[],
  problem: (key: SettingKey, text: string, expected: string) => void,
): BackendSettings {
  const settings: Partial<Record<SettingKey, SettingValue>> = {}
  for (const spec of BACKEND_SETTINGS as readonly SettingSpec[]) {
    const text = get(spec.key)
    if (text === undefined) continue
    const parsed = settingFromText(spec, text, sleepModes)
    if ('value' in parsed) settings[spec.key] = parsed.value
    else problem(spec.key, text, parsed.expected)
  }
  return settings as BackendSettings
}

/** The settings a provider block or app entry sets explicitly; keys left out stay absent. */
export function settingsFrom(source: BackendSettings): BackendSettings {
  const settings: Partial<Record<SettingKey, unknown>> = {}
  for (const key of SETTING_KEYS) if (source[key] !== undefined) settings[key] = source[key]
  return settings as BackendSettings
}
