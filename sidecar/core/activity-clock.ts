/**
 * Shared last activity (Swarm labels, Kubernetes Leases) is a wall-clock time another sidecar,
 * or a person, wrote. A value far in the future (a skewed clock, a hand edit) would keep a
 * backend up until that date: beyond this horizon it is treated as absent, and the next write
 * replaces it instead of keeping the newer of the two.
 */
export const FUTURE_ACTIVITY_FLOOR_MS = 5 * 60_000

/** How far ahead of `now` a shared activity may be and still count: max(idle_timeout, 5 min). */
export function futureActivityHorizon(idleTimeout: number | undefined): number {
  return Math.max(idleTimeout ?? 0, FUTURE_ACTIVITY_FLOOR_MS)
}

/** `at`, or undefined when it lies beyond the horizon in the future. */
export function credibleActivity(at: number | undefined, now: number, idleTimeout: number | undefined): number | undefined {
  if (at === undefined) return undefined
  return at - now > futureActivityHorizon(idleTimeout) ? undefined : at
}
