import type { BackendSettings } from '../core/provider.js'

const KEYS = ['idle_timeout', 'wake_timeout', 'sleep', 'fallback_sleep', 'strategy', 'waiting_page_after', 'readiness', 'waiting_page_template'] as const

/**
 * The per-backend settings a provider block or an app entry sets explicitly. Keys left out are
 * absent (not undefined), so the core fills them from `defaults`.
 */
export function settingsFrom(source: BackendSettings): BackendSettings {
  const settings: Record<string, unknown> = {}
  for (const key of KEYS) if (source[key] !== undefined) settings[key] = source[key]
  return settings as BackendSettings
}
