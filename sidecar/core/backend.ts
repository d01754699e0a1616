import type PQueue from 'p-queue'
import type { Logger } from 'pino'
import { isRelightError, RelightError, toRelightError } from './errors.js'
import { type BackendInfo, type BackendState, type Provider, providerId, type Readiness, type SleepMode, stateForMode, type Strategy } from './provider.js'

export { stateForMode } from './provider.js'
import type { LifecycleEvent, LifecycleEvents, SleepCause } from './events.js'
import { type Schedule, scheduleAt } from './schedule.js'
import { type ListenerCheck, waitAnyReady, waitReady } from './readiness.js'
import { abortable, delay, withDeadline } from './timers.js'
import type { FastLane } from './fast-lane.js'
import { atPowerOfTwo } from './log-throttle.js'
import { ActivitySharer, type HoldOutcome } from './activity-share.js'
import { observeSafely, sharedBlockedFor, sharedBlocker, type SharedEngine } from './shared.js'
import type { IgnoreRules } from './ignore.js'

/** The sleep.refused reason inside an awake_during window. */
const POLICY_AWAKE_DURING = 'awake_during'
/** Upper bound of one sleep (a stop may have a long grace period). */
const SLEEP_TIMEOUT_MS = 5 * 60_000
/**
 * max_awake never evicts a backend active (woken, a request started or ended) less than
 * min(idle_timeout, this) ago: a browser on the waiting page comes back within 2 s of the wake,
 * and two such browsers at the cap would otherwise evict each other's app for ever.
 */
export const EVICTION_GRACE_MS = 5000
/** Verify reads (engine view not live): at most one per backend this often… */
const VERIFY_EVERY_MS = 2000
/** …each bounded by this… */
export const VERIFY_TIMEOUT_MS = 300
/** …and none for this long on a provider after one timed out (a frozen engine costs one wait per backend per 5 s). */
const VERIFY_COOLOFF_MS = 5000
/** The one engine read after a shared sleep during which the engine reported the workload up (recheckAfterSleep). */
const RECHECK_AFTER_SLEEP_MS = 2000
/**
 * Fast lane: after a sleep removed the flag, how long a request Caddy's file matcher admitted
 * just before may take to open its connection to the upstream (then seen in /proc/net/tcp).
 * The setting `fast_lane_drain` (default 2 s) decides; this is its value when absent. 2 s, not
 * 500 ms: a sleep is not latency-critical, and a loaded Caddy can stall a goroutine longer.
 */
export const LANE_GRACE_MS = 2000
/**
 * Snippet 4 closes Caddy's idle keep-alive connections to an app after 1 s (`keepalive 1s`):
 * once the flag is gone no new fast-lane request starts, so a connection still open this long
 * after the grace carries a request (the sleep is refused and the lane reopens).
 */
export const LANE_KEEPALIVE_MS = 1000
const LANE_POLL_MS = 50
/** Upper bound of one CPU measurement for busy_cpu (the sleep waits for it). */
const BUSY_MEASURE_TIMEOUT_MS = 5000

/**
 * The core's view of a backend. Transitions are serialised:
 *   running → sleeping → asleep → waking → probing → running
 * `asleep` also covers every non-running provider state (paused, stopped, checkpointed…).
 */
export type Phase = 'running' | 'sleeping' | 'asleep' | 'waking' | 'probing'

export interface ResolvedSettings {
  readonly idle_timeout: number
  readonly wake_timeout: number
  readonly sleep: SleepMode
  readonly fallback_sleep: SleepMode
  readonly strategy: Strategy
  readonly waiting_page_after: number
  readonly readiness: Readiness
  readonly max_request_duration: number
  readonly always_on: boolean
  /** Weekly windows when it is kept awake / kept asleep (core/schedule.ts); absent: none. */
  readonly awake_during?: Schedule
  readonly asleep_during?: Schedule
  readonly fast_lane: boolean
  /** Wait after the flag is removed (ms; LANE_GRACE_MS when absent). */
  readonly fast_lane_drain?: number
  /** Idle policies (issue 26): see core/ignore.ts and README "When does a backend sleep?". */
  readonly ignore: IgnoreRules
  readonly ignore_status: number
  /** Percent of one core; undefined: off (or the provider cannot measure). */
  readonly busy_cpu: number | undefined
  readonly startup_grace: number
}

export interface BackendDeps {
  readonly wakeQueue: PQueue
  readonly sleepQueue: PQueue
  readonly logger: Logger
  readonly now: () => number
  /** Wall-clock ms since the epoch, for schedules (awake_during, asleep_during) only. */
  readonly wallNow: () => number
  /** Aborts every operation on shutdown. */
  readonly closing: AbortSignal
  /** Where wake and sleep transitions are reported (logs subscribe to it). */
  readonly events: LifecycleEvents
  /** Bounds this sidecar's concurrent activity-token writes (shared engines). */
  readonly shareQueue: PQueue
  /** Per shared engine: when its verify reads may start again after one timed out (deps.now clock). */
  readonly verifyPausedUntil: WeakMap<SharedEngine, number>
  /** Shared engines: found at 0 in the engine while routed here; the Registry wakes it and its group (max_awake, schedules). */
  readonly foundAsleep?: (backend: Backend) => void
  /** Bounds concurrent CPU readings for busy_cpu (`provider.stats()`); unbounded without it. */
  readonly statsQueue?: PQueue
  /** The fast lane's flags (present with `fast_lane_dir`). */
  readonly fastLane?: FastLaneDeps
}

export interface FastLaneDeps {
  readonly lane: FastLane
  /** The hosts Caddy may send straight to this backend: canonical names the host index gives it. */
  hostsOf(backend: Backend): string[]
  /** Grace after the flag is removed (ms; default LANE_GRACE_MS). */
  readonly graceMs?: number
}

/** What a verify read before routing came to (engine view not live): see Backend.verify. */
export type VerifyOutcome = 'awake' | 'asleep' | 'gone' | 'unconfirmed'

/** What a sleep request came to. */
export type SleepOutcome =
  | { readonly result: 'done'; readonly mode: SleepMode }
  /** Already asleep: nothing to do. */
  | { readonly result: 'asleep' }
  /** Kept awake on purpose (`inflight: 1`, `waking`, `always_on`, `not idle`, a provider's refusal). */
  | { readonly result: 'refused'; readonly reason: string }
  | { readonly result: 'failed'; readonly error: RelightError }

export interface BackendCounters {
  wakes: number
  wakeFailures: number
  sleeps: number
  sleepFailures: number
  fallbackSleeps: number
}

export class Backend {
  readonly key: string
  readonly provider: Provider
  // Written only in this class, by the methods that change them (update, stateChanged, started,
  // finished, forgetInflight, markRemoved, wake, sleep…); everyone else reads the getters below.
  private _info: BackendInfo
  private _settings: ResolvedSettings
  private _phase: Phase
  private _inflight = 0
  /** Set when a reload replaced this backend: `finished()` is forwarded there (see carryActivityFrom). */
  private successor: Backend | undefined
  /** The successor's wake count when it took over: a later wake means its count was reset. */
  private successorWakes = 0
  private _lastActivity: number
  private _draining = false
  /** Last request answered without a ticket (its end is never seen), deps.now clock. */
  private lastUncounted = -Infinity
  private readonly _counters: BackendCounters = { wakes: 0, wakeFailures: 0, sleeps: 0, sleepFailures: 0, fallbackSleeps: 0 }
  /** When the registry first learnt of it (deps.now clock). */
  readonly createdAt: number
  private _removed = false
  private _lastError: RelightError | undefined

