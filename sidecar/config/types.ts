/**
 * zod building blocks shared by the main schema, each feature's config and each provider's own
 * schema. A leaf: it imports only core/ (every feature may import it; it imports no feature).
 */
import { constants } from 'node:os'
import { z } from 'zod'
import { SLEEP_MODES } from '../core/provider.js'
import { parseDuration } from '../core/duration.js'
import type { Schedule } from '../core/schedule.js'
import { BACKEND_SETTINGS, durationProblem, PERCENT_RANGE, parsePercent, percentProblem, READINESS, scheduleFromText, type SettingKey, type SettingSpec, STATUS_RANGE, STRATEGIES, switchFromText } from '../core/settings.js'
import { IGNORE_FIELDS, type IgnoreRule, ignoreCountProblem, ignoreFieldProblem } from '../core/ignore.js'

/** `waiting_page_template`'s value: a path to an HTML file, relative to the configuration file's directory (read by pages/template.ts). */
export const waitingPageTemplate = z.string().min(1, 'expected the path of an HTML file')

/** `awake_during` / `asleep_during`: one string of windows joined by `;`, or a list of windows. */
export const schedule = z.unknown().transform((value, ctx): Schedule => {
  const list = Array.isArray(value) && value.length > 0 && value.every((v) => typeof v === 'string')
  if (typeof value !== 'string' && !list) {
    ctx.addIssue({ code: 'custom', message: 'expected windows as text, such as "Mon-Fri 08:00-18:00 Europe/Berlin" (or a list of them)' })
    return z.NEVER
  }
  const parsed = scheduleFromText(list ? (value as string[]).join('; ') : (value as string))
  if ('value' in parsed) return parsed.value
  ctx.addIssue({ code: 'custom', message: `expected ${parsed.expected}` })
  return z.NEVER
})

/** `ignore`: a list of rules, each naming at least one of user_agent, path, method, client (core/ignore.ts). */
export const ignoreRules = z.array(
  z
    .strictObject(Object.fromEntries(IGNORE_FIELDS.map((f) => [f, z.string().optional()])) as Record<(typeof IGNORE_FIELDS)[number], z.ZodOptional<z.ZodString>>)
    .superRefine((rule, ctx) => {
      const fields = IGNORE_FIELDS.filter((f) => rule[f] !== undefined)
      if (fields.length === 0) ctx.addIssue({ code: 'custom', message: `a rule needs at least one of ${IGNORE_FIELDS.join(', ')}` })
      for (const f of fields) {
        const problem = ignoreFieldProblem(f, rule[f] as string)
        if (problem !== undefined) ctx.addIssue({ code: 'custom', path: [f], message: problem })
      }
    })
    .transform((rule): IgnoreRule => Object.fromEntries(Object.entries(rule).filter(([, v]) => v !== undefined))),
).superRefine((rules, ctx) => {
  const problem = ignoreCountProblem(rules.length)
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
})

/** `ignore_status`: an HTTP status. */
export const httpStatus = z
  .number()
  .int()
  .min(STATUS_RANGE.min, `must be an HTTP status from ${STATUS_RANGE.min} to ${STATUS_RANGE.max}: Caddy's forward_auth passes a 2xx on to the backend, which sleeps`)
  .max(STATUS_RANGE.max, `must be an HTTP status from ${STATUS_RANGE.min} to ${STATUS_RANGE.max}`)

/** `busy_cpu`: `10%` (percent of one core). A bare number is refused with a hint, as durations are. */
export const cpuPercent = z.unknown().transform((value, ctx): number => {
  const n = typeof value === 'string' ? parsePercent(value) : undefined
  if (n === undefined) {
    ctx.addIssue({ code: 'custom', message: typeof value === 'number' || typeof value === 'string' ? percentProblem(String(value)) : `expected a CPU percentage such as 10% (${PERCENT_RANGE.min}% to ${PERCENT_RANGE.max}%; 100% is one core), got ${JSON.stringify(value)}` })
    return z.NEVER
  }
  return n
})

/** `500ms`, `30s`, `5m`, `1h` → milliseconds. A bare number is refused with a hint. */
export const duration = z.unknown().transform((value, ctx): number => {
  const ms = typeof value === 'string' ? parseDuration(value) : undefined
  if (ms === undefined) {
    ctx.addIssue({
      code: 'custom',
      message:
        typeof value === 'number'
          ? `${value} has no unit; write it like ${value}s or ${value}ms`
          : typeof value === 'string'
            ? `"${value}" is not a duration; write it like 500ms, 30s, 5m or 1h`
            : `expected a duration such as 30s, got ${value === null ? 'nothing' : typeof value}`,
    })
    return z.NEVER
  }
  return ms
})

/** A duration of at least `min` ms (`what` says why in the message). */
export const durationAtLeast = (min: number, what: string) => duration.refine((ms) => ms >= min, { message: `must be at least ${what}` })

