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
import { RelightError, toRelightError } from './errors.js'
import { atPowerOfTwo } from './log-throttle.js'
import { type ActivityAnswer, observeSafely, type SharedEngine } from './shared.js'
import { abortable } from './timers.js'

/** Longest a request waits for the token write it triggered. */
export const HOLD_MS = 500
/**
 * Upper bound of one token write, counted from when it leaves the queue and enforced by the
 * core's own timer (an engine that ignores the abort cannot hold a slot or the backend's next
 * write); at most idle_timeout/4, so one stalled write never silences a backend for long
 * enough that another sidecar judges it idle.
 */
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
  /**
   * When the view (re)started (this sidecar's start, a reconnect) and the version it saw then:
   * its `seenAt` is reset to that moment and says nothing about the token's real age, so until
   * the version changes or a write of ours lands the silence is unknown and a request holds.
   */
  private viewStartedAt: number
  private baseVersion: string | undefined
  /** A write a hold already gave up on: later requests do not wait on it again. */
  private givenUp: Promise<unknown> | undefined

  constructor(
    private readonly engine: SharedEngine,
    private readonly id: string,
    private readonly deps: SharerDeps,
  ) {
    this.viewStartedAt = deps.now()
    this.baseVersion = observeSafely(engine, id)?.version
  }

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
    const obs = observeSafely(this.engine, this.id)
    const unknown = this.landedAt < this.viewStartedAt && (this.baseVersion === undefined || obs?.version === this.baseVersion)
    if (!unknown) {
      const heard = Math.max(obs?.seenAt ?? -Infinity, this.landedAt)
      if (now - heard < this.deps.idle() / 2) return undefined
    }
    this.touched(now)
    // Unknown silence: write now even inside the idle/4 cadence (a reconnect soon after a write).
    if (unknown && this.writing === undefined && !this.closed && now >= this.retryAt) this.write(now)
    const writing = this.writing
    if (writing === undefined || writing === this.givenUp) return undefined
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<HoldOutcome>((resolve) => {
      timer = setTimeout(() => {
        this.givenUp = writing
        resolve('unconfirmed')
      }, HOLD_MS)
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

  /**
   * A group sibling was found at 0 in the engine: write now (unless a write is under way), so
   * that an `asleep` answer wakes this member too. Its token moving is right: the group is in use.
   */
  checkNow(now: number): void {
    if (this.writing === undefined && !this.closed) this.write(now)
  }

  /** The engine view is live again: a write that failed is retried now. */
  reconnected(): void {
    this.viewStartedAt = this.deps.now()
    this.baseVersion = observeSafely(this.engine, this.id)?.version
    if (this.failures === 0 && this.retryAt === -Infinity) return
    this.failures = 0
    this.retryAt = -Infinity
    if (this.dirty && this.writing === undefined && !this.closed) this.write(this.deps.now())
  }

  /** A wake of ours started at `startedAt`; the provider wrote a token with the replicas. */
  wakeStarted(startedAt: number): void {
    this.lastStart = Math.max(this.lastStart, startedAt)
  }

  /**
   * The idle sweep's tick while a wake of ours is under way: requests wait on it, so this is
   * traffic now (agoMs 0), written every idle_timeout/4. A wake longer than idle_timeout
   * otherwise leaves the token still, and another sidecar may scale down a workload still starting.
   */
  tickWaking(now: number): void {
    if (this.writing !== undefined || this.closed) return
    if (this.failures > 0 ? now < this.retryAt : now - this.lastStart < this.deps.idle() / 4) return
    this.write(now, true)
  }

  close(): void {
    this.closed = true
  }

  private write(now: number, busy = false): void {
    const agoMs = busy || this.deps.inflight() > 0 ? 0 : Math.max(0, now - this.lastTraffic)
    this.dirty = false
    this.lastStart = now
    const bound = Math.min(SHARE_TIMEOUT_MS, Math.max(SHARE_RETRY_BASE_MS, this.deps.idle() / 4))
    const run = this.deps.queue.add(async () => {
      this.deps.closing.throwIfAborted()
      // The core's own timer, from when the write leaves the queue: never the engine's goodwill.
      const timeout = new AbortController()
      const timer = setTimeout(() => timeout.abort(new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `activity token not written within ${bound} ms`)), bound)
      const signal = AbortSignal.any([this.deps.closing, timeout.signal])
      try {
        return await abortable(this.engine.recordActivity(this.id, agoMs, signal), signal)
      } finally {
        clearTimeout(timer)
      }
    })
    // A malformed answer counts as a failed write (never an unhandled rejection).
    const writing = run
      .then((answer: ActivityAnswer | undefined) => {
        const state = answer?.state
        if (state !== 'awake' && state !== 'asleep') throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `the provider answered a token write with state ${String(state)}`)
        this.landedAt = now
        this.failures = 0
        this.retryAt = -Infinity
        if (state === 'asleep' && !this.closed) this.deps.asleep()
        return state
      })
      .catch((err: unknown) => {
        this.failures++
        this.dirty = true // the traffic is still not shared
        const cap = Math.max(SHARE_RETRY_BASE_MS, this.deps.idle() / 4)
        this.retryAt = now + Math.min(SHARE_RETRY_BASE_MS * 2 ** Math.min(this.failures - 1, 30), cap)
        if (atPowerOfTwo(this.failures) && !this.closed) {
          const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')
          this.deps.log().warn({ code: error.code, err: error.message, failures: this.failures }, 'shared activity not written')
        }
        return 'failed' as const
      })
    this.writing = writing
    void writing.finally(() => {
      if (this.writing === writing) this.writing = undefined
    })
  }
}