  private ready: string[] = []
  /** Upstreams a provider report added while running: probed (and ownership-checked) before they join `ready`. */
  private readonly joining = new Map<string, AbortController>()
  private rr = 0
  private chain: Promise<unknown> = Promise.resolve()
  private wakePromise: Promise<void> | undefined
  private wakeAbort: AbortController | undefined
  /** The last successful wake's controller: aborting it ends probes of replicas not up yet. */
  private leftoverProbes: AbortController | undefined
  /** When the last wake or sleep ended (deps.now clock); older list results cannot undo it. */
  private transitionEndedAt = -Infinity
  private fallbackLogged = false
  private readonly deps: BackendDeps
  private childLog: Logger | undefined
  /** Shared engines only: when this sidecar writes activity tokens (core/activity-share.ts). */
  readonly sharer: ActivitySharer | undefined
  /** Shared engines only: a probe of a backend another sidecar woke (no provider call). */
  private adopting: Promise<void> | undefined
  /**
   * Shared engines: an engine report said running or starting while our scale-down ran. Our own
   * write raises no report, so this is either an older state delivered late or another sidecar's
   * wake after our write; the sleep's success path reads the engine once to tell which.
   */
  private upReportedWhileSleeping = false
  /** The adopt in progress: a report that the workload went down meanwhile ends it. */
  private adoptAbort: AbortController | undefined
  /** Shared engines: our own conditional sleep before its write left the sleep queue (a request cancels it). */
  private sleepCancel: AbortController | undefined
  /** Shared engines only: the last verify read (deps.now clock) and the one in flight. */
  private verifiedAt = -Infinity
  private verifying: Promise<VerifyOutcome> | undefined
  /**
   * Idle policies that hold the backend awake until a time (deps.now clock): `startup_grace`
   * (found running: at start-up, by a reload, or started outside the sidecar) and `busy` (the
   * last CPU measurement was at or above busy_cpu: measured again after another idle_timeout).
   */
  private holdUntil = -Infinity
  private holdReason: 'startup_grace' | 'busy' | undefined
  /** The startup_grace refusal is reported once per grace, not on every sweep tick. */
  private holdReported = false
  /** A fast-lane flag was written since the last wake (see laneUsedSinceWake). */
  private laneUsed = false
  /**
   * Since when open connections to the upstream (laneConnections) have held off a sleep with no
   * request seen meanwhile; undefined while none does. Such a hold ends after
   * max_request_duration, like a ticket: anyone on the host can open a connection.
   */
  private connectionsSince: number | undefined
  /** The last `connections: N` refusal reported (once per idle_timeout). */
  private connectionsReportedAt = -Infinity
  /** The last request start or end seen (ticketed or fast-lane): a connection hold counts from after it. */
  private lastRequestSeen = -Infinity
  /** When the startup_grace hold began: a reload that changes startup_grace recomputes its end. */
  private graceFrom = -Infinity
  private busyFailures = 0
  /** The CPU reading in flight (one per backend, whoever asked: a sweep, a group, a first reading). */
  private cpuReading: Promise<number | undefined> | undefined
  private cpuReadingWhy: 'first' | 'due' = 'first'
  /** The sweep's busy check in flight: the backend is not idle meanwhile, so no other sweep starts one. */
  private busyCheck: Promise<boolean> | undefined
  /** The sweep's sleep in flight: a later sweep tick joins it instead of queueing another. */
  private idleSleep: Promise<boolean> | undefined

  constructor(provider: Provider, info: BackendInfo, settings: ResolvedSettings, deps: BackendDeps) {
    this.key = `${providerId(provider)}:${info.id}`
    this.provider = provider
    this._info = info
    this._settings = settings
    this.deps = deps
    this._phase = info.state === 'running' ? 'running' : 'asleep'
    if (this.phase === 'running') this.ready = [...info.upstreams]
    this._lastActivity = deps.now()
    this.createdAt = this.lastActivity
    const shared = provider.shared
    if (shared !== undefined) {
      this.sharer = new ActivitySharer(shared, info.id, {
        now: deps.now,
        queue: deps.shareQueue,
        closing: deps.closing,
        log: () => this.log,
        idle: () => this.settings.idle_timeout,
        inflight: () => this.inflight,
        asleep: () => this.foundAsleep(),
      })
    }
    if (info.state === 'running') {
      this.hold('startup_grace', this.createdAt + settings.startup_grace)
      this.primeCpu()
    }
  }

  /**
   * busy_cpu: take a first CPU reading as the backend starts running, so the one taken when a
   * sleep is due covers the idle window (a provider's reading is the rate since its previous
   * one; Docker's first one-shot reading has nothing to compare with and says 0).
   */
  private primeCpu(): void {
    if (this.settings.busy_cpu !== undefined) void this.measureCpu('first')
  }

  private hold(reason: 'startup_grace' | 'busy', until: number): void {
    if (reason === 'startup_grace') this.graceFrom = until - this.settings.startup_grace
    this.holdUntil = until
    this.holdReason = reason
    this.holdReported = false
  }

  /** What the provider last reported (hosts, upstreams, group, details). */
  get info(): BackendInfo {
    return this._info
  }

  /** Per-backend settings in force (defaults, provider block, labels/tags). */
  get settings(): ResolvedSettings {
    return this._settings
  }

  get phase(): Phase {
    return this._phase
  }

  /** Requests authorised and not yet reported finished by the access log. */
  get inflight(): number {
    return this._inflight
  }

  /** Last request start or finish (ms, deps.now clock); also moved by wakes and failed sleeps to restart the idle clock. */
  get lastActivity(): number {
    return this._lastActivity
  }

  /** Wake and sleep counts since the backend was first listed. */
  get counters(): Readonly<BackendCounters> {
    return this._counters
  }

  /** Set when the provider no longer lists the backend. */
  get removed(): boolean {
    return this._removed
  }

  /** Why the last wake failed (for status and logs). */
  get lastError(): RelightError | undefined {
    return this._lastError
  }

  /** The access log lost its connection: requests in flight will not be reported finished. */
  forgetInflight(): void {
    this._inflight = 0
  }

  /** This backend's logger, made on first use: 10,000 idle backends need no 10,000 loggers. */
  get log(): Logger {
    this.childLog ??= this.deps.logger.child({ backend: this.info.name, provider: providerId(this.provider) })
    return this.childLog
  }

  /**
   * Inside an asleep_during window while still running (set by the idle sweep): new requests are
   * refused (upstream() is undefined, the wake path answers 503) so those in flight can drain.
   */
  get draining(): boolean {
    return this._draining
  }

  drain(on: boolean): void {
    if (this._draining === on) return
    this._draining = on
    this.syncFastLane() // the fast lane closes too: Caddy must ask the sidecar, which refuses
  }

  /**
   * Write or remove this backend's fast-lane flags to match its state: flagged only while
   * running with exactly one ready upstream (replicas stay in the forward_auth lane, which
   * balances them), `fast_lane` on and not removed. Called at every change of those.
   */
  syncFastLane(): void {
    const fast = this.deps.fastLane
    if (fast === undefined) return
    const upstream = this.ready[0]
    // `ignore` rules are decided per request by the sidecar: such a backend keeps the forward_auth lane.
    // Several sidecars (Swarm, Kubernetes): a fast-lane request is seen only when it ends, and an
    // open one only by this host's connection table, so the other sidecars could not see it:
    // such a backend keeps the forward_auth lane, whose requests are shared from their start.
    const on = this.settings.fast_lane && this.settings.ignore.empty && this.provider.shared === undefined && !this.removed && this.phase === 'running' && !this._draining && this.ready.length === 1 && this.info.upstreams.length === 1 && upstream !== undefined
    try {
      fast.lane.set(this, on ? fast.hostsOf(this).map((host) => ({ host, upstream })) : [])
      if (fast.lane.has(this)) this.laneUsed = true
    } catch (err) {
      // a flag not written keeps the forward_auth lane; one not removed is what must never happen
      this.log.error({ err }, on ? 'fast lane flag not written' : 'fast lane flag NOT REMOVED')
    }
  }

  /**
   * Why an awake backend with `fast_lane: on` has no flag (stays in the forward_auth lane), for
   * the admin API and the status page; undefined when the setting is off, the backend is not
   * awake, or its flag is written. The same conditions as syncFastLane.
   */
  get fastLaneOff(): string | undefined {
    if (!this.settings.fast_lane || this.phase !== 'running' || this.fastLaneOpen) return undefined
    const fast = this.deps.fastLane
    if (fast === undefined) return 'fast_lane_dir is not set'
    if (!this.settings.ignore.empty) return 'it has ignore rules (decided per request by the sidecar)'
    if (this.provider.shared !== undefined) return 'several sidecars decide its sleep (Swarm, Kubernetes): its requests must be seen, and shared, from their start'
    if (this._draining) return 'it is being put to sleep'
    if (this.ready.length !== 1 || this.info.upstreams.length !== 1) return `${Math.max(this.ready.length, this.info.upstreams.length)} upstreams (replicas keep the forward_auth lane, which balances them)`
    if (fast.hostsOf(this).length === 0) return 'no exact host (a wildcard or non-canonical host cannot be flagged)'
    return 'its flag could not be written (see the log)'
  }