export const sleepMode = z.enum(SLEEP_MODES)
export const strategy = z.enum(STRATEGIES)
export const readiness = z
  .string()
  .regex(READINESS, 'expected "tcp" or "http:/path"')
  .transform((v) => v as 'tcp' | `http:${string}`)

export const signalName = z.string().refine((s) => s in constants.signals, {
  message: 'expected a signal name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP',
})

/** `host:port` (host optional → 127.0.0.1), or `unix:/path`. */
export const listenAddress = z.string().refine(
  (s) => /^unix:\/.+/.test(s) || (/^(\[[0-9a-fA-F:.]+\]|[^\s:]+)?:\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535),
  { message: 'expected host:port (e.g. 127.0.0.1:9123, port 0–65535) or unix:/path/to.sock' },
)

/** `256KiB`, `1MiB`, `65536` (bytes) → bytes. */
export const byteSize = z.unknown().transform((value, ctx): number => {
  const m = typeof value === 'number' ? [String(value), String(value), ''] : typeof value === 'string' ? /^\s*(\d+)\s*(|B|KiB|MiB)\s*$/.exec(value) : null
  const n = m ? Number(m[1]) * ({ '': 1, B: 1, KiB: 1024, MiB: 1 << 20 } as Record<string, number>)[m[2] as string]! : Number.NaN
  if (!Number.isSafeInteger(n)) {
    ctx.addIssue({ code: 'custom', message: `expected a size such as 256KiB, 1MiB or a number of bytes, got ${JSON.stringify(value)}` })
    return z.NEVER
  }
  return n
})

/** The zod type of one setting of the table in core/settings.ts (bounds included). */
export function settingSchema(spec: SettingSpec) {
  switch (spec.type) {
    case 'duration':
      return duration.superRefine((ms, ctx) => {
        const problem = durationProblem(spec, ms)
        if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
      })
    case 'sleep':
      return sleepMode
    case 'strategy':
      return strategy
    case 'readiness':
      return readiness
    case 'template':
      return waitingPageTemplate
    case 'schedule':
      return schedule
    case 'switch':
      return onOff
    case 'ignore':
      return ignoreRules
    case 'status':
      return httpStatus
    case 'percent':
      return cpuPercent
  }
}

/**
 * A superRefine for the block of a provider that cannot measure a backend's CPU (no `stats`):
 * `busy_cpu` there would never refuse a sleep, so it is refused with the key named.
 */
export function noBusyCpu(kind: string, at: (key: string) => PropertyKey[] = (key) => [key]) {
  return (cfg: { busy_cpu?: number | undefined }, ctx: z.RefinementCtx): void => {
    if (cfg.busy_cpu !== undefined) {
      ctx.addIssue({ code: 'custom', path: at('busy_cpu'), message: `${kind} cannot measure a backend's CPU, so busy_cpu cannot apply; it works with process, docker and podman` })
    }
  }
}

/** `on`/`off` or a YAML boolean → boolean. */
export const onOff = z.unknown().transform((value, ctx): boolean => {
  const on = typeof value === 'boolean' ? value : typeof value === 'string' ? switchFromText(value) : undefined
  if (on === undefined) {
    ctx.addIssue({ code: 'custom', message: `expected on or off, got ${JSON.stringify(value)}` })
    return z.NEVER
  }
  return on
})

interface SettingTypes {
  duration: typeof duration
  sleep: typeof sleepMode
  strategy: typeof strategy
  readiness: typeof readiness
  template: typeof waitingPageTemplate
  schedule: typeof schedule
  ignore: typeof ignoreRules
  status: typeof httpStatus
  percent: typeof cpuPercent
  switch: typeof onOff
}
type Settings = (typeof BACKEND_SETTINGS)[number]

type SettingType<K extends SettingKey> = SettingTypes[Extract<Settings, { key: K }>['type']]
/** The zod type of one setting, by name. */
export function settingFor<K extends SettingKey>(key: K): SettingType<K> {
  return settingSchema(BACKEND_SETTINGS.find((s) => s.key === key) as SettingSpec) as unknown as SettingType<K>
}

/** Per-backend overrides, accepted in `defaults`, provider blocks and app entries: one optional key per row of the table. */
export const backendSettingsShape = Object.fromEntries(BACKEND_SETTINGS.map((s) => [s.key, settingSchema(s).optional()])) as {
  readonly [S in Settings as S['key']]: z.ZodOptional<SettingTypes[S['type']]>
}

export const backendSettings = z.strictObject(backendSettingsShape)

/**
 * A superRefine for a provider block or app entry: `sleep` and `fallback_sleep` must be modes
 * the provider supports (else the mistake only shows up as a fallback at every idle sleep).
 */
