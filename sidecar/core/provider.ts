/**
 * The contract between the core and every backend provider (process, docker, podman, slicer…).
 *
 * Providers find backends and carry out operations on them. They never orchestrate: the core
 * decides when to wake, when to sleep, probes readiness, serialises a backend's transitions,
 * bounds concurrency and maps errors to HTTP. The core never imports a provider's engine client,
 * nor config/ or providers/ code: a provider kind is a folder under sidecar/providers plus one
 * entry of the descriptor table (providers/descriptors.ts: kind, config schema, sleep modes,
 * settings codec) and one of the runtime table (providers/plugins.ts: create, lifecycle hooks). Several instances of one kind may run (`providers.docker: [{ id: … }, …]`);
 * an instance is named by its `id` (default: the kind) in backend keys, status, logs, heartbeat.
 * Per-backend settings have one table of names, types and bounds (core/settings.ts) that every
 * input reads (YAML, labels, tags, annotations).
 *
 * Rules every provider follows (checked by test/contract/provider-contract.ts):
 * - `list()` returns the full truth for the backends it manages. The registry replaces what it
 *   knew with it; a backend missing from the list is gone.
 * - `wake()` and `sleep()` are idempotent: waking a running backend or sleeping an asleep one
 *   resolves without error. `wake()` resolves once the backend runs, with its fresh
 *   `BackendInfo`: the core probes exactly those upstreams (a bridge IP may change on every
 *   start), so a provider need not emit anything during a wake. `sleep()` resolves once it is
 *   asleep in the requested mode.
 * - Operations honour their AbortSignal and reject with a RelightError (never a bare Error):
 *   `backendNotFound` for an unknown id, `providerUnavailable` when the engine cannot be
 *   reached, `providerFailed` when it refused, `sleepModeUnsupported` for a mode it lacks.
 * - `watch()` reports changes as they happen and reconnects by itself, with backoff, until the
 *   signal aborts. Missing an event is allowed: the periodic resync through `list()` is the truth.
 * - Providers never call each other and never touch the host index.
 */
import type { IgnoreRule } from './ignore.js'
import type { SharedEngine } from './shared.js'
import type { Schedule } from './schedule.js'

export type SleepMode = 'pause' | 'stop' | 'checkpoint' | 'suspend' | 'scale'
export const SLEEP_MODES = ['pause', 'stop', 'checkpoint', 'suspend', 'scale'] as const

export type BackendState =
  | 'running'
  | 'paused'
  | 'stopped'
  | 'checkpointed'
  | 'suspended'
  | 'scaled_to_zero'
  | 'starting'
  | 'unknown'

/** The state a backend is in once `sleep(mode)` resolved. */
export function stateForMode(mode: SleepMode): BackendState {
  switch (mode) {
    case 'pause':
      return 'paused'
    case 'stop':
      return 'stopped'
    case 'checkpoint':
      return 'checkpointed'
    case 'suspend':
      return 'suspended'
    case 'scale':
      return 'scaled_to_zero'
  }
}

export type Strategy = 'blocking' | 'waiting_page'

/** `tcp`, or `http:/path` (a GET answered below 500 means ready). */
export type Readiness = 'tcp' | `http:${string}`

/** Per-backend settings. Every key is optional here: the core fills the rest from `defaults`. */
export interface BackendSettings {
  idle_timeout?: number // ms
  wake_timeout?: number // ms
  sleep?: SleepMode
  fallback_sleep?: SleepMode
  strategy?: Strategy
  waiting_page_after?: number // ms
  readiness?: Readiness
  /** ms an authorised request may stay in flight without its access-log line. */
  max_request_duration?: number
  /** Supervised or kept running, never put to sleep. */
  always_on?: boolean
  /** Path of an HTML waiting page (pages/template.ts); from the config file only. */
  waiting_page_template?: string
  /** Weekly windows when the backend is kept awake (woken at the start, never put to sleep). */
  awake_during?: Schedule
  /** Weekly windows when the backend is kept asleep (put to sleep at the start, never woken). */
  asleep_during?: Schedule
  /** Requests that neither count as activity nor wake the backend (core/ignore.ts). */
  ignore?: readonly IgnoreRule[]
  /** Status an ignored request gets while the backend sleeps (503 sends Retry-After). */
  ignore_status?: number
  /** A sleep is refused while the backend uses more CPU than this (percent of one core). */
  busy_cpu?: number
  /** ms a backend found running (start-up, reload, started outside the sidecar) is left awake. */
  startup_grace?: number
  /** Awake, proxied by Caddy directly through the flag directory (core/fast-lane.ts). */
  fast_lane?: boolean
  /** ms a sleep waits after removing the fast-lane flag before it counts connections. */
  fast_lane_drain?: number
}

export interface BackendInfo {
  /** Unique within its provider, stable across restarts of the backend. */
  readonly id: string
  /** Human name for logs and status. */
  readonly name: string
  /**
   * Names this backend answers to, as declared (not yet normalised):
   * - `app.example.com`: exact host;
   * - `*.example.com`: wildcard, any name directly or deeper under example.com;
   * - `myapp` (one label): first-label name, `myapp.<base domain>` for each configured
   *   `base_domains` entry, and nowhere else.
   */
  readonly hosts: readonly string[]
  readonly state: BackendState
  /** `host:port` per replica; requests are spread over them. Empty while unknown. */
  readonly upstreams: readonly string[]
  /** Backends sharing a group wake together and sleep together (compose project, relight.group). */
  readonly group?: string
  readonly settings: BackendSettings
  /** Extra facts for logs and `check` (image, exit code, pid…). */
  readonly details?: Readonly<Record<string, string | number | boolean>>
}