  /** Whether Caddy may proxy this backend directly now (its flag is written). */
  get fastLaneOpen(): boolean {
    return this.deps.fastLane?.lane.has(this) ?? false
  }

  /**
   * Whether a flag of this backend was written since its last wake: a fast-lane request Caddy
   * admitted then may still run, whatever the setting says now (`fast_lane` turned off by a
   * reload, hosts changed, replicas). Cleared only when the backend is asleep.
   */
  get laneUsedSinceWake(): boolean {
    return this.laneUsed
  }

  /** Open TCP connections to this backend's upstreams (fast lane on now or since the last wake), else 0. */
  private laneConnections(): number {
    const fast = this.deps.fastLane
    if (fast === undefined || !(this.settings.fast_lane || this.laneUsed)) return 0
    let n = 0
    for (const u of new Set([...this.ready, ...this.info.upstreams])) n += fast.lane.connections(u)
    return n
  }

  /** laneConnections() without blocking the event loop: the drain polls it every LANE_POLL_MS. */
  private async laneConnectionsAsync(): Promise<number> {
    const fast = this.deps.fastLane
    if (fast === undefined || !(this.settings.fast_lane || this.laneUsed)) return 0
    return fast.lane.connectionsAsync(...new Set([...this.ready, ...this.info.upstreams])) // one read of the tables per poll
  }

  /**
   * Whether open connections to the upstream have held off sleeps for max_request_duration with
   * no request seen since (starts the count at the first call that finds them). Past it they
   * no longer count: a sleep then cuts them, as an expired ticket no longer holds one.
   */
  private connectionsHeldTooLong(now: number): boolean {
    if (this.connectionsSince === undefined || this.lastRequestSeen > this.connectionsSince) {
      this.connectionsSince = now
      return false
    }
    if (now - this.connectionsSince < this.settings.max_request_duration) return false
    this.log.warn({ held_ms: now - this.connectionsSince, max_request_duration: this.settings.max_request_duration }, 'open connections to the upstream held off sleeps for max_request_duration with no request seen: they no longer keep it awake')
    return true
  }

  /** The access log reported a fast-lane request (no ticket) finished: activity. */
  laneRequestEnded(): void {
    const next = this.successor
    if (next !== undefined) return next.laneRequestEnded()
    this._lastActivity = this.lastRequestSeen = this.deps.now()
    if (this.phase === 'running') this.sharer?.touched(this._lastActivity)
  }

  /** Hot path: the next ready upstream when running, else undefined. No I/O, no allocation. */
  upstream(): string | undefined {
    if (this.phase !== 'running' || this._draining) return undefined
    const ready = this.ready
    if (ready.length === 1) return ready[0]
    if (ready.length === 0) return undefined
    this.rr = (this.rr + 1) % ready.length
    return ready[this.rr]
  }

  /** A request was authorised (counted in flight only when the access log can report its end). */
  started(countInflight: boolean): void {
    if (countInflight) this._inflight++
    this._lastActivity = this.lastRequestSeen = this.deps.now()
    // Traffic only (never a wake or a refused sleep), and only while up here: a line that
    // arrives after our own sleep is no traffic to write.
    if (this.phase === 'running') this.sharer?.touched(this._lastActivity)
    if (!countInflight) this.lastUncounted = this._lastActivity
  }

  /** The access log reported a request finished. */
  finished(): void {
    const next = this.successor
    if (next !== undefined) {
      // Replaced by a reload: the count was carried over, so the request ends there, unless the
      // successor slept since (its count was reset and this request is no longer in it).
      if (next.counters.wakes === this.successorWakes) next.finished()
      return
    }
    if (this.inflight > 0) this._inflight--
    this._lastActivity = this.lastRequestSeen = this.deps.now()
    // Traffic only (never a wake or a refused sleep), and only while up here: a line that
    // arrives after our own sleep is no traffic to write.
    if (this.phase === 'running') this.sharer?.touched(this._lastActivity)
  }

  /**
   * Shared engines, request path, after upstream() answered: undefined (nearly always), or a
   * wait for the token write this request triggered when nobody wrote for idle_timeout/2
   * (ActivitySharer.hold). `asleep`: another sidecar scaled it down; the backend is already
   * marked asleep and waking.
   */
  shareHold(): Promise<HoldOutcome> | undefined {
    return this.sharer?.hold(this.deps.now())
  }

  /** Shared engines: the engine view does not follow the engine now (routing needs a verify read). */
  get viewStale(): boolean {
    const shared = this.provider.shared
    if (shared === undefined) return false
    try {
      return shared.observe(this.info.id)?.live === false
    } catch {
      return true // cannot tell: the bounded verify read decides
    }
  }