export function onlySleepModes(modes: readonly string[], what: string, at: (key: string) => PropertyKey[] = (key) => [key]) {
  return (cfg: { sleep?: string | undefined; fallback_sleep?: string | undefined }, ctx: z.RefinementCtx): void => {
    for (const key of ['sleep', 'fallback_sleep'] as const) {
      const mode = cfg[key]
      if (mode !== undefined && !modes.includes(mode)) {
        ctx.addIssue({ code: 'custom', path: at(key), message: `${what} sleep with ${modes.join(', ')}` })
      }
    }
  }
}

// Shared secrets (`admin.token`, `webhooks[].secret`; config/secrets.ts reads `admin.token_file`).
/** Placeholders the README and examples once showed; refused whatever their length. */
const PLACEHOLDER = /change.?me|replace.?me|placeholder|your.?token|your.?secret|^x+$/i
/** Fewest characters accepted (`openssl rand -hex 32` makes 64). */
export const MIN_SECRET_LENGTH = 32
/** Least estimated entropy (bits) accepted: length × the string's own per-character entropy. */
const MIN_BITS = 80

const HOW = 'generate one with  openssl rand -hex 32'

/** Keyboard rows and the digit row, for runs typed along the keyboard. */
const KEYBOARD_ROWS = ['1234567890', 'qwertyuiop', 'asdfghjkl', 'zxcvbnm', 'abcdefghijklmnopqrstuvwxyz']
/**
 * Structure a random string of this length practically never has: a substring of REPEAT_LENGTH
 * seen twice (for 64 random hex digits about 1 in 7·10^8; with 8 it was 1 in 2.7·10^6, which
 * failed the config test's 20k-sample check of `openssl rand -hex 32` about one run in 130),
 * or a run of RUN_LENGTH characters in code order or along a keyboard row, either way.
 */
const REPEAT_LENGTH = 10
const RUN_LENGTH = 8

function structureProblem(value: string): string | undefined {
  const seen = new Set<string>()
  for (let i = 0; i + REPEAT_LENGTH <= value.length; i++) {
    const part = value.slice(i, i + REPEAT_LENGTH)
    if (seen.has(part)) return `"${part}" appears twice`
    seen.add(part)
  }
  for (const step of [1, -1]) {
    let run = 1
    for (let i = 1; i < value.length; i++) {
      run = value.charCodeAt(i) - value.charCodeAt(i - 1) === step ? run + 1 : 1
      if (run >= RUN_LENGTH) return `a run of ${RUN_LENGTH} characters in sequence`
    }
  }
  const lower = value.toLowerCase()
  for (const row of KEYBOARD_ROWS) {
    for (const line of [row, [...row].reverse().join('')]) {
      for (let i = 0; i + RUN_LENGTH <= line.length; i++) if (lower.includes(line.slice(i, i + RUN_LENGTH))) return `"${line.slice(i, i + RUN_LENGTH)}" is typed along the keyboard`
    }
  }
  return undefined
}

/**
 * Why `value` is too weak to share with clients, or undefined. Accepted: what a random source
 * makes, i.e. hex digits (one case; 4 bits each: at least 32 of them is 128 bits) or a
 * base64-like string with both cases (5.9+ bits a character; at least 32 characters), with no
 * structure a random string practically never has (repeats, sequences, keyboard runs), and an
 * estimate from the characters the string actually uses of at least MIN_BITS (`abab…` scores
 * low). Words (`thisismysecretadmintoken…`) are one case and not hex: refused. 100k samples each
 * of `openssl rand -hex 16`, `-hex 32` and `-base64 32`: none refused (see config.test.ts).
 */
export function weakSecretProblem(value: string): string | undefined {
  if (/\s/.test(value)) return `contains whitespace; ${HOW}`
  if (PLACEHOLDER.test(value)) return `is a placeholder, not a secret; ${HOW}`
  if (value.length < MIN_SECRET_LENGTH) return `too short (${value.length} characters, at least ${MIN_SECRET_LENGTH}); ${HOW}`
  const hex = /^[0-9a-f]+$/.test(value) || /^[0-9A-F]+$/.test(value)
  if (!hex && !(/[a-z]/.test(value) && /[A-Z]/.test(value))) {
    return `too predictable (neither hex digits nor a mix of upper and lower case, as a random source makes: words?); ${HOW}`
  }
  const structure = structureProblem(value)
  if (structure !== undefined) return `too predictable (${structure}); ${HOW}`
  const counts = new Map<string, number>()
  for (const c of value) counts.set(c, (counts.get(c) ?? 0) + 1)
  let perChar = 0
  for (const n of counts.values()) perChar -= (n / value.length) * Math.log2(n / value.length)
  const bits = Math.floor(perChar * value.length)
  if (bits < MIN_BITS) return `too predictable (repeated characters: about ${bits} bits, at least ${MIN_BITS}); ${HOW}`
  return undefined
}

/** A string that must be a real secret. */
export const strongSecret = z.string().superRefine((value, ctx) => {
  const problem = weakSecretProblem(value)
  if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
})
