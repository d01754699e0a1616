/** caddy-supervisor's schedule: 0 s, then 1 s doubling to 5 min; reset after 10 min stable. */
export const BACKOFF_FIRST_MS = 1000
export const BACKOFF_MAX_MS = 5 * 60_000
export const BACKOFF_RESET_AFTER_MS = 10 * 60_000

/** Delay before restart number `attempt` (0-based count of exits since the last stable run). */
export function backoffDelay(attempt: number): number {
  if (attempt <= 0) return 0
  return Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** Math.min(attempt - 1, 30))
}

/**
 * Tracks restarts of one process. Every exit counts, clean or not, so `restart: always` on a
 * program that exits 0 at once backs off instead of spinning.
 */
export class Backoff {
  private attempt = 0
  private lastExit = -Infinity

  /**
   * Call when the process exits on its own after running `ranMs`; returns the delay before the
   * restart. Resets after 10 minutes up, or 10 minutes without such an exit (an app that sleeps
   * and wakes in short runs is not held to crashes of days ago).
   */
  next(ranMs: number, now = Date.now()): number {
    if (ranMs >= BACKOFF_RESET_AFTER_MS || now - this.lastExit >= BACKOFF_RESET_AFTER_MS) this.attempt = 0
    this.lastExit = now
    return backoffDelay(this.attempt++)
  }

  reset(): void {
    this.attempt = 0
  }
}
