/** zod building blocks shared by the main schema and each provider's own schema. */
import { constants } from 'node:os'
import { z } from 'zod'
import { SLEEP_MODES } from '../core/provider.js'
import { waitingPageTemplate } from '../pages/template.js'
import { parseDuration } from './duration.js'

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
export const strategy = z.enum(['blocking', 'waiting_page'])
export const readiness = z
  .string()
  .regex(/^(tcp|http:\/.*)$/, 'expected "tcp" or "http:/path"')
  .transform((v) => v as 'tcp' | `http:${string}`)

export const signalName = z.string().refine((s) => s in constants.signals, {
  message: 'expected a signal name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP',
})

/** `host:port` (host optional → 127.0.0.1), or `unix:/path`. */
export const listenAddress = z.string().refine(
  (s) => /^unix:\/.+/.test(s) || (/^(\[[0-9a-fA-F:.]+\]|[^\s:]+)?:\d{1,5}$/.test(s) && Number(s.slice(s.lastIndexOf(':') + 1)) <= 65535),
  { message: 'expected host:port (e.g. 127.0.0.1:9123, port 0–65535) or unix:/path/to.sock' },
)

/** Per-backend overrides, accepted in `defaults`, provider blocks and app entries. */
export const backendSettingsShape = {
  idle_timeout: duration.optional(),
  wake_timeout: durationAtLeast(100, '100ms (a wake needs time to happen)').optional(),
  sleep: sleepMode.optional(),
  fallback_sleep: sleepMode.optional(),
  strategy: strategy.optional(),
  waiting_page_after: duration.optional(),
  readiness: readiness.optional(),
  /** Defined in pages/template.ts (config file only: no label or tag sets it). */
  waiting_page_template: waitingPageTemplate.optional(),
} as const

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
