/**
 * Guessing the admin token is slow and visible. Each client address may present a wrong
 * credential (admin API and metrics bearer, status page login) BURST times, then one more per
 * REFILL_MS; beyond that every credential from that address gets 429
 * RELIGHT_ERR_TOO_MANY_FAILURES with Retry-After, without being checked (so a right guess looks
 * the same as a wrong one until the address slows down). Failures are logged in aggregate: one
 * warning per LOG_INTERVAL_MS that had any, with the count per address (the busiest first).
 *
 * Behind Caddy the address is Caddy's (loopback or the unix socket): a guessing client then slows
 * every operator who comes through Caddy too, which is the price of not trusting X-Forwarded-For
 * from whoever can reach the sidecar.
 */
import type { Logger } from 'pino'

export interface GuessLimitOptions {
  /** Failures allowed at once per address. */
  readonly burst?: number
  /** One more failure allowed per this many ms. */
  readonly refillMs?: number
  /** How often the aggregate line is written (when there were failures). */
  readonly logIntervalMs?: number
  readonly now?: () => number
}

interface Bucket {
  tokens: number
  at: number
}

/** Addresses remembered at most; beyond it the longest-known is forgotten. */
const MAX_ADDRESSES = 10_000
const LOG_TOP = 10

export class GuessLimit {
  private readonly buckets = new Map<string, Bucket>()
  private readonly burst: number
  private readonly refillMs: number
  private readonly now: () => number
  private failures = new Map<string, number>()
  private refused = 0
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly log: Logger,
    options: GuessLimitOptions = {},
  ) {
    this.burst = options.burst ?? 10
    this.refillMs = options.refillMs ?? 2000
    this.now = options.now ?? Date.now
    this.timer = setInterval(() => this.report(), options.logIntervalMs ?? 60_000).unref()
  }

  private bucket(address: string): Bucket {
    const now = this.now()
    let bucket = this.buckets.get(address)
    if (!bucket) {
      if (this.buckets.size >= MAX_ADDRESSES) this.buckets.delete(this.buckets.keys().next().value as string)
      bucket = { tokens: this.burst, at: now }
      this.buckets.set(address, bucket)
    }
    bucket.tokens = Math.min(this.burst, bucket.tokens + (now - bucket.at) / this.refillMs)
    bucket.at = now
    return bucket
  }

  /** Seconds `address` must wait before its next credential is checked; 0 when it may try now. */
  retryAfter(address: string): number {
    const bucket = this.bucket(address)
    if (bucket.tokens >= 1) return 0
    this.refused++
    return Math.max(1, Math.ceil(((1 - bucket.tokens) * this.refillMs) / 1000))
  }

  /** A wrong credential from `address`. */
  failed(address: string): void {
    const bucket = this.bucket(address)
    bucket.tokens = Math.max(0, bucket.tokens - 1)
    this.failures.set(address, (this.failures.get(address) ?? 0) + 1)
  }

  /** Write the aggregate line for the interval that ended (nothing when there was no failure). */
  report(): void {
    if (this.failures.size === 0 && this.refused === 0) return
    const top = [...this.failures].sort((a, b) => b[1] - a[1]).slice(0, LOG_TOP)
    const total = [...this.failures.values()].reduce((a, b) => a + b, 0)
    this.log.warn(
      { failures: total, refused_429: this.refused, addresses: this.failures.size, by_address: Object.fromEntries(top) },
      'wrong admin credentials (admin API, metrics, status page login) since the last report',
    )
    this.failures = new Map()
    this.refused = 0
    // Full buckets carry no information: forget them.
    for (const [address, bucket] of this.buckets) if (bucket.tokens + (this.now() - bucket.at) / this.refillMs >= this.burst) this.buckets.delete(address)
  }

  close(): void {
    clearInterval(this.timer)
    this.report()
  }
}
