/**
 * When this sidecar writes activity tokens for one backend on a shared engine (several sidecars,
 * one cluster: docs/architecture.md, "Shared decisions").
 *
 * - The first traffic after ≥ idle_timeout/4 without a landed write writes at once (from the
 *   request, off its path), so another sidecar's idle check sees it one write later, not one
 *   sweep tick later.
 * - While traffic goes on (or requests are in flight) later writes run from the idle sweep's
 *   tick, at most every idle_timeout/4: 10,000 backends need no timers of their own.
 * - A write carries `agoMs`, how long before it the last request here was (0 with requests in
 *   flight): a duration on this host's monotonic clock, never a time of day.
 * - One write at a time; a failed write is retried after 250 ms doubling up to idle_timeout/4,
 *   and at once when the engine view reconnects.
 * - The request path may `hold()` for the write it triggered, but only after idle_timeout/2 of
 *   shared silence and for at most HOLD_MS: an `asleep` answer means another sidecar scaled the
 *   workload down meanwhile, and the request waits for a wake instead of being routed to a
 *   stopping replica.
 */
import type PQueue from 'p-queue'
import type { Logger } from 'pino'
import { toRelightError } from './errors.js'
import { atPowerOfTwo } from './log-throttle.js'
import type { ActivityAnswer, SharedEngine } from './shared.js'

/** Longest a request waits for the token write it triggered. */
export const HOLD_MS = 500
/** Upper bound of one token write. */
export const SHARE_TIMEOUT_MS = 10_000
/** First retry delay of a failed write; doubles up to idle_timeout/4. */
export const SHARE_RETRY_BASE_MS = 250

export type HoldOutcome = 'awake' | 'asleep' | 'unconfirmed'

export interface SharerDeps {
  /** The core's monotonic clock (core/clock.ts, injected in tests). */
  now(): number
  /** Bounds concurrent token writes of this sidecar. */
  readonly queue: PQueue
  readonly closing: AbortSignal
  log(): Logger
  /** The backend's idle_timeout now (a reload may change it). */
  idle(): number
  /** Requests in flight here now. */
  inflight(): number
  /** A write found the workload at 0 replicas while this sidecar has traffic: wake it. */
  asleep(): void
}

export class ActivitySharer {
  private lastTraffic = -Infinity
  private dirty = false
  /** When the last write that landed started. */
  private landedAt = -Infinity
  /** When the last write (landed or not) started. */
  private lastStart = -Infinity
  private writing: Promise<ActivityAnswer['state'] | 'failed'> | undefined
  private failures = 0
  private retryAt = -Infinity
  private closed = false

  constructor(
    private readonly engine: SharedEngine,
    private readonly id: string,
    private readonly deps: SharerDeps,
  ) {}

  /** Writes that failed in a row (status, tests). */
  get failed(): number {
    return this.failures
  }

  /** A request started or finished here. The first traffic after a quiet spell writes now. */
  touched(now: number): void {
    this.lastTraffic = now
    this.dirty = true
    if (this.closed) return
    if (this.writing === undefined && now - this.landedAt >= this.deps.idle() / 4 && now >= this.retryAt) this.write(now)
  }

  /** The idle sweep's tick: write pending traffic when idle_timeout/4 passed since the last write. */
  tick(now: number): void {
    if (this.writing !== undefined || this.closed) return
    if (!this.dirty && this.deps.inflight() === 0) return
    // After a failure the retry timer spaces attempts; otherwise the idle/4 cadence.
    if (this.failures > 0 ? now < this.retryAt : now - this.lastStart < this.deps.idle() / 4) return
    this.write(now)
  }

  /**
   * For a request about to be routed to a running shared backend: undefined (nearly always), or
   * when nobody wrote for ≥ idle_timeout/2, the wait for this request's write, bounded by HOLD_MS.
   */
  hold(now: number): Promise<HoldOutcome> | undefined {
    const obs = this.engine.observe(this.id)
    const heard = Math.max(obs?.seenAt ?? -Infinity, this.landedAt)
    if (now - heard < this.deps.idle() / 2) return undefined
    this.touched(now)
    const writing = this.writing
    if (writing === undefined) return undefined
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<HoldOutcome>((resolve) => {
      timer = setTimeout(() => resolve('unconfirmed'), HOLD_MS)
    })
    const landed = writing.then((state): HoldOutcome => (state === 'failed' ? 'unconfirmed' : state))
    return Promise.race([landed, late]).finally(() => clearTimeout(timer))
  }

  /**
   * A wake of ours landed, and a shared provider's wake writes a token in the same write as the
   * replicas (provider contract): the request that caused it needs no second write at once.
   */
  wroteByWake(startedAt: number): void {
    this.landedAt = Math.max(this.landedAt, startedAt)
    this.lastStart = Math.max(this.lastStart, startedAt)
  }

  /** The engine view is live again: a write that failed is retried now. */
  reconnected(): void {
    if (this.failures === 0 && this.retryAt === -Infinity) return
    this.failures = 0
    this.retryAt = -Infinity
    if (this.dirty && this.writing === undefined && !this.closed) this.write(this.deps.now())
  }

  close(): void {
    this.closed = true
  }

  private write(now: number): void {
    const agoMs = this.deps.inflight() > 0 ? 0 : Math.max(0, now - this.lastTraffic)
    this.dirty = false
    this.lastStart = now
    const signal = AbortSignal.any([this.deps.closing, AbortSignal.timeout(SHARE_TIMEOUT_MS)])
    const run = this.deps.queue.add(() => {
      signal.throwIfAborted()
      return this.engine.recordActivity(this.id, agoMs, signal)
    })
    const writing = run.then(
      (answer) => {
        this.landedAt = now
        this.failures = 0
        this.retryAt = -Infinity
        if (answer.state === 'asleep' && !this.closed) this.deps.asleep()
        return answer.state
      },
      (err: unknown) => {
        this.failures++
        this.dirty = true // the traffic is still not shared
        const cap = Math.max(SHARE_RETRY_BASE_MS, this.deps.idle() / 4)
        this.retryAt = now + Math.min(SHARE_RETRY_BASE_MS * 2 ** Math.min(this.failures - 1, 30), cap)
        if (atPowerOfTwo(this.failures) && !this.closed) {
          const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')
          this.deps.log().warn({ code: error.code, err: error.message, failures: this.failures }, 'shared activity not written')
        }
        return 'failed' as const
      },
    )
    this.writing = writing
    void writing.finally(() => {
      if (this.writing === writing) this.writing = undefined
    })
  }
}
