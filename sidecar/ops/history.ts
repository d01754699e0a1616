/**
 * What the admin API and the status page tell about each backend beyond its current state: the
 * last wake and sleep, the last wake's duration, the last error, the last refused sleep and a
 * restart back-off in progress. Kept
 * from the lifecycle events; one small entry per live backend (dropped when the backend goes).
 */
import type { LifecycleEvents, Stamped } from '../core/events.js'

export interface BackendHistoryEntry {
  last_wake_at?: string
  last_wake_duration_ms?: number
  last_sleep_at?: string
  last_sleep_mode?: string
  last_error?: { readonly at: string; readonly op: 'wake' | 'sleep'; readonly code: string; readonly reason: string }
  last_sleep_refused?: { readonly at: string; readonly reason: string; readonly cpu_pct?: number }
  /** Why the last sleep happened when not for idle_timeout: `schedule` or `evicted` (with its reason). */
  last_sleep_cause?: { readonly cause: string; readonly reason?: string }
  /** The last wake a policy refused (max_awake, asleep_during); cleared by a wake. */
  last_wake_refused?: { readonly at: string; readonly code: string; readonly reason: string }
  /**
   * The app keeps exiting and its restarts back off (RELIGHT_ERR_RESTART_BACKOFF): since when and
   * the latest word on it. Kept across the exits in between; cleared by a successful wake.
   */
  restart_backoff?: { readonly since: string; readonly reason: string }
}

export class BackendHistory {
  private readonly entries = new Map<string, BackendHistoryEntry>()
  readonly stop: () => void

  constructor(events: LifecycleEvents) {
    this.stop = events.subscribe((e) => this.record(e))
  }

  get(key: string): Readonly<BackendHistoryEntry> {
    return this.entries.get(key) ?? {}
  }

  private entry(key: string): BackendHistoryEntry {
    let entry = this.entries.get(key)
    if (!entry) this.entries.set(key, (entry = {}))
    return entry
  }

  private record(e: Stamped): void {
    switch (e.type) {
      case 'wake.ready': {
        const h = this.entry(e.key)
        h.last_wake_at = e.time
        h.last_wake_duration_ms = e.duration_ms
        delete h.last_error
        delete h.last_wake_refused
        delete h.restart_backoff
        return
      }
      case 'wake.failed': {
        const h = this.entry(e.key)
        h.last_error = { at: e.time, op: 'wake', code: e.code, reason: e.reason }
        if (e.code === 'RELIGHT_ERR_RESTART_BACKOFF') h.restart_backoff = { since: h.restart_backoff?.since ?? e.time, reason: e.reason }
        return
      }
      case 'sleep.done': {
        const h = this.entry(e.key)
        h.last_sleep_at = e.time
        h.last_sleep_mode = e.mode
        if (e.cause === 'idle') delete h.last_sleep_cause
        else h.last_sleep_cause = { cause: e.cause, ...(e.reason !== undefined ? { reason: e.reason } : {}) }
        return
      }
      case 'wake.refused': {
        this.entry(e.key).last_wake_refused = { at: e.time, code: e.code, reason: e.reason }
        return
      }
      case 'sleep.refused':
        if (e.reason !== 'not idle') this.entry(e.key).last_sleep_refused = { at: e.time, reason: e.reason, ...(e.cpu_pct !== undefined ? { cpu_pct: e.cpu_pct } : {}) }
        return
      case 'sleep.failed':
        this.entry(e.key).last_error = { at: e.time, op: 'sleep', code: e.code, reason: e.reason }
        return
      case 'backend.removed':
        this.entries.delete(e.key)
        return
      default:
        return
    }
  }
}
