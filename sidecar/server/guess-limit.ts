/**
 * Guessing the admin token is slow and visible. Each client address may present a wrong
 * credential (admin API and metrics bearer, status page login) BURST times, then one more per
 * REFILL_MS; all addresses together share a global budget too (GLOBAL_BURST, then one per
 * GLOBAL_REFILL_MS), so rotating source addresses (any of 127.0.0.0/8 on loopback) gains
 * nothing. Beyond either budget a WRONG credential gets 429 RELIGHT_ERR_TOO_MANY_FAILURES with
 * Retry-After instead of 401. Every credential is still checked (a constant-time comparison) and
 * the right one is always accepted: a guesser over budget must not lock the operator's `reload`
 * or a Prometheus scrape out. That a right guess stands out is no help to a guesser: the token
 * has at least 128 bits of entropy (config/types.ts weakSecretProblem), so what protects it is
 * its size, not the rate; the budget keeps guessing visible and cheap for us. Failures are
 * logged in aggregate: one warning per LOG_INTERVAL_MS that had any, with the count per address
 * (the busiest first).
 *
 * Behind Caddy the address is Caddy's (loopback or the unix socket): X-Forwarded-For from
 * whoever can reach the sidecar is not trusted.
 */
import type { Logger } from 'pino'

export interface GuessLimitOptions {
  /** Failures allowed at once per address. */
  readonly burst?: number
  /** One more failure allowed per this many ms. */
  readonly refillMs?: number
  /** Failures allowed at once from all addresses together. */
  readonly globalBurst?: number
  /** One more failure (all addresses together) allowed per this many ms. */
  readonly globalRefillMs?: number
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
  private readonly global: Bucket
  private readonly globalBurst: number
  private readonly globalRefillMs: number
  private readonly now: () => number
  /** Failures per address since the last report, at most MAX_ADDRESSES of them; the rest in `otherFailures`. */
  private failures = new Map<string, number>()
  private otherFailures = 0
  private refused = 0
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly log: Logger,
    options: GuessLimitOptions = {},
  ) {
    this.burst = options.burst ?? 10
    this.refillMs = options.refillMs ?? 2000
    this.globalBurst = options.globalBurst ?? 100
    this.globalRefillMs = options.globalRefillMs ?? 500
    this.now = options.now ?? Date.now
    this.global = { tokens: this.globalBurst, at: this.now() }
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

  private globalBucket(): Bucket {
    const now = this.now()
    this.global.tokens = Math.min(this.globalBurst, this.global.tokens + (now - this.global.at) / this.globalRefillMs)
    this.global.at = now
    return this.global
  }

  /**
   * Seconds before a wrong credential from `address` is answered 401 again (0: now). The caller
   * counts the 429 it sends with `refusedOne`.
   */
  retryAfter(address: string): number {
    const bucket = this.bucket(address)
    const global = this.globalBucket()
    const wait = (b: Bucket, refillMs: number) => (b.tokens >= 1 ? 0 : Math.max(1, Math.ceil(((1 - b.tokens) * refillMs) / 1000)))
    return Math.max(wait(bucket, this.refillMs), wait(global, this.globalRefillMs))
  }

  /** A wrong credential was refused with 429 (counted in the aggregate line). */
  refusedOne(): void {
    this.refused++
  }

  /** A wrong credential from `address`. */
  failed(address: string): void {
    const bucket = this.bucket(address)
    bucket.tokens = Math.max(0, bucket.tokens - 1)
    const global = this.globalBucket()
    global.tokens = Math.max(0, global.tokens - 1)
    const known = this.failures.get(address)
    if (known !== undefined || this.failures.size < MAX_ADDRESSES) this.failures.set(address, (known ?? 0) + 1)
    else this.otherFailures++
  }

  /** Write the aggregate line for the interval that ended (nothing when there was no failure). */
  report(): void {
    if (this.failures.size === 0 && this.refused === 0 && this.otherFailures === 0) return
    const top = [...this.failures].sort((a, b) => b[1] - a[1]).slice(0, LOG_TOP)
    const total = [...this.failures.values()].reduce((a, b) => a + b, 0) + this.otherFailures
    this.log.warn(
      {
        failures: total,
        refused_429: this.refused,
        addresses: this.failures.size + (this.otherFailures > 0 ? 1 : 0),
        by_address: Object.fromEntries(top),
        ...(this.otherFailures > 0 ? { from_addresses_not_counted_apart: this.otherFailures } : {}),
      },
      'wrong admin credentials (admin API, metrics, status page login) since the last report',
    )
    this.failures = new Map()
    this.otherFailures = 0
    this.refused = 0
    // Full buckets carry no information: forget them.
    for (const [address, bucket] of this.buckets) if (bucket.tokens + (this.now() - bucket.at) / this.refillMs >= this.burst) this.buckets.delete(address)
  }

  close(): void {
    clearInterval(this.timer)
    this.report()
  }
}
