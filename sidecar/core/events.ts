/**
 * Lifecycle events: the one source of what happens to backends and providers. The registry and
 * backends emit; logs (core/event-log.ts), metrics, the admin events stream, webhooks and the
 * status page subscribe. Nothing on the hot path emits: `/_relight/auth` for an awake backend is
 * a lookup and a header, never an event.
 *
 * One emitter per registry (no module-level channel), so several sidecars in one process (tests,
 * benchmarks) never hear each other. Emitting with no subscriber costs a length check.
 */
import type { ErrorCode } from './errors.js'
import type { BackendState, SleepMode } from './provider.js'

/** Fields every backend event carries. */
export interface BackendRef {
  /** Backend key, `<provider id>:<backend id>`: stable, unique, what the admin API takes. */
  readonly key: string
  /** Human name (container name, app name). */
  readonly name: string
  /** Provider id (today the kind: `docker`, `process`…). */
  readonly provider: string
}

export type LifecycleEvent =
  /** A wake began (the backend was asleep, or started outside the sidecar and is probed). */
  | (BackendRef & { readonly type: 'wake.started'; readonly from: BackendState })
  /** The backend answers its readiness probe and is routed. */
  | (BackendRef & { readonly type: 'wake.ready'; readonly from: BackendState; readonly duration_ms: number })
  | (BackendRef & { readonly type: 'wake.failed'; readonly duration_ms: number; readonly code: ErrorCode; readonly reason: string })
  /**
   * A wake was refused before it began, by a policy: RELIGHT_ERR_SCHEDULED_ASLEEP (inside an
   * `asleep_during` window) or RELIGHT_ERR_CAPACITY (`max_awake` reached, nothing could be put
   * to sleep). `retry_after_s` is what the client was told.
   */
  | (BackendRef & { readonly type: 'wake.refused'; readonly code: ErrorCode; readonly reason: string; readonly retry_after_s: number })
  /** Asleep in `mode` (`fallback` when the preferred mode failed and `fallback_sleep` was used). */
  | (BackendRef & {
      readonly type: 'sleep.done'
      readonly mode: SleepMode
      readonly fallback: boolean
      readonly duration_ms: number
      /**
       * Why it was put to sleep: `idle` (idle_timeout), `operator` (admin API), `schedule` (an
       * `asleep_during` window began) or `evicted` (`max_awake`: another backend needed the room).
       */
      readonly cause: SleepCause
      /** The cause in words (`evicted`: for whom and which cap). */
      readonly reason?: string
    })
  /**
   * The backend stays awake on purpose: `reason` is `inflight: N`, `waking`, `always_on`,
   * `awake_during`, `not running`, `not idle`, `startup_grace` (found running less than
   * startup_grace ago), `busy` (CPU at or above busy_cpu: `cpu_pct`), `recently active` or
   * `a request without a ticket may be in flight` (an eviction re-checked), or the provider's
   * refusal (RELIGHT_ERR_SLEEP_REFUSED: another sidecar saw traffic).
   */
  | (BackendRef & { readonly type: 'sleep.refused'; readonly mode: SleepMode; readonly reason: string; readonly code?: ErrorCode; readonly cpu_pct?: number })
  | (BackendRef & { readonly type: 'sleep.failed'; readonly mode: SleepMode; readonly code: ErrorCode; readonly reason: string })
  | (BackendRef & { readonly type: 'backend.added'; readonly hosts: readonly string[]; readonly state: BackendState })
  | (BackendRef & { readonly type: 'backend.removed' })
  /** The provider reported a new state outside a transition of ours (exit, `docker pause`…). */
  | (BackendRef & { readonly type: 'backend.state'; readonly state: BackendState; readonly reason?: string })
  /** A list succeeded after a failure (or for the first time). */
  | { readonly type: 'provider.up'; readonly provider: string; readonly backends: number }
  /** A list failed; known backends are kept. */
  | { readonly type: 'provider.down'; readonly provider: string; readonly code: ErrorCode; readonly reason: string }
  /** A configuration took effect (start, and later reloads). */
  | { readonly type: 'config.applied'; readonly providers: readonly string[]; readonly backends: number }

export type SleepCause = 'idle' | 'operator' | 'schedule' | 'evicted'

export type LifecycleEventType = LifecycleEvent['type']

export const LIFECYCLE_EVENT_TYPES: readonly LifecycleEventType[] = [
  'wake.started',
  'wake.ready',
  'wake.failed',
  'wake.refused',
  'sleep.done',
  'sleep.refused',
  'sleep.failed',
  'backend.added',
  'backend.removed',
  'backend.state',
  'provider.up',
  'provider.down',
  'config.applied',
]

/** An event as delivered: numbered in emission order and timestamped. */
export type Stamped = LifecycleEvent & {
  /** 1, 2, 3… per emitter (per sidecar run); the SSE id. */
  readonly id: number
  /** ISO 8601 wall-clock time. */
  readonly time: string
}

export type Listener = (event: Stamped) => void

export class LifecycleEvents {
  private listeners: Listener[] = []
  private nextId = 1
  /** Called when a listener throws (the emitter itself never throws at the emitting code). */
  private readonly onListenerError: (err: unknown, event: Stamped) => void

  constructor(onListenerError: (err: unknown, event: Stamped) => void = () => undefined) {
    this.onListenerError = onListenerError
  }

  /** Whether anyone listens (emit sites may skip building an event when nobody does). */
  get active(): boolean {
    return this.listeners.length > 0
  }

  /** Listen to every event, in emission order; returns the unsubscribe function. */
  subscribe(listener: Listener): () => void {
    this.listeners = [...this.listeners, listener]
    return () => {
      this.listeners = this.listeners.filter((l) => l !== listener)
    }
  }

  emit(event: LifecycleEvent): void {
    const listeners = this.listeners
    if (listeners.length === 0) return
    const stamped = { ...event, id: this.nextId++, time: new Date().toISOString() } as Stamped
    for (const listener of listeners) {
      try {
        listener(stamped)
      } catch (err) {
        this.onListenerError(err, stamped)
      }
    }
  }
}