  /**
   * Shared engines, request path, while the view is not live: read the object before routing on
   * what the view last said. At most one read per backend per VERIFY_EVERY_MS, bounded by
   * VERIFY_TIMEOUT_MS, and none on this provider for VERIFY_COOLOFF_MS after one timed out.
   * undefined: no read now (route on the last view).
   */
  verify(): Promise<VerifyOutcome> | undefined {
    const shared = this.provider.shared
    if (shared === undefined) return undefined
    if (this.verifying) return this.verifying
    const now = this.deps.now()
    if (now - this.verifiedAt < VERIFY_EVERY_MS || now < (this.deps.verifyPausedUntil.get(shared) ?? -Infinity)) return undefined
    this.verifiedAt = now
    // Bounded by the core's own timer: a refresh that ignores its signal (stuck in a provider
    // queue) must not hold this request, nor every later one that would share `verifying`.
    const timeout = new AbortController()
    const timer = setTimeout(() => timeout.abort(new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `verify read not answered within ${VERIFY_TIMEOUT_MS} ms`)), VERIFY_TIMEOUT_MS)
    const signal = AbortSignal.any([this.deps.closing, timeout.signal])
    const read = (async () => shared.refresh(this.info.id, signal))()
    const run = abortable(read, signal).then(
      (answer): VerifyOutcome => {
        if (answer === 'asleep') this.foundAsleep()
        return answer
      },
      (err: unknown): VerifyOutcome => {
        if (signal.aborted && !this.deps.closing.aborted) this.deps.verifyPausedUntil.set(shared, this.deps.now() + VERIFY_COOLOFF_MS)
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
        this.log.debug({ code: error.code, err: error.message }, 'verify read before routing failed; routing on the last view')
        return 'unconfirmed'
      },
    )
    this.verifying = run
    void run.finally(() => {
      clearTimeout(timer)
      if (this.verifying === run) this.verifying = undefined
    })
    return run
  }

  /**
   * The engine says the workload is at 0 replicas while this sidecar routes to it (another
   * sidecar scaled it down): stop routing and wake it (there is traffic here).
   */
  private foundAsleep(): void {
    if (this.removed || this.phase !== 'running') return
    this.stopJoining()
    this.ready = []
    this._phase = 'asleep'
    this._info = { ...this.info, state: 'scaled_to_zero' }
    this.log.info('another sidecar put it to sleep while this one had traffic: waking it (and its group)')
    if (this.deps.foundAsleep !== undefined) this.deps.foundAsleep(this)
    else this.wake().catch(() => undefined)
  }

  /**
   * The idle sweep's tick (shared engines): write pending traffic as an activity token, at most
   * every idle_timeout/4 (core/activity-share.ts). Only while routed here, or while a wake of
   * ours is under way (requests wait on it). Never on the request path.
   */
  shareTick(now: number): void {
    if (this.sharer === undefined || this.removed) return
    if (this.phase === 'running') this.sharer.tick(now)
    else if (this.wakePromise !== undefined) this.sharer.tickWaking(now) // requests wait on our wake
  }

  /**
   * Idle: awake (or left running by a failed wake), nothing in flight, no wake pending, and no
   * activity for idle_timeout.
   */
  isIdle(now: number): boolean {
    // A sleep or a CPU reading of the sweep's is under way: its outcome decides, not another tick.
    if (this.idleSleep !== undefined || this.busyCheck !== undefined) return false
    const blocker = this.sleepBlocker(now, false)
    if (blocker === 'startup_grace' && !this.holdReported) {
      // Idle by every other rule: the grace alone keeps it awake. Said once per grace.
      this.holdReported = true
      this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason: blocker })
    }
    if (blocker?.startsWith('connections:') === true && now - this.connectionsReportedAt >= this.settings.idle_timeout) {
      // Idle but for open connections to the upstream (a fast-lane download, or anyone's socket):
      // said once per idle_timeout, so an operator sees why it stays awake.
      this.connectionsReportedAt = now
      this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason: blocker })
    }
    // Kept awake by awake_during only: idle, so the sleep attempt reports the refusal and its reason.
    return blocker === undefined || blocker === POLICY_AWAKE_DURING
  }

  /** Why the backend must not sleep now (undefined: it may); `asleep` when there is nothing to put to sleep. */
  private sleepBlocker(now: number, ignoreActivity: boolean): string | undefined {
    if (!(this.phase === 'running' || (this.phase === 'asleep' && this.upInEngine))) return this.phase
    if (this.settings.always_on) return 'always_on'
    if (this.inflight > 0) return `inflight: ${this.inflight}`
    if (this.wakePromise !== undefined) return 'waking'
    if (this.adopting !== undefined) return 'probing'
    // An operator's or a policy's sleep (ignoreActivity): the fast lane's drain decides (runSleep).
    if (!ignoreActivity) {
      if (now - this.lastActivity < this.settings.idle_timeout) return 'not idle'
      if (now < this.holdUntil && this.holdReason !== undefined) return this.holdReason
      // Fast lane: a request Caddy proxies directly is seen only by its connection to the upstream
      // (its access-log line comes at its end). An open one is activity: a slow download keeps
      // the backend awake, and its end restarts the idle clock.
      const connections = this.laneConnections()
      if (connections > 0 && !this.connectionsHeldTooLong(now)) {
        this._lastActivity = now
        return `connections: ${connections}`
      }
      if (connections === 0) this.connectionsSince = undefined
      const shared = this.provider.shared
      if (shared !== undefined) {
        // Several sidecars: idle here is not enough; the shared token must not have changed for
        // idle_timeout, measured on this host's monotonic clock, with the view live.
        const blocker = sharedBlocker(observeSafely(shared, this.info.id), this.createdAt, now, this.settings.idle_timeout)
        if (blocker !== undefined) return blocker
      }
    }
    // Idle, but a policy keeps it awake: the sweep reports it (sleep.refused) once per idle_timeout.
    if (scheduleAt(this.settings, this.deps.wallNow()) === 'awake') return POLICY_AWAKE_DURING
    return undefined
  }

  /**
   * Up in the engine, whatever the phase here: running, or (shared engines) starting, e.g. a
   * group sibling another sidecar woke and this one never routed.
   */
  get upInEngine(): boolean {
    return this.info.state === 'running' || (this.provider.shared !== undefined && this.info.state === 'starting')
  }

  /**
   * Requests here within idle_timeout, or one in flight. Not a wake's end, a startup_grace hold or
   * another sidecar's token: the sweep's group rule wakes a sibling found at 0 only for this
   * (otherwise a sidecar with no traffic re-woke a group another sidecar was putting to sleep).
   */
  hasTrafficHere(now: number): boolean {
    return this._inflight > 0 || now - this.lastRequestSeen < this.settings.idle_timeout
  }

  /** Report a transition to the lifecycle events (logs, metrics, the events stream subscribe). */
  private emit(event: DistributiveOmit<LifecycleEvent, 'key' | 'name' | 'provider'>): void {
    this.deps.events.emit({ ...event, key: this.key, name: this.info.name, provider: providerId(this.provider) } as LifecycleEvent)
  }

  /**
   * The provider reported new facts. A transition in progress keeps its phase, and a list
   * that started before the last transition ended (`observedAt`) cannot undo it: its state is
   * older than what the transition did.
   */
  update(info: BackendInfo, settings: ResolvedSettings, observedAt?: number): 'applied' | 'deferred' {
    const stale = observedAt !== undefined && observedAt < this.transitionEndedAt
    this._info = stale ? { ...info, state: this.info.state } : info
    this.settingsChanged(settings)
    // A transition in progress keeps its phase: what the engine reports meanwhile is its
    // progress (or our own write), and the transition reports by its result.
    if (this.phase === 'probing' && !stale && !this.upInEngine) this.adoptAbort?.abort(new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${this.info.name} went down while probed`, { backend: this.info.name }))
    if (this.phase === 'sleeping' && !stale && (info.state === 'running' || info.state === 'starting')) this.upReportedWhileSleeping = true
    if (stale || this.phase === 'waking' || this.phase === 'probing' || this.phase === 'sleeping') {
      this.syncFastLane()
      return 'deferred'
    }
    if (this.phase === 'running' && info.state === 'running') this.reconcileReady(info.upstreams)
    else this.applyState(info.state)
    this.syncFastLane()
    return 'applied'
  }

  /**
   * A report while running (a replica crashed or restarted): upstreams no longer reported leave
   * `ready` at once; new ones join only through the readiness probe and the provider's
   * listener-ownership check, never on the provider's word (a replica that restarted may not
   * listen yet, and another program may hold its port).
   */
  private reconcileReady(upstreams: readonly string[]): void {
    this.ready = this.ready.filter((u) => upstreams.includes(u))
    for (const [u, probe] of this.joining) if (!upstreams.includes(u)) probe.abort()
    for (const u of upstreams) if (!this.ready.includes(u)) this.join(u)
  }

  private join(upstream: string): void {
    if (this.joining.has(upstream)) return
    const controller = new AbortController()
    this.joining.set(upstream, controller)
    const bound = withDeadline([controller.signal, this.deps.closing], this.settings.wake_timeout)
    const signal = bound.signal
    const owns = this.provider.ownsListener?.bind(this.provider, this.info.id)
    waitReady(upstream, this.settings.readiness, signal, owns)
      .then(
        () => this.addReady(upstream),
        (err: unknown) => {
          if (controller.signal.aborted || this.deps.closing.aborted) return
          const error = toRelightError(signal.aborted ? signal.reason : err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: this.info.name })
          this.log.warn({ upstream, code: error.code, err: error.message }, 'upstream not routed: readiness or listener check failed')
        },
      )
      .finally(() => {
        bound.clear()
        if (this.joining.get(upstream) === controller) this.joining.delete(upstream)
      })
  }

  /** A probed upstream joins the rotation if it is still reported and the backend still runs. */
  private addReady(upstream: string): void {
    if (this.phase !== 'running' && this.phase !== 'probing') return
    if (!this.info.upstreams.includes(upstream) || this.ready.includes(upstream)) return
    this.ready = [...this.ready, upstream]
    this.syncFastLane()
  }

  private stopJoining(): void {
    for (const probe of this.joining.values()) probe.abort()
    this.joining.clear()
  }

  /** Only the provider state changed (process exit, paused from outside). */
  stateChanged(state: BackendState, reason?: string): void {
    this._info = { ...this.info, state }
    if (this.phase === 'waking' || this.phase === 'probing') {
      // Exited during a wake: fail the waiters now rather than at wake_timeout. Other states
      // are the wake's own progress; the wake sets the phase when it is done.
      if (this.phase === 'probing' && !this.upInEngine) this.adoptAbort?.abort(new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${this.info.name} went down while probed`, { backend: this.info.name }))
      if (state === 'stopped' || (this.phase === 'probing' && state !== 'running' && state !== 'starting')) {
        this.wakeAbort?.abort(
          new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${this.info.name} stopped while waking${reason ? `: ${reason}` : ''}`, {
            backend: this.info.name,
          }),
        )
      }
      return
    }
    if (this.phase === 'sleeping') {
      if (state === 'running' || state === 'starting') this.upReportedWhileSleeping = true
      return
    }
    this.applyState(state)
    this.syncFastLane()
  }

  private applyState(state: BackendState): void {
    if (state === 'running') {
      if (this.phase !== 'running') {
        // Started outside a wake of ours (a restart after a crash, `docker start`): it may not
        // listen yet, so it is routed only after the readiness probe of a (no-op) wake. On a
        // shared engine, another sidecar's wake: probed and routed without a provider call,
        // since a wake writes an activity token and nobody here had traffic.
        this.hold('startup_grace', this.deps.now() + this.settings.startup_grace)
        if (this.provider.shared !== undefined) this.adopt()
        else this.wake().catch(() => undefined)
      }
      return
    }
    this.stopJoining()
    this._phase = 'asleep'
    this._inflight = 0
    this.laneUsed = false // stopped: no fast-lane request can still run on it
  }

  /**
   * Shared engines: a backend found running that this sidecar did not wake (another sidecar's
   * wake, seen by an event or a resync). Its reported upstreams are probed and it is routed;
   * nothing is written to the engine and the local idle clock is left alone (the shared token
   * of the waker keeps it up). Single flight; a request meanwhile waits behind it.
   */
  private adopt(): void {
    if (this.adopting !== undefined || this.wakePromise !== undefined || this.removed) return
    const upstreams = this.info.upstreams
    if (upstreams.length === 0) return // not routable yet: the next report with upstreams adopts it
    const run = this.serial(async () => {
      if (this.phase !== 'asleep' || this.removed || !this.upInEngine) return
      this._phase = 'probing'
      this.ready = []
      const controller = new AbortController()
      this.adoptAbort = controller
      const bound = withDeadline([controller.signal, this.deps.closing], this.settings.wake_timeout)
      const signal = bound.signal
      try {
        const owns = this.provider.ownsListener?.bind(this.provider, this.info.id)
        await waitAnyReady(upstreams, this.settings.readiness, signal, (u) => this.addReady(u), owns)
        // A scale-down reported while we probed wins: a replica in its stop grace still answers.
        if (!this.upInEngine) throw new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${this.info.name} went down while probed`, { backend: this.info.name })
        this.leftoverProbes = controller
        this._phase = 'running'
        this._info = { ...this.info, state: 'running' }
        this.log.debug('routed: up in the engine (another sidecar woke it)')
      } catch (err) {
        this._phase = 'asleep'
        this.ready = []
        const error = toRelightError(signal.aborted ? signal.reason : err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: this.info.name })
        this.log.debug({ code: error.code, err: error.message }, 'not routed: up in the engine but not ready here')
      } finally {
        // Not cleared: probes of replicas not up yet go on after the first (leftoverProbes), and
        // wake_timeout still bounds them.
        if (this.adoptAbort === controller) this.adoptAbort = undefined
        this.transitionEndedAt = this.deps.now()
      }
    })
    this.adopting = run
    void run.finally(() => {
      if (this.adopting === run) this.adopting = undefined
    })
  }

  markRemoved(): void {
    this._removed = true
    this.sharer?.close()
    this.syncFastLane()
    this.stopJoining()
    const gone = new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `backend ${this.info.name} was removed`, { backend: this.info.name })
    this.wakeAbort?.abort(gone)
    this.leftoverProbes?.abort(gone)
  }

  /** Resolves once the transitions queued so far (a sleep in progress, say) are over. */
  whenSettled(): Promise<void> {
    return this.chain.then(() => undefined)
  }

  /** Run `op` after every earlier transition of this backend. */
  private serial<T>(op: () => Promise<T>): Promise<T> {
    const next = this.chain.then(op, op)
    this.chain = next.catch(() => undefined)
    return next
  }

  /**
   * Single flight: every caller shares one wake. A caller that gives up (client gone, waiting
   * page shown) does not cancel it; only wake_timeout (counted from this call, including time
   * spent behind a sleep in progress), removal, exit or shutdown do.
   */
  wake(): Promise<void> {
    if (this.phase === 'running') return Promise.resolve()
    // A request here before our conditional sleep left the queue: the sleep is cancelled, and
    // the wake behind it finds the backend running (no scale-down, no wake).
    if (this.phase === 'sleeping') this.sleepCancel?.abort()
    if (this.wakePromise) return this.wakePromise
    if (this.removed) {
      return Promise.reject(new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `backend ${this.info.name} was removed`, { backend: this.info.name }))
    }
    const { name } = this.info
    const timeout = this.settings.wake_timeout
    const controller = new AbortController()
    // Not cleared on success: it also ends the probes of replicas that are not up yet.
    setTimeout(
      () => controller.abort(new RelightError('RELIGHT_ERR_WAKE_TIMEOUT', `backend ${name} was not ready within ${timeout} ms`, { backend: name })),
      timeout,
    ).unref()
    this.wakeAbort = controller
    const run = this.serial(() => this.doWake(controller))
    run.catch(() => undefined) // waiters get the same error through `promise`
    const promise = abortable(run, controller.signal).finally(() => {
      if (this.wakePromise === promise) {
        this.wakePromise = undefined
        this.wakeAbort = undefined
      }
    })
    this.wakePromise = promise
    return promise
  }

  private async doWake(controller: AbortController): Promise<void> {
    if (this.phase === 'running') return
    const signal = AbortSignal.any([controller.signal, this.deps.closing])
    const started = this.deps.now()
    const from = this.info.state
    this._phase = 'waking'
    // A new wake voids every ticket issued before it (TicketLedger.end): their lines end nothing
    // from now on, so nothing they counted may stay in flight. Usually already 0 (a sleep or a
    // report of 0 replicas reset it), but not when a shared engine's token write or verify read
    // found the workload at 0 (foundAsleep) with requests in flight: they would otherwise count
    // for max_request_duration, writing an "in flight" token every idle_timeout/4 meanwhile.
    this._counters.wakes++
    this._inflight = 0
    this.sharer?.wakeStarted(started)
    this.emit({ type: 'wake.started', from })
    try {
      signal.throwIfAborted()
      const fresh = await this.queued(this.deps.wakeQueue, () => this.provider.wake(this.info.id, signal), signal)
      // The provider's answer, not an event it may or may not have emitted: a bridge IP changes
      // on every start. Hosts stay as indexed until the registry hears of a change.
      this._info = { ...fresh, hosts: this.info.hosts, state: 'running' }
      this._phase = 'probing'
      // Routed once one upstream is ready; the others join `ready` as their probes succeed.
      const upstreams = this.info.upstreams
      this.ready = []
      // Routed only to the backend's own listener (process apps: never to a program that bound the port first).
      const owns = this.provider.ownsListener?.bind(this.provider, this.info.id)
      if (upstreams.length > 0) await this.probeWoken(upstreams, signal, owns)
      this.leftoverProbes = controller
      this._phase = 'running'
      this._lastActivity = this.deps.now()
      this._lastError = undefined
      this.sharer?.wroteByWake(started)
      // ready now: the fast lane opens (never before the readiness probe)
      this.syncFastLane()
      this.emit({ type: 'wake.ready', from, duration_ms: Math.round(this.deps.now() - started) })
      this.primeCpu()
    } catch (err) {
      const reason = signal.aborted ? signal.reason : err
      const error = toRelightError(reason, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: this.info.name, provider: providerId(this.provider) })
      this._counters.wakeFailures++
      this._lastError = error
      // Asleep even if the engine started it: the next request probes again, and if none comes
      // the idle sweep puts it back to sleep (isIdle looks at the reported state).
      this._phase = 'asleep'
      this.emit({ type: 'wake.failed', duration_ms: Math.round(this.deps.now() - started), code: error.code, reason: error.message })
      throw error
    } finally {
      this.transitionEndedAt = this.deps.now()
    }
  }

  /**
   * The readiness probe of a wake, raced with the provider's `startFailure` hook: a backend
   * that stopped right after its start (a task that failed) fails the wake at once with
   * RELIGHT_ERR_BACKEND_EXITED instead of at wake_timeout.
   */
  private async probeWoken(upstreams: readonly string[], signal: AbortSignal, owns: ListenerCheck | undefined): Promise<void> {
    const startFailure = this.provider.startFailure
    if (startFailure === undefined) return waitAnyReady(upstreams, this.settings.readiness, signal, (u) => this.addReady(u), owns)
    const probe = new AbortController()
    const stopped = new AbortController()
    const name = this.info.name
    startFailure.call(this.provider, this.info.id, stopped.signal).then(
      (reason) => {
        if (!stopped.signal.aborted) probe.abort(new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${name} stopped while starting: ${reason}`, { backend: name }))
      },
      () => undefined, // the hook ended with the probe, or failed: the probe decides
    )
    const both = AbortSignal.any([signal, probe.signal])
    try {
      await waitAnyReady(upstreams, this.settings.readiness, both, (u) => this.addReady(u), owns)
    } catch (err) {
      throw probe.signal.aborted && !signal.aborted ? probe.signal.reason : err
    } finally {
      stopped.abort()
    }
  }

  /**
   * Run an engine operation under a concurrency cap. The slot is held until the operation
   * settles, even when the caller stops waiting, so the cap holds during timeouts too.
   */
  private queued<T>(queue: PQueue, op: () => Promise<T>, signal: AbortSignal): Promise<T> {
    const task = queue.add(() => {
      signal.throwIfAborted()
      return op()
    })
    task.catch(() => undefined)
    return abortable(task, signal)
  }

  /**
   * Put the backend to sleep if it is still idle once earlier transitions finish. Returns true
   * when it went to sleep. Falls back to `fallback_sleep` when the preferred mode fails.
   */
  sleepIfIdle(options: { busyChecked?: boolean } = {}): Promise<boolean> {
    if (this.idleSleep !== undefined) return this.idleSleep
    const sleep = this.runSleep(false, 'idle', undefined, options.busyChecked !== true).then((outcome) => outcome.result === 'done')
    this.idleSleep = sleep
    void sleep.finally(() => {
      if (this.idleSleep === sleep) this.idleSleep = undefined
    }).catch(() => undefined)
    return sleep
  }

  /**
   * Whether a policy (schedule, max_awake) may put it to sleep now: awake, nothing in flight,
   * no wake pending, not always_on, not inside awake_during. Activity does not count.
   */
  maySleepEarly(now: number = this.deps.now()): boolean {
    return this.sleepBlocker(now, true) === undefined
  }

  /**
   * Whether max_awake may evict it now: maySleepEarly(), no activity for
   * min(idle_timeout, EVICTION_GRACE_MS), and no request answered without a ticket for
   * idle_timeout (its end is never seen: it may still be running, so eviction waits as long as
   * the idle sleep would).
   */
  mayBeEvicted(now: number = this.deps.now()): boolean {
    return this.maySleepEarly(now) && this.evictionBlocker(now) === undefined
  }

  /**
   * max_awake's Retry-After: the least time (ms) before mayBeEvicted() could hold if no new
   * request arrives; 0 when it holds now. A request in flight, a wake or a probe may end any
   * moment, and the backend is then recently active: their bound is the eviction grace. Inside
   * awake_during, not before the window ends; on a shared engine, not before the shared token is
   * idle_timeout old. Undefined when nothing known bounds it: always_on, an awake_during window
   * that never ends, a shared engine's view not live.
   */
  evictableIn(now: number = this.deps.now()): number | undefined {
    if (this.settings.always_on) return undefined
    const grace = Math.min(this.settings.idle_timeout, EVICTION_GRACE_MS)
    let wait = this.lastActivity + grace - now
    if (this.phase !== 'running' || this.inflight > 0 || this.wakePromise !== undefined || this.adopting !== undefined) wait = Math.max(wait, grace)
    if (this.holdReason !== undefined) wait = Math.max(wait, this.holdUntil - now)
    const wall = this.deps.wallNow()
    if (scheduleAt(this.settings, wall) === 'awake') {
      const end = this.scheduleEnd('awake', wall)
      if (end === undefined) return undefined
      wait = Math.max(wait, end - wall)
    }
    // Several sidecars: another sidecar's traffic shows as a token; blocks until idle_timeout old (sleepBlocker).
    const shared = this.provider.shared
    if (shared !== undefined) {
      const blocked = sharedBlockedFor(observeSafely(shared, this.info.id), this.createdAt, now, this.settings.idle_timeout)
      if (!Number.isFinite(blocked)) return undefined
      wait = Math.max(wait, blocked)
    }
    wait = Math.max(wait, this.lastUncounted + this.settings.idle_timeout - now)
    return Math.max(0, wait)
  }

  private evictionBlocker(now: number): string | undefined {
    // startup_grace (a backend found running, started by hand, has an old lastActivity and would
    // be the first evicted: Sablier #985) and busy_cpu's hold protect it from eviction too.
    if (now < this.holdUntil && this.holdReason !== undefined) return this.holdReason
    if (now - this.lastActivity < Math.min(this.settings.idle_timeout, EVICTION_GRACE_MS)) return 'recently active'
    // Several sidecars: another sidecar's traffic reaches us only as a token, written at most
    // every idle_timeout/4, so its activity is judged over the whole idle_timeout, as for an idle
    // sleep: a workload busy elsewhere is never evicted from here.
    const shared = this.provider.shared
    if (shared !== undefined) {
      const blocker = sharedBlocker(observeSafely(shared, this.info.id), this.createdAt, now, this.settings.idle_timeout)
      if (blocker !== undefined) return blocker
    }
    if (now - this.lastUncounted < this.settings.idle_timeout) return 'a request without a ticket may be in flight'
    return undefined
  }

  /**
   * A policy puts it to sleep before idle_timeout: `schedule` (an asleep_during window began) or
   * `evicted` (max_awake: `reason` says for whom). Refused like sleepNow().
   */
  sleepFor(cause: 'schedule' | 'evicted', reason: string): Promise<SleepOutcome> {
    return this.runSleep(true, cause, reason)
  }

  /**
   * busy_cpu: read the CPU now; at or above it, hold the backend awake for another idle_timeout
   * and report the refusal (reason `busy`). False when busy_cpu is off or the reading failed.
   * The sweep asks every member of a group before it puts any to sleep. One check at a time:
   * a caller while one runs gets its answer (one reading, one refusal reported).
   */
  busyNow(): Promise<boolean> {
    if (this.busyCheck !== undefined) return this.busyCheck
    const check = this.checkBusy()
    this.busyCheck = check
    void check.finally(() => {
      if (this.busyCheck === check) this.busyCheck = undefined
    }).catch(() => undefined)
    return check
  }

  private async checkBusy(): Promise<boolean> {
    const limit = this.settings.busy_cpu
    if (limit === undefined) return false
    const cpu = await this.measureCpu('due')
    // Not a number (a plugin's bad reading) is not busy: busy_cpu fails open.
    if (cpu === undefined || !(cpu >= limit)) return false
    this.hold('busy', this.deps.now() + this.settings.idle_timeout)
    this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason: 'busy', cpu_pct: cpu })
    return true
  }

  /**
   * An operator asked for a sleep (admin API, status page): like sleepIfIdle() without waiting
   * for idle_timeout, but still refused while a request is in flight or a wake is pending.
   */
  sleepNow(): Promise<SleepOutcome> {
    return this.runSleep(true, 'operator')
  }

  private runSleep(ignoreActivity: boolean, cause: SleepCause, reason?: string, checkBusy = !ignoreActivity): Promise<SleepOutcome> {
    return this.serial(async (): Promise<SleepOutcome> => {
      if (this.removed) return { result: 'refused', reason: 'removed' }
      const shared = this.provider.shared
      // The version judged idle: the scale-down is conditional on it (read just before the blocker).
      let judged = shared === undefined ? undefined : observeSafely(shared, this.info.id)
      let now = this.deps.now()
      let blocker = this.sleepBlocker(now, ignoreActivity)
      if (blocker === undefined && checkBusy && this.settings.busy_cpu !== undefined) {
        if (await this.busyNow()) return { result: 'refused', reason: 'busy' }
        // A request may have come while the CPU was read.
        judged = shared === undefined ? undefined : observeSafely(shared, this.info.id)
        now = this.deps.now()
        blocker = this.sleepBlocker(now, ignoreActivity)
      }
      if (blocker === undefined && shared !== undefined && judged === undefined) blocker = 'engine has not reported it yet'
      if (blocker === 'asleep') return { result: 'asleep' }
      // A hold was reported when it began (busyNow, isIdle): not once more per queued sleep.
      if (blocker !== undefined && blocker === this.holdReason) return { result: 'refused', reason: blocker }
      // Checked again here: a request may have come between the eviction's choice and now.
      if (blocker === undefined && cause === 'evicted') blocker = this.evictionBlocker(now)
      if (blocker !== undefined) {
        // Refused by a policy: reported again after another idle_timeout, not on every sweep.
        if (blocker === POLICY_AWAKE_DURING) this._lastActivity = this.deps.now()
        this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason: blocker })
        return { result: 'refused', reason: blocker }
      }
      if (shared !== undefined && judged !== undefined) return this.sleepShared(shared, judged.version, cause, reason)
      this.leftoverProbes?.abort()
      this.leftoverProbes = undefined
      this.stopJoining()
      // Not only an open flag: one removed since the wake (fast_lane turned off, hosts changed)
      // may have admitted a request that still runs.
      const laneWasOpen = this.fastLaneOpen || this.laneUsed
      this._phase = 'sleeping'
      const started = this.deps.now()
      // Generous: a stop may legitimately take a long grace period. Requests waiting behind it
      // are bounded by their own wake_timeout.
      const bound = withDeadline(this.deps.closing, Math.max(this.settings.wake_timeout, SLEEP_TIMEOUT_MS))
      const signal = bound.signal
      if (laneWasOpen) {
        // Safe sleep (README, "Fast lane"): close the lane first, give a request Caddy admitted
        // just before the time to open its connection, then sleep only if no connection to the
        // upstream is open (an idle keep-alive one too: snippet 4 closes those after 1 s).
        this.syncFastLane()
        const drain = await this.drainFastLane(signal)
        if (drain !== undefined) {
          bound.clear()
          return drain
        }
      }
      try {
        const mode = await this.trySleep(this.settings.sleep, this.settings.fallback_sleep, signal)
        this._phase = 'asleep'
        this._inflight = 0
        this.laneUsed = false
        this._info = { ...this.info, state: stateForMode(mode) }
        this._counters.sleeps++
        this.emit({ type: 'sleep.done', mode, fallback: mode !== this.settings.sleep, duration_ms: Math.round(this.deps.now() - started), cause, ...(reason !== undefined ? { reason } : {}) })
        return { result: 'done', mode }
      } catch (err) {
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: this.info.name })
        if (error.code === 'RELIGHT_ERR_SLEEP_REFUSED') {
          // Another sidecar saw traffic (or the shared value could not be checked): stay awake.
          this._phase = this.info.state === 'running' ? 'running' : 'asleep'
          this._lastActivity = this.deps.now()
          this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason: error.message, code: error.code })
          return { result: 'refused', reason: error.message }
        }
        this._counters.sleepFailures++
        // What the provider reported meanwhile decides; without a report it is still running.
        this._phase = this.info.state === 'running' ? 'running' : 'asleep'
        this._lastActivity = this.deps.now() // retry after another idle_timeout, not on every tick
        this.emit({ type: 'sleep.failed', mode: this.settings.sleep, code: error.code, reason: error.message })
        return { result: 'failed', error }
      } finally {
        bound.clear()
        this.transitionEndedAt = this.deps.now()
        this.syncFastLane() // still running after a refusal or failure: the lane reopens
      }
    })
  }

  /**
   * Our shared sleep did not happen (refused, cancelled, failed): running again if it was and the
   * engine still says so, and replicas not ready yet are probed again (the sleep ended their probes).
   */
  private resumeAfterSleep(wasPhase: Phase): void {
    this._phase = wasPhase === 'running' && this.info.state === 'running' ? 'running' : 'asleep'
    if (this.phase === 'running') this.reconcileReady(this.info.upstreams)
  }

  /**
   * Several sidecars: scale down only if the shared activity is still `version` (the engine's
   * precondition decides). `changed`: another sidecar wrote since; the backend stays up and is
   * judged again from the new observation. The local idle clock is not reset: only traffic moves it.
   */
  private async sleepShared(shared: SharedEngine, version: string, cause: SleepCause, reason?: string): Promise<SleepOutcome> {
    this.leftoverProbes?.abort()
    this.leftoverProbes = undefined
    this.stopJoining()
    const wasPhase = this.phase
    this._phase = 'sleeping'
    this.upReportedWhileSleeping = false
    this.syncFastLane() // closed while the conditional write runs (no fast-lane drain on shared engines yet)
    const started = this.deps.now()
    const mode = this.settings.sleep
    const bound = withDeadline(this.deps.closing, Math.max(this.settings.wake_timeout, SLEEP_TIMEOUT_MS))
    const signal = bound.signal
    const cancel = new AbortController()
    this.sleepCancel = cancel
    try {
      // Cancelled (wake()) only while still queued: once the write starts, nothing cancels it.
      const answer = await this.queued(
        this.deps.sleepQueue,
        async () => {
          if (this.sleepCancel === cancel) this.sleepCancel = undefined
          if (cancel.signal.aborted) return undefined
          return shared.sleepIf(this.info.id, version, signal)
        },
        AbortSignal.any([signal, cancel.signal]),
      ).catch((err: unknown) => {
        if (cancel.signal.aborted) return undefined
        throw err
      })
      if (answer === undefined) {
        this.resumeAfterSleep(wasPhase)
        const reason = 'a request arrived here before the sleep was written'
        this.emit({ type: 'sleep.refused', mode, reason })
        return { result: 'refused', reason }
      }
      if (answer.result === 'changed') {
        this.resumeAfterSleep(wasPhase)
        const reason = 'another sidecar wrote since (version changed)'
        this.emit({ type: 'sleep.refused', mode, reason, code: 'RELIGHT_ERR_SLEEP_REFUSED' })
        return { result: 'refused', reason }
      }
      this._phase = 'asleep'
      this._inflight = 0
      this.ready = []
      this._info = { ...this.info, state: stateForMode(mode) }
      this._counters.sleeps++
      this.emit({ type: 'sleep.done', mode, fallback: false, duration_ms: Math.round(this.deps.now() - started), cause, ...(reason !== undefined ? { reason } : {}) })
      if (this.upReportedWhileSleeping) this.recheckAfterSleep(shared)
      return { result: 'done', mode }
    } catch (err) {
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: this.info.name })
      this._counters.sleepFailures++
      this.resumeAfterSleep(wasPhase)
      this._lastActivity = this.deps.now() // retry after another idle_timeout, not on every tick
      this.emit({ type: 'sleep.failed', mode, code: error.code, reason: error.message })
      return { result: 'failed', error }
    } finally {
      bound.clear()
      if (this.sleepCancel === cancel) this.sleepCancel = undefined
      this.transitionEndedAt = this.deps.now()
      this.syncFastLane() // still running after a refusal or failure: the lane reopens
    }
  }

  /**
   * Our scale-down landed, but the engine reported the workload up while it ran: another
   * sidecar's wake after our write, or an older state delivered late. One bounded read tells
   * which; awake is adopted like any wake of another sidecar's (probed, then routed). Without
   * it this sidecar kept the workload asleep, and a group sibling of it slept alone while the
   * other sidecar served the group (S6 on the real swarm, issue 21).
   */
  private recheckAfterSleep(shared: SharedEngine): void {
    const bound = withDeadline(this.deps.closing, RECHECK_AFTER_SLEEP_MS)
    const read = (async () => shared.refresh(this.info.id, bound.signal))()
    abortable(read, bound.signal)
      .then(
        (answer) => {
          if (answer !== 'awake' || this.removed || this.phase !== 'asleep') return
          this.log.info('another sidecar woke it while this one put it to sleep: routing it again')
          this._info = { ...this.info, state: 'running' }
          this.applyState('running')
          this.syncFastLane()
        },
        (err: unknown) => {
          const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
          this.log.debug({ code: error.code, err: error.message }, 'read after a sleep failed; the next engine report decides')
        },
      )
      .finally(() => bound.clear())
  }

  /** After the flag is removed: undefined when the sleep may go on, else its refusal (lane reopened). */
  private async drainFastLane(signal: AbortSignal): Promise<SleepOutcome | undefined> {
    const grace = this.deps.fastLane?.graceMs ?? this.settings.fast_lane_drain ?? LANE_GRACE_MS
    const deadline = this.deps.now() + grace + LANE_KEEPALIVE_MS + 4 * LANE_POLL_MS
    let connections = 0
    try {
      await delay(grace, signal)
      // Idle keep-alive connections close within LANE_KEEPALIVE_MS; a busy one stays (bounded
      // by max_request_duration: then it no longer holds the sleep, whatever the sleep's cause).
      while ((connections = await this.laneConnectionsAsync()) > 0 && this.deps.now() < deadline) {
        if (this.connectionsHeldTooLong(this.deps.now())) {
          connections = 0
          break
        }
        await delay(LANE_POLL_MS, signal)
      }
      // aborted while the last count was read (no delay followed it): nothing sleeps
      if (signal.aborted) throw signal.reason
      if (connections === 0) this.connectionsSince = undefined
    } catch {
      // shutting down: the flag stays removed, nothing sleeps
      this._phase = 'running'
      return { result: 'refused', reason: 'closing' }
    }
    if (connections === 0 && this.inflight === 0) return undefined
    const reason = connections > 0 ? `connections: ${connections}` : `inflight: ${this.inflight}`
    this._phase = this.info.state === 'running' ? 'running' : 'asleep'
    this._lastActivity = this.deps.now()
    this.transitionEndedAt = this.deps.now()
    this.syncFastLane()
    this.emit({ type: 'sleep.refused', mode: this.settings.sleep, reason })
    return { result: 'refused', reason }
  }

  /**
   * CPU percent of one core since the provider's previous measurement of this backend (the
   * previous busy check, an idle_timeout ago, or the heartbeat's); undefined when it cannot be
   * read (the sleep then goes ahead: an engine that cannot answer must not keep every backend
   * awake; logged at 1, 2, 4… failures).
   */
  private measureCpu(why: 'first' | 'due'): Promise<number | undefined> {
    if (this.cpuReading !== undefined) {
      // A due reading does not take a first one's figure (it covers no idle window): it follows it.
      if (why === 'first' || this.cpuReadingWhy === 'due') return this.cpuReading
      return this.cpuReading.then(() => this.measureCpu('due'))
    }
    const reading = this.readCpu(why)
    this.cpuReading = reading
    this.cpuReadingWhy = why
    void reading.finally(() => {
      if (this.cpuReading === reading) this.cpuReading = undefined
    })
    return reading
  }

  private async readCpu(why: 'first' | 'due'): Promise<number | undefined> {
    const stats = this.provider.stats
    if (!stats) return undefined
    // The timeout starts when the reading does, not while it waits for a slot. Raced here too:
    // a provider that ignores the signal neither holds the slot nor the sleep beyond it.
    const read = async () => {
      const bound = withDeadline(this.deps.closing, BUSY_MEASURE_TIMEOUT_MS)
      try {
        return await abortable(stats.call(this.provider, this.info.id, bound.signal), bound.signal)
      } finally {
        bound.clear()
      }
    }
    try {
      const s = await (this.deps.statsQueue ? this.deps.statsQueue.add(read) : read())
      this.busyFailures = 0
      return s.cpu_pct
    } catch (err) {
      this.busyFailures++
      if (atPowerOfTwo(this.busyFailures) && !this.deps.closing.aborted) {
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')
        const then = why === 'due' ? 'sleeping as if idle' : 'the first reading is missing, so the next one covers the time since the provider last measured'
        this.log.warn({ code: error.code, err: error.message, failures: this.busyFailures }, `CPU not measured for busy_cpu; ${then}`)
      }
      return undefined
    }
  }

  private async trySleep(mode: SleepMode, fallback: SleepMode, signal: AbortSignal): Promise<SleepMode> {
    const id = this.info.id
    const context = { idleTimeout: this.settings.idle_timeout }
    try {
      await this.queued(this.deps.sleepQueue, () => this.provider.sleep(id, mode, signal, context), signal)
      return mode
    } catch (err) {
      if (fallback === mode || signal.aborted || isRelightError(err, 'RELIGHT_ERR_SLEEP_REFUSED')) throw err
      this._counters.fallbackSleeps++
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')
      if (!this.fallbackLogged) {
        this.fallbackLogged = true
        this.log.warn({ mode, fallback, code: error.code, err: error.message }, `sleep mode ${mode} failed; using ${fallback} (logged once per backend)`)
      }
      await this.queued(this.deps.sleepQueue, () => this.provider.sleep(id, fallback, signal, context), signal)
      return fallback
    }
  }

  /** A config reload changed this backend's settings (idle_timeout…): they apply from now on. */
  reconfigure(settings: ResolvedSettings): void {
    this.settingsChanged(settings)
    this.syncFastLane()
  }

  /**
   * New settings, from a reload or the provider's report. busy_cpu turned on while running takes
   * a first reading now (as a wake does), so the due one covers the idle window; a grace under
   * way ends startup_grace after it began, with the new value.
   */
  private settingsChanged(settings: ResolvedSettings): void {
    const before = this._settings
    this._settings = settings
    if (before.busy_cpu === undefined && settings.busy_cpu !== undefined && this.phase === 'running') this.primeCpu()
    if (this.holdReason === 'startup_grace' && settings.startup_grace !== before.startup_grace && this.deps.now() < this.holdUntil) {
      this.holdUntil = this.graceFrom + settings.startup_grace
    }
  }

  /**
   * This backend replaces `old` (same key, its provider instance was replaced by a reload):
   * requests in flight and the idle clock carry over, so a reload neither loses a count nor
   * resets an idle timer.
   */
  carryActivityFrom(old: Backend): void {
    this._inflight = old.inflight
    this._lastActivity = old.lastActivity
    // hasTrafficHere (the sweep's group rule) reads it: without it a member served here just
    // before the reload would not wake a sibling found at 0 for up to idle_timeout.
    this.lastRequestSeen = old.lastRequestSeen
    // A fast-lane request admitted under the old settings may still run (a reload that turned
    // fast_lane off): keep counting its connections and drain at the next sleep.
    this.laneUsed = old.laneUsed || old.fastLaneOpen
    this.lastUncounted = old.lastUncounted
    // Known before the reload: not "found running" by it (a reload resets no idle policy).
    this.holdUntil = old.holdUntil
    this.holdReason = old.holdReason
    this.holdReported = old.holdReported
    this.graceFrom = old.graceFrom
    // Open access-log tickets still name `old`: their lines must end the requests here.
    old.successor = this
    old.successorWakes = this.counters.wakes
    // The old instance writes no more tokens: a late answer must not wake through the replaced provider.
    old.sharer?.close()
  }

  /**
   * Inside a schedule window now: which, and until when (the window's end, or an asleep_during
   * window beginning inside awake_during), for the status page and the admin API.
   */
  private scheduleStatus(): { schedule?: { state: 'awake' | 'asleep'; key: string; until?: string; until_text?: string } } {
    const now = this.deps.wallNow()
    const state = scheduleAt(this.settings, now)
    if (state === undefined) return {}
    const own = state === 'asleep' ? this.settings.asleep_during : this.settings.awake_during
    if (own === undefined) return {}
    const until = this.scheduleEnd(state, now)
    const key = state === 'asleep' ? 'asleep_during' : 'awake_during'
    return { schedule: { state, key, ...(until !== undefined ? { until: new Date(until).toISOString(), until_text: own.describe(until) } : {}) } }
  }

  /**
   * When the schedule state at `wall` ends: the end of its window or, inside awake_during, an
   * asleep_during window beginning (which puts it to sleep); undefined when it never ends.
   */
  private scheduleEnd(state: 'awake' | 'asleep', wall: number): number | undefined {
    const own = state === 'asleep' ? this.settings.asleep_during : this.settings.awake_during
    const ends = [own?.nextChange(wall), state === 'awake' ? this.settings.asleep_during?.nextChange(wall) : undefined].filter((t): t is number => t !== undefined)
    return ends.length > 0 ? Math.min(...ends) : undefined
  }

  /** Status for healthz and the admin API. */
  status(): Record<string, unknown> {
    return {
      key: this.key,
      name: this.info.name,
      hosts: this.info.hosts,
      phase: this.phase,
      state: this.info.state,
      upstreams: this.info.upstreams,
      inflight: this.inflight,
      fast_lane: this.fastLaneOpen,
      ...(this.fastLaneOff !== undefined ? { fast_lane_off: this.fastLaneOff } : {}),
      idle_ms: Math.round(this.deps.now() - this.lastActivity),
      ...(this.holdReason !== undefined && this.deps.now() < this.holdUntil ? { held: this.holdReason, held_ms: Math.round(this.holdUntil - this.deps.now()) } : {}),
      ...this.scheduleStatus(),
      ...this.counters,
      ...(this.lastError ? { last_error: this.lastError.code } : {}),
    }
  }
}

/** Omit over each member of a union (the plain Omit merges the members). */
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never
