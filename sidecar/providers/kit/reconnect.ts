/**
 * The reconnect schedule every engine stream follower shares (the Moby kit's `/events`,
 * Kubernetes watches): wait, double the wait up to a ceiling, start again from the first wait
 * once the stream proved itself; count consecutive failures and say which ones deserve a log
 * line (1st, 2nd, 4th, 8th…: core/log-throttle.ts).
 */
import { atPowerOfTwo } from '../../core/log-throttle.js'
import { delay } from '../../core/timers.js'

export interface BackoffPolicy {
  /** The first wait (ms) after a failure. */
  readonly firstMs: number
  /** The longest wait (ms). */
  readonly maxMs: number
}

/**
 * The policies in force (each follower's own, as they were before they shared this code).
 * Moby `/events`: 500 ms doubling to 30 s, reset once a stream stayed up 10 s. Kubernetes
 * watches: 200 ms doubling to 30 s, reset once a watch delivered events or lasted 1 s.
 */
export const EVENT_STREAM_BACKOFF = { firstMs: 500, maxMs: 30_000, stableMs: 10_000 } as const
export const WATCH_BACKOFF = { firstMs: 200, maxMs: 30_000 } as const
/**
 * Cluster views (Kubernetes informers; issue 21): several sidecars decide sleeps together from
 * them, so a view that lags after an outage routes on stale facts. 200 ms doubling to 2 s, reset
 * as soon as a stream opens (docs/plans/issue-21-shared-decisions.md §4.2).
 */
export const CLUSTER_VIEW_BACKOFF = { firstMs: 200, maxMs: 2_000 } as const

export class Reconnect {
  private delay: number
  /** Consecutive failures since the last `resetFailures` (or `reset`). */
  failures = 0

  constructor(private readonly policy: BackoffPolicy) {
    this.delay = policy.firstMs
  }

  /** The next wait (ms). */
  get delayMs(): number {
    return this.delay
  }

  /** Count a failure; true when this one deserves a log line (the 1st, 2nd, 4th, 8th…). */
  failed(): boolean {
    this.failures++
    return atPowerOfTwo(this.failures)
  }

  /** Wait the current delay (rejects when `signal` aborts), then double it up to the ceiling. */
  async wait(signal: AbortSignal): Promise<void> {
    try {
      await delay(this.delay, signal)
    } finally {
      this.delay = Math.min(this.policy.maxMs, this.delay * 2)
    }
  }

  /** The stream proved itself: the next failure waits the first delay again. */
  resetDelay(): void {
    this.delay = this.policy.firstMs
  }

  resetFailures(): void {
    this.failures = 0
  }

  reset(): void {
    this.resetDelay()
    this.resetFailures()
  }
}
