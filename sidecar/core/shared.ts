/**
 * Several sidecars, one cluster engine: what a provider offers so the core can decide sleeps
 * together with the other sidecars (docs/architecture.md, "Shared decisions").
 * The activity lives in the one engine object that also holds the replica count.
 */
export interface Observation {
  /**
   * Opaque: the activity as this sidecar last saw it. Swarm: the service's UpdatedAt in µs
   * (any write counts); Kubernetes: the `relight.activity` annotation's value (`none` before the first).
   */
  readonly version: string
  /** When this sidecar first saw `version` (monotonic ms, core/clock.ts). Reset to "now" when the view reconnects. */
  readonly seenAt: number
  /** The writer's "my last request was this long before my write" (ms; 0 when unknown or in flight). The core clamps it to [0, idle_timeout/4]. */
  readonly agoMs: number
  /** The view follows the engine now (stream open and synced since `seenAt` at the latest). */
  readonly live: boolean
}

export type ActivityAnswer =
  | { readonly state: 'awake'; readonly observation: Observation }
  /** The write found the workload at 0 replicas (another sidecar slept it): the caller wakes it. */
  | { readonly state: 'asleep' }

export type SleepIfAnswer =
  | { readonly result: 'slept' }
  /** Activity (or any write, on Swarm) since `unchangedSince`: stays up; judge again from `observation`. */
  | { readonly result: 'changed'; readonly observation: Observation }

export interface SharedEngine {
  /** What the view knows; undefined until the backend was seen (the core then counts from when it learnt of it). */
  observe(id: string): Observation | undefined
  /**
   * Write a fresh token; `agoMs` = how long before this write the last request here was (0 with
   * requests in flight). Retries a lost CAS itself (Swarm); Kubernetes needs none.
   */
  recordActivity(id: string, agoMs: number, signal: AbortSignal): Promise<ActivityAnswer>
  /**
   * Read the object now, for the request path while the view is not live: bounded by the
   * caller's signal. Swarm: `GET /services/{id}` (+ `GET /tasks` when up, for upstreams);
   * Kubernetes: `GET` the workload (+ the pod list by selector when up, with `route: pods`).
   * 'gone' when it no longer exists or is no longer routed. Updates the view's entry.
   */
  refresh(id: string, signal: AbortSignal): Promise<'awake' | 'asleep' | 'gone'>
  /**
   * Scale to 0 only if the activity is still `unchangedSince`, with the engine's precondition.
   * Starts with a **fresh read that must answer within FRESH_READ_MS = 1000** (the proof that the
   * engine is answering now: a stream that stalls without breaking, e.g. a frozen engine, sends
   * nothing and closes nothing). A slow or failed read answers `changed` and marks the view not
   * live, so it re-lists (and resets every `seenAt`) before anyone sleeps anything.
   */
  sleepIf(id: string, unchangedSince: string, signal: AbortSignal): Promise<SleepIfAnswer>
  /** The view went live again after an outage (the core retries failed writes at once). */
  onReconnect(listener: () => void): () => void
}

/**
 * `engine.observe(id)`, or undefined when the provider throws: an observation that cannot be
 * read is treated as none (sleeps refused, routing on the view) instead of failing the request
 * or the whole idle sweep.
 */
export function observeSafely(engine: SharedEngine, id: string): Observation | undefined {
  try {
    return engine.observe(id)
  } catch {
    return undefined
  }
}

/** When the shared activity last changed, on this host's monotonic clock (the writer's `agoMs` clamped to [0, idle/4]). */
function sharedSince(obs: Observation | undefined, knownSince: number, idleTimeout: number): number {
  // A duration from the writer, an instant from here (§5.0); clamped so a wrong value costs at most idle/4.
  return obs === undefined ? knownSince : obs.seenAt - Math.min(Math.max(obs.agoMs, 0), idleTimeout / 4)
}

/** Why a backend on a shared engine may not sleep yet (undefined: it may). Pure; unit-tested. */
export function sharedBlocker(obs: Observation | undefined, knownSince: number, now: number, idleTimeout: number): string | undefined {
  if (obs !== undefined && !obs.live) return 'engine view disconnected'
  const age = now - sharedSince(obs, knownSince, idleTimeout)
  return age < idleTimeout ? `shared activity changed ${Math.max(0, Math.round(age / 1000))} s ago` : undefined
}

/**
 * How long (ms) sharedBlocker() goes on blocking if the shared activity does not change: 0 when
 * it does not block now; Infinity while the view is not live (no bound is known).
 */
export function sharedBlockedFor(obs: Observation | undefined, knownSince: number, now: number, idleTimeout: number): number {
  if (obs !== undefined && !obs.live) return Infinity
  return Math.max(0, sharedSince(obs, knownSince, idleTimeout) + idleTimeout - now)
}