export type ProviderEvent =
  /** A backend appeared or changed: the registry replaces what it knew about it. */
  | { readonly type: 'upsert'; readonly backend: BackendInfo }
  /** A backend is gone. */
  | { readonly type: 'remove'; readonly id: string }
  /**
   * Only the state changed (process exited, container paused outside the sidecar). `reason` is
   * kept for the log and for a wake in progress (e.g. "exited with code 1").
   */
  | { readonly type: 'state'; readonly id: string; readonly state: BackendState; readonly reason?: string }
  /** Something changed that the provider cannot describe: the registry lists again soon. */
  | { readonly type: 'resync' }
  /**
   * Shared engines: the engine view lost (`up: false`) or regained its stream. Status and
   * healthz show it; sleeps are already blocked by `Observation.live`.
   */
  | { readonly type: 'connection'; readonly up: boolean; readonly reason?: string }

export interface BackendStats {
  cpu_pct: number
  mem_mb: number
}

/** Stats figures are reported to one decimal; NaN and infinities as 0. */
export function round1(n: number): number {
  return Number.isFinite(n) ? Math.round(n * 10) / 10 : 0
}

/** What the core knows when it asks for a sleep. */
export interface SleepContext {
  /** The backend's resolved idle_timeout (ms). */
  readonly idleTimeout: number
}

export interface CheckResult {
  readonly ok: boolean
  /** One sentence a user can act on. */
  readonly message: string
}

export interface Provider {
  /** `process`, `docker`, `podman`, `slicer`…: which plugin made this provider. */
  readonly kind: string
  /**
   * This instance's name, unique among the sidecar's providers (`providers.docker: [{ id: … }]`);
   * absent means the kind. It prefixes backend keys (`docker:abc`) and names the provider in
   * status, logs and the heartbeat. Read it through `providerId()`.
   */
  readonly id?: string
  /** Sleep modes this provider supports, preferred first. */
  readonly sleepModes: readonly SleepMode[]
  /**
   * When true the registry lists again (coalesced, at most once a second) when a valid host
   * under a domain this provider could serve misses the index, so a backend created a moment
   * ago is routable on its first request. Off by default: random hostnames cost nothing.
   */
  readonly relistOnMiss?: boolean
  /**
   * How often the registry lists this provider in full (ms; 0: never after start). Absent: the
   * top-level `resync_interval`. Providers keep no re-list timers of their own.
   */
  readonly resyncInterval?: number

  /** Full truth, used at start and on every resync. */
  list(signal: AbortSignal): Promise<BackendInfo[]>
  /** Follow changes until the signal aborts, reconnecting by itself. */
  watch?(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void
  /**
   * Idempotent; resolves when the backend runs, with what the engine says about it now: state
   * `running` and the upstreams to probe and route to (at least one).
   */
  wake(id: string, signal: AbortSignal): Promise<BackendInfo>
  /**
   * Idempotent; resolves when the backend is asleep in `mode`. A provider with `shared` (several
   * sidecars) is called here only by the admin API: it is `sleepIf(observe(id).version)` and
   * rejects with RELIGHT_ERR_SLEEP_REFUSED when the activity changed since (another sidecar's
   * token or wake) or the engine could not be read: the core then keeps the backend awake,
   * without a fallback mode.
   */
  sleep(id: string, mode: SleepMode, signal: AbortSignal, context?: SleepContext): Promise<void>
  /**
   * Several sidecars on one engine (Swarm, Kubernetes): the shared-decision port (core/shared.ts).
   * A provider with `shared` (1) writes an activity token in the same write as every wake's
   * replica change, and writes one when `wake()` finds the backend up; (2) emits no
   * `upsert`/`state` for its own writes (it recognises them by version) and never emits from
   * inside `wake()`/`sleep()`/`sleepIf()`: a transition reports only through its return value;
   * (3) resets `seenAt` of every observation when its view reconnects; (4) `sleep()` of a shared
   * backend is only called by the admin API and is `sleepIf(observe(id).version)`.
   */
  readonly shared?: SharedEngine
  /**
   * While the core probes a woken backend: resolves with a reason when the backend stopped
   * (a task that failed right after start). Never resolves otherwise; `signal` aborts when the
   * probe ends. Replaces side-channel `state` events from inside a wake.
   */
  startFailure?(id: string, signal: AbortSignal): Promise<string>
  stats?(id: string, signal: AbortSignal): Promise<BackendStats>
  /**
   * Called after a readiness probe of `upstream` connected: is the listener that answered the
   * backend's own? true: yes; false: not known yet (no listener seen: the probe tries again);
   * throws RELIGHT_ERR_PORT_IN_USE when another program holds the address (process apps: a
   * program that bound the port between the spawn and the app's listen). Providers whose
   * backends own their addresses (containers, VMs, pods) leave it out. It runs on every wake:
   * anything that scans /proc resolves asynchronously, off the event loop. `signal` is the
   * wake's: once it aborted, nothing is reported (the wake is no longer wanted).
   */
  ownsListener?(id: string, upstream: string, signal?: AbortSignal): boolean | Promise<boolean>
  /** Probe the engine for `relight-sidecar check`: reachable, permitted, features present. */
  check?(signal: AbortSignal): Promise<CheckResult[]>
  /** Release engine connections and child processes. Idempotent. */
  close?(): Promise<void>
  /**
   * Last resort when the sidecar exits abnormally (fatal error, forced shutdown): synchronously
   * kill what the provider itself started, so nothing outlives the sidecar. Not for engines
   * whose backends live on their own (containers, VMs).
   */
  terminateNow?(): void
}


/** A provider instance's id: its `id`, else its kind. */
export function providerId(provider: Pick<Provider, 'id' | 'kind'>): string {
  return provider.id ?? provider.kind
}
