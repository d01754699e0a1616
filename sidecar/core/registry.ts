import PQueue from 'p-queue'
import type { Logger } from 'pino'
import { Backend, type BackendDeps, type ResolvedSettings } from './backend.js'
import { Capacity, type CapacityLimits } from './capacity.js'
import { type ErrorCode, RelightError, toRelightError } from './errors.js'
import { logEvents } from './event-log.js'
import { LifecycleEvents } from './events.js'
import { HostIndex } from './host-index.js'
import type { FastLane } from './fast-lane.js'
import { laneHostProblem } from './fast-lane.js'
import { parseHostPattern } from './hosts.js'
import { type IgnoreRule, IgnoreRules } from './ignore.js'
import { type BackendInfo, type Provider, type ProviderEvent, providerId, type SleepMode } from './provider.js'
import { monotonicNow } from './clock.js'
import { scheduleAt } from './schedule.js'
import { abortable, delay, withDeadline } from './timers.js'

/** What the registry reads of the configuration (the parsed config satisfies it; core imports no config/ code). */
export interface RegistryConfig {
  /** Settings every backend inherits (`defaults`). */
  readonly defaults: Omit<ResolvedSettings, 'always_on' | 'ignore' | 'busy_cpu' | 'startup_grace'> & {
    readonly ignore: readonly IgnoreRule[]
    readonly busy_cpu?: number | undefined
    readonly startup_grace?: number | undefined
  }
  readonly base_domains: readonly string[]
  readonly min_idle_timeout: number
  readonly resync_interval: number
  readonly max_concurrent_wakes: number
  readonly max_concurrent_sleeps: number
  /** Most backends awake at once across every provider (a group counts as one); absent: no cap. */
  readonly max_awake?: number | undefined
  /** Provider blocks by kind, for each instance's own `max_awake` (config/instances.ts). */
  readonly providers?: Readonly<Record<string, readonly { readonly id: string; readonly max_awake?: number | undefined }[] | undefined>>
  /** Stateful sites: their hosts never get a fast-lane flag (/auth routes them to the site). */
  readonly stateful?: readonly { readonly hosts: readonly string[] }[]
}

export interface ProviderStatus {
  ok: boolean
  backends: number
  lastList?: number
  error?: string
  /** Code of the last failed list. */
  code?: ErrorCode
  /** Shared engines: whether the provider's engine view follows the engine (a `connection` event). */
  view?: 'live' | 'down'
}

const LIST_TIMEOUT_MS = 15_000
/** CPU readings for busy_cpu at once (a start-up finds every backend running and reads each). */
const STATS_CONCURRENCY = 8
const RELIST_ON_MISS_EVERY_MS = 1000
const RELIST_ON_MISS_WAIT_MS = 1500
/** Concurrent activity-token writes of this sidecar (shared engines). */
const SHARE_CONCURRENCY = 8
/** healthz says `degraded` when an engine view has been down this long. */
export const VIEW_DOWN_DEGRADED_MS = 2000
/** Least time between two scheduled wakes of one backend (awake_during) when one failed. */
const SCHEDULED_WAKE_RETRY_MS = 10_000

/**
 * Owns every backend: lists providers, follows their events, keeps the host index, and runs
 * the idle sweep. The hot path touches only `index` and the Backend it returns.
 */
export class Registry implements RegistryReload {
  index: HostIndex<Backend>
  /** In build order (which ranks host conflicts); replaced as a whole by a reload. */
  providers: readonly Provider[]
  readonly status = new Map<string, ProviderStatus>()
  /** Whether in-flight requests can be counted (an access-log connection is up). */
  countInflight = false
  /** Lifecycle events of every backend and provider; the log is its first subscriber. */
  readonly events: LifecycleEvents

  private readonly backends = new Map<string, Backend>()
  private config: RegistryConfig
  private readonly log: Logger
  private deps: BackendDeps
  private readonly closer = new AbortController()
  private timers: NodeJS.Timeout[] = []
  private readonly resyncTimers = new Map<Provider, NodeJS.Timeout>()
  /** One watch per provider, stopped when the provider is removed or replaced. */
  private readonly watches = new Map<Provider, AbortController>()
  private rebuildScheduled = false
  private closed = false
  private readonly warnedSettings = new Set<string>()
  /** Ignore rules compiled once per list (a list is shared by every backend it came from). */
  private compiledRules = new WeakMap<readonly IgnoreRule[], IgnoreRules>()
  private lastMissRelist = -Infinity
  private readonly resyncs = new Map<Provider, { again: boolean; done: Promise<void> }>()
  private missRelist: Promise<void> | undefined
  /** max_awake admissions and evictions (core/capacity.ts). */
  private readonly capacity: Capacity
  /** max_awake in force: top level, and each provider instance's block. */
  private caps: CapacityLimits
  /** Backends the sweep woke for an awake_during window: no new attempt before this (deps.now clock). */
  private readonly scheduledWakeAt = new Map<string, number>()
  /** Backends whose schedule sleep failed or was refused: no new attempt before this (deps.now clock). */
  private readonly scheduledSleepAt = new Map<string, number>()
  /** The asleep_during window end each backend's last wake.refused named (one event per window). */
  private readonly refusedUntil = new Map<string, { readonly text: string; readonly end: number }>()
  /** Shared engines: when each provider's view went down (deps.now clock); absent while live. */
  private readonly viewDownAt = new Map<string, number>()
  /** Shared engines: the onReconnect subscription per followed provider. */
  private readonly reconnectSubs = new Map<Provider, () => void>()

  /**
   * `now` is the clock every idle and transition duration is measured on: monotonic (core/clock.ts);
   * `wallNow`: wall-clock ms since the epoch, read for schedules only (tests inject both clocks).
   */
  constructor(providers: readonly Provider[], config: RegistryConfig, logger: Logger, now: () => number = monotonicNow, wallNow: () => number = Date.now) {
    const ids = new Set<string>()
    for (const p of providers) {
      // The config refuses duplicates with the key named; reaching this is a wiring mistake.
      if (ids.has(providerId(p))) throw new Error(`two providers share the id "${providerId(p)}"`)
      ids.add(providerId(p))
    }
    this.providers = providers
    this.config = config
    this.log = logger
    this.events = new LifecycleEvents((err, event) => logger.error({ err, event: event.type }, 'lifecycle event listener failed'))
    logEvents(this.events, logger)
    this.deps = {
      wakeQueue: new PQueue({ concurrency: config.max_concurrent_wakes }),
      sleepQueue: new PQueue({ concurrency: config.max_concurrent_sleeps }),
      logger,
      now,
      wallNow,
      closing: this.closer.signal,
      events: this.events,
      shareQueue: new PQueue({ concurrency: SHARE_CONCURRENCY }),
      verifyPausedUntil: new WeakMap(),
      foundAsleep: (backend) => this.foundAsleep(backend),
      statsQueue: new PQueue({ concurrency: STATS_CONCURRENCY }),
    }
    this.index = new HostIndex<Backend>([], config.base_domains)
    this.caps = capsOf(config)
    this.capacity = new Capacity(() => this.backends.values(), () => this.caps)
  }

  /**
   * New max_awake caps, live: the top-level key and every provider block's. A reload calls this
   * whenever `providers` changed (a block's cap is not one of the registry keys).
   */
  applyCaps(config: RegistryConfig): void {
    this.caps = capsOf(config)
  }

  /**
   * Use the fast lane's flag directory (daemon, before start): backends with `fast_lane: on`
   * write their flags there while awake (core/fast-lane.ts).
   */
  useFastLane(lane: FastLane, graceMs?: number): void {
    this.deps = { ...this.deps, fastLane: { lane, hostsOf: (b) => this.laneHosts(b), ...(graceMs !== undefined ? { graceMs } : {}) } }
  }

  /**
   * The exact names Caddy may send straight to `backend`: its exact hosts and its first-label
   * hosts under each base domain, in canonical spelling, that the host index gives to it
   * (a host two backends declare is flagged for the winner only). Wildcards stay in the
   * forward_auth lane.
   */
  private laneHosts(backend: Backend): string[] {
    const names: string[] = []
    for (const declared of backend.info.hosts) {
      const pattern = parseHostPattern(declared)
      if (pattern?.kind === 'exact') names.push(pattern.name)
      else if (pattern?.kind === 'label') for (const base of this.config.base_domains) names.push(`${pattern.label}.${base}`)
    }
    // A stateful site's host is routed by /auth to the site (app.ts checks stateful first): a
    // flag would send its plain requests to the backend instead, around the session routing.
    const stateful = new Set(this.config.stateful?.flatMap((site) => site.hosts))
    return [...new Set(names)].filter((n) => laneHostProblem(n) === undefined && !stateful.has(n) && this.index.resolve(n) === backend)
  }

  /** `base_domains` in force (a one-label host `web` is `web.<each of these>`). */
  get baseDomains(): readonly string[] {
    return this.config.base_domains
  }

  get size(): number {
    return this.backends.size
  }

  all(): IterableIterator<Backend> {
    return this.backends.values()
  }

  get(key: string): Backend | undefined {
    return this.backends.get(key)
  }

  /** List every provider once, start following events and the periodic resync. */
  async start(): Promise<void> {
    await Promise.all(this.providers.map((p) => this.resync(p)))
    for (const provider of this.providers) this.follow(provider)
    await this.wakeAlwaysOn()
    for (const p of this.providers) this.startResyncTimer(p)
  }

  /** always_on backends are kept running: start them; a failure is logged by the backend. */
  wakeAlwaysOn(provider?: Provider): Promise<void> {
    const wanted = [...this.backends.values()].filter((b) => b.settings.always_on && b.phase !== 'running' && (provider === undefined || b.provider === provider))
    return Promise.all(wanted.map((b) => b.wake().catch(() => undefined))).then(() => undefined)
  }

  /** The periodic full list of one provider (its own resync_interval, else the top-level one). */
  private startResyncTimer(p: Provider): void {
    this.stopResyncTimer(p)
    const every = p.resyncInterval ?? this.config.resync_interval
    if (every <= 0 || this.closed) return
    const timer = setInterval(() => this.resyncInBackground(p), every)
    timer.unref()
    this.resyncTimers.set(p, timer)
  }

  private stopResyncTimer(p: Provider): void {
    clearInterval(this.resyncTimers.get(p))
    this.resyncTimers.delete(p)
  }

  private follow(provider: Provider): void {
    const shared = provider.shared
    if (shared !== undefined) {
      // The view is live again: token writes that failed during the outage are retried now.
      const off = shared.onReconnect(() => {
        for (const b of this.backends.values()) if (b.provider === provider) b.sharer?.reconnected()
      })
      this.reconnectSubs.set(provider, off)
    }
    if (!provider.watch) return
    const watching = new AbortController()
    this.watches.set(provider, watching)
    provider.watch((event) => this.onEvent(provider, event), AbortSignal.any([this.closer.signal, watching.signal]))
  }

  private unfollow(provider: Provider): void {
    this.reconnectSubs.get(provider)?.()
    this.reconnectSubs.delete(provider)
    this.viewDownAt.delete(providerId(provider))
    this.watches.get(provider)?.abort()
    this.watches.delete(provider)
    this.stopResyncTimer(provider)
  }

  /**
   * List one provider and make the registry match it. A failed list keeps what we knew. One
   * list per provider at a time: a call during a list asks for one more list after it (so
   * results never arrive out of order) and resolves when that one is done.
   */
  resync(provider: Provider): Promise<void> {
    const running = this.resyncs.get(provider)
    if (running) {
      running.again = true
      return running.done
    }
    const entry = { again: false, done: Promise.resolve() }
    entry.done = (async () => {
      try {
        do {
          entry.again = false
          await this.listOnce(provider)
        } while (entry.again && !this.closed)
      } finally {
        this.resyncs.delete(provider)
      }
    })()
    this.resyncs.set(provider, entry)
    return entry.done
  }

  /** resync() for timers and events: failures are logged, never unhandled. */
  private resyncInBackground(provider: Provider): void {
    this.resync(provider).catch((err: unknown) => this.log.error({ err, provider: providerId(provider) }, 'resync failed'))
  }

  private async listOnce(provider: Provider): Promise<void> {
    if (this.closed) return
    const bound = withDeadline(this.closer.signal, LIST_TIMEOUT_MS)
    const listedAt = this.deps.now()
    let infos: BackendInfo[]
    try {
      infos = await provider.list(bound.signal)
    } catch (err) {
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE', { provider: providerId(provider) })
      const before = this.status.get(providerId(provider))
      if (before?.ok !== false || before.error !== error.message) {
        this.events.emit({ type: 'provider.down', provider: providerId(provider), code: error.code, reason: error.message })
      }
      this.status.set(providerId(provider), { ...(before ?? { backends: 0 }), ok: false, error: error.message, code: error.code })
      return
    } finally {
      bound.clear()
    }
    if (this.closed) return
    const seen = new Set<string>()
    let hostsChanged = false
    for (const info of infos) {
      seen.add(`${providerId(provider)}:${info.id}`)
      if (this.upsert(provider, info, listedAt)) hostsChanged = true
    }
    for (const [key, backend] of this.backends) {
      // A backend an event added while this list ran is not in it, and not gone.
      if (backend.provider === provider && !seen.has(key) && backend.createdAt <= listedAt) {
        this.remove(backend)
        hostsChanged = true
      }
    }
    const previous = this.status.get(providerId(provider))
    const wasUp = previous?.ok === true
    this.status.set(providerId(provider), { ok: true, backends: infos.length, lastList: Date.now(), ...(previous?.view ? { view: previous.view } : {}) })
    if (!wasUp) this.events.emit({ type: 'provider.up', provider: providerId(provider), backends: infos.length })
    // A resync that changes no host keeps the index (and its warm raw-Host cache).
    if (hostsChanged) this.scheduleRebuild(true)
  }

  private onEvent(provider: Provider, event: ProviderEvent): void {
    if (this.closed || !this.providers.includes(provider)) return
    switch (event.type) {
      case 'upsert':
        if (this.upsert(provider, event.backend)) this.scheduleRebuild()
        return
      case 'remove': {
        const backend = this.backends.get(`${providerId(provider)}:${event.id}`)
        if (backend) {
          this.remove(backend)
          this.scheduleRebuild()
        }
        return
      }
      case 'state': {
        const backend = this.backends.get(`${providerId(provider)}:${event.id}`)
        if (backend) {
          this.events.emit({ type: 'backend.state', ...ref(backend), state: event.state, ...(event.reason ? { reason: event.reason } : {}) })
          backend.stateChanged(event.state, event.reason)
        } else this.resyncInBackground(provider)
        return
      }
      case 'resync':
        this.resyncInBackground(provider)
        return
      case 'connection':
        this.viewConnection(provider, event.up, event.reason)
        return
    }
  }

  /** A shared engine's view lost or regained the engine: status, provider.down/up, healthz. */
  private viewConnection(provider: Provider, up: boolean, reason: string | undefined): void {
    const id = providerId(provider)
    const before = this.status.get(id) ?? { ok: true, backends: 0 }
    if (up) {
      // The first `up` (no `down` before it) only says the view is live; provider.up follows a down.
      if (before.view !== 'live') this.status.set(id, { ...before, view: 'live' })
      if (this.viewDownAt.delete(id)) this.events.emit({ type: 'provider.up', provider: id, backends: before.backends })
      return
    }
    if (this.viewDownAt.has(id)) return
    this.viewDownAt.set(id, this.deps.now())
    this.status.set(id, { ...before, view: 'down' })
    this.events.emit({ type: 'provider.down', provider: id, code: 'RELIGHT_ERR_PROVIDER_UNAVAILABLE', reason: `engine view disconnected${reason ? `: ${reason}` : ''}` })
  }

  /**
   * healthz: a provider cannot be listed, or a shared engine's view has been down for more than
   * VIEW_DOWN_DEGRADED_MS (a blip while a stream reopens is not reported).
   */
  degraded(now = this.deps.now()): boolean {
    for (const s of this.status.values()) if (!s.ok) return true
    for (const at of this.viewDownAt.values()) if (now - at > VIEW_DOWN_DEGRADED_MS) return true
    return false
  }

  /** Add or update a backend; true when the host index must change (new backend or new hosts). */
  private upsert(provider: Provider, info: BackendInfo, observedAt?: number): boolean {
    const key = `${providerId(provider)}:${info.id}`
    const settings = this.resolveSettings(provider, info)
    const existing = this.backends.get(key)
    if (existing) {
      const hostsChanged = !sameHosts(existing.info.hosts, info.hosts)
      const before = existing.info.state
      // A report during a transition (its progress, our own write) is no state change of its own.
      const applied = existing.update(info, settings, observedAt) === 'applied'
      if (applied && existing.info.state !== before) this.events.emit({ type: 'backend.state', ...ref(existing), state: existing.info.state })
      return hostsChanged
    }
    const backend = new Backend(provider, info, settings, this.deps)
    this.backends.set(key, backend)
    this.events.emit({ type: 'backend.added', ...ref(backend), hosts: info.hosts, state: info.state })
    return true
  }

  private remove(backend: Backend): void {
    this.scheduledWakeAt.delete(backend.key)
    this.scheduledSleepAt.delete(backend.key)
    this.refusedUntil.delete(backend.key)
    backend.markRemoved()
    this.backends.delete(backend.key)
    this.events.emit({ type: 'backend.removed', ...ref(backend) })
  }

  /** Defaults, then the backend's own settings; idle_timeout floored; modes the provider lacks replaced. */
  resolveSettings(provider: Provider, info: BackendInfo): ResolvedSettings {
    const d = this.config.defaults
    const s = info.settings
    const warn = (what: string, msg: string, extra: object) => {
      const k = `${providerId(provider)}:${info.id}:${what}`
      if (this.warnedSettings.has(k)) return
      this.warnedSettings.add(k)
      this.log.warn({ backend: info.name, provider: providerId(provider), ...extra }, msg)
    }
    if (s.fast_lane === true && this.deps.fastLane === undefined) warn('fast_lane', 'fast_lane is on but fast_lane_dir is not set: this backend stays in the forward_auth lane', {})
    let idle = s.idle_timeout ?? d.idle_timeout
    if (idle < this.config.min_idle_timeout) {
      warn('idle', 'idle_timeout below min_idle_timeout; using the floor', { idle_timeout: idle, min_idle_timeout: this.config.min_idle_timeout })
      idle = this.config.min_idle_timeout
    }
    const pick = (mode: SleepMode, what: string): SleepMode => {
      if (provider.sleepModes.includes(mode)) return mode
      const chosen = provider.sleepModes[0] ?? mode
      warn(what, `${provider.kind} does not support sleep mode ${mode}; using ${chosen}`, { mode, chosen })
      return chosen
    }
    return {
      idle_timeout: idle,
      wake_timeout: s.wake_timeout ?? d.wake_timeout,
      sleep: pick(s.sleep ?? d.sleep, 'sleep'),
      fallback_sleep: pick(s.fallback_sleep ?? d.fallback_sleep, 'fallback_sleep'),
      strategy: s.strategy ?? d.strategy,
      waiting_page_after: s.waiting_page_after ?? d.waiting_page_after,
      readiness: s.readiness ?? d.readiness,
      max_request_duration: s.max_request_duration ?? d.max_request_duration,
      always_on: s.always_on ?? false,
      ...(s.awake_during ?? d.awake_during ? { awake_during: s.awake_during ?? d.awake_during } : {}),
      ...(s.asleep_during ?? d.asleep_during ? { asleep_during: s.asleep_during ?? d.asleep_during } : {}),
      fast_lane: s.fast_lane ?? d.fast_lane,
      fast_lane_drain: s.fast_lane_drain ?? d.fast_lane_drain,
      ...this.idlePolicies(provider, info, idle, warn),
    }
  }

  /** The issue-26 settings: compiled ignore rules (cached per rule list), busy_cpu where the provider measures CPU. */
  private idlePolicies(provider: Provider, info: BackendInfo, idle: number, warn: (what: string, msg: string, extra: object) => void) {
    const d = this.config.defaults
    const s = info.settings
    const rules = s.ignore ?? d.ignore
    let ignore = this.compiledRules.get(rules)
    if (ignore === undefined) {
      ignore = rules.length === 0 ? IgnoreRules.none : new IgnoreRules(rules)
      this.compiledRules.set(rules, ignore)
    }
    let busy = s.busy_cpu ?? d.busy_cpu
    if (busy !== undefined && !provider.stats) {
      // The config refuses it in the block of such a provider; defaults and labels end here.
      if (s.busy_cpu !== undefined) warn('busy_cpu', `${provider.kind} cannot measure a backend's CPU; busy_cpu is ignored`, { busy_cpu: busy })
      busy = undefined
    }
    return {
      ignore,
      ignore_status: s.ignore_status ?? d.ignore_status,
      busy_cpu: busy,
      startup_grace: s.startup_grace ?? d.startup_grace ?? idle,
    }
  }

  /** Rebuild the host index, after the current burst of events (or now). */
  private scheduleRebuild(now = false): void {
    if (now) {
      this.rebuild()
      return
    }
    if (this.rebuildScheduled) return
    this.rebuildScheduled = true
    queueMicrotask(() => this.rebuild())
  }

  private rebuild(): void {
    this.rebuildScheduled = false
    // A host two backends declare goes to the provider built first: the config file's own
    // (process) apps before anything discovered from labels or tags.
    const entries = [...this.backends.values()].map((b) => ({ target: b, key: b.key, hosts: b.info.hosts, rank: this.providers.indexOf(b.provider) }))
    const index = new HostIndex(entries, this.config.base_domains)
    for (const p of index.problems) {
      const k = `${p.key}:${p.host}:${p.problem}`
      if (!this.warnedSettings.has(k)) {
        this.warnedSettings.add(k)
        this.log.warn({ backend: p.key, host: p.host }, `host ${p.problem}`)
      }
    }
    this.index = index
    // hosts may have moved between backends: flags follow the new index
    if (this.deps.fastLane !== undefined) for (const b of this.backends.values()) b.syncFastLane()
  }

  /**
   * A valid host missed the index. Providers that ask for it are listed again (coalesced, at
   * most once a second) and the host looked up again; everything else answers at once. Rejects
   * with RELIGHT_ERR_PROVIDER_UNAVAILABLE when such a provider cannot be listed.
   */
  async resolveAfterMiss(host: string): Promise<Backend | undefined> {
    const relisting = this.providers.filter((p) => p.relistOnMiss)
    if (relisting.length === 0) return undefined
    // One relist, and one bound on waiting for it, shared by every request that misses meanwhile.
    if (!this.missRelist) {
      const wait = Math.max(0, this.lastMissRelist + RELIST_ON_MISS_EVERY_MS - this.deps.now())
      const relist = delay(wait, this.closer.signal)
        .then(() => {
          this.lastMissRelist = this.deps.now()
          return Promise.all(relisting.map((p) => this.resync(p)))
        })
        .then(() => undefined)
      this.missRelist = Promise.race([relist, delay(wait + RELIST_ON_MISS_WAIT_MS, this.closer.signal)]).finally(() => {
        this.missRelist = undefined
      })
    }
    await this.missRelist
    const found = this.index.resolve(host)
    if (found) return found
    // The host may belong to a backend we cannot see right now: say so rather than "unknown".
    for (const p of relisting) {
      const status = this.status.get(providerId(p))
      if (status?.ok !== false) continue
      const code = status.code === 'RELIGHT_ERR_PROVIDER_AUTH' ? status.code : 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'
      throw new RelightError(code, `${providerId(p)} cannot be listed, so ${host} cannot be looked up: ${status.error ?? ''}`, { host, provider: providerId(p) })
    }
    return undefined
  }

  /**
   * Wake a backend and, in the background, the other members of its group. Refused inside an
   * asleep_during window (RELIGHT_ERR_SCHEDULED_ASLEEP) and when max_awake is reached and nothing
   * can be put to sleep to make room (RELIGHT_ERR_CAPACITY).
   */
  wake(backend: Backend): Promise<void> {
    if (backend.phase === 'running' && !backend.draining) return Promise.resolve()
    // always_on ignores both policies: a request is its only way back after a failed start.
    if (backend.settings.always_on) return this.wakeGroup(backend)
    const refusal = this.scheduleRefusal(backend)
    if (refusal !== undefined) return Promise.reject(refusal)
    backend.drain(false) // the window ended (or its schedule changed) before the sweep saw it
    if (backend.phase === 'running') return Promise.resolve()
    if (!this.capacity.applies(backend)) return this.wakeGroup(backend)
    // The whole call, admission included, within wake_timeout from here.
    const timeout = backend.settings.wake_timeout
    const bound = withDeadline(this.closer.signal, timeout)
    const deadline = bound.signal
    const admitted = this.capacity.admit(backend, deadline).then(
      (release) => {
        const woken = this.wakeGroup(backend)
        woken.then(release, release)
        const late = new RelightError('RELIGHT_ERR_WAKE_TIMEOUT', `backend ${backend.info.name} was not ready within ${timeout} ms (waiting for room included)`, { backend: backend.info.name })
        // The wake goes on (the next request finds it running); this caller stops waiting.
        return abortable(woken, deadline).catch((err: unknown) => {
          throw err instanceof Error && err.name === 'TimeoutError' ? late : err
        })
      },
      (err: unknown) => {
        if (err instanceof RelightError) {
          this.events.emit({ type: 'wake.refused', ...ref(backend), code: err.code, reason: err.message, retry_after_s: err.context.retryAfter ?? 0 })
        }
        throw err
      },
    )
    void admitted.then(bound.clear, bound.clear)
    return admitted
  }

  /** Inside an asleep_during window: the error to answer (Retry-After: the window's end). */
  private scheduleRefusal(backend: Backend): RelightError | undefined {
    const schedule = backend.settings.asleep_during
    const wall = this.deps.wallNow()
    if (schedule === undefined || scheduleAt(backend.settings, wall) !== 'asleep') return undefined
    // The window's end, worked out once per window and schedule (refused requests may come fast);
    // a changed schedule (reload, label) or a window without end is worked out again.
    const known = this.refusedUntil.get(backend.key)
    const end = known !== undefined && known.text === schedule.text && known.end > wall && Number.isFinite(known.end) ? known.end : schedule.nextChange(wall)
    const retryAfter = end === undefined ? 3600 : Math.max(1, Math.ceil((end - wall) / 1000))
    const until = end === undefined ? 'further notice' : schedule.describe(end)
    const error = new RelightError('RELIGHT_ERR_SCHEDULED_ASLEEP', `${backend.info.name} is asleep by schedule (asleep_during: ${schedule.text}) until ${until}`, {
      backend: backend.info.name,
      retryAfter,
      reason: `asleep_during until ${until}`,
      until,
    })
    // One event per backend and window, not one per refused request.
    if (known?.end !== (end ?? Infinity) || known.text !== schedule.text) {
      this.refusedUntil.set(backend.key, { text: schedule.text, end: end ?? Infinity })
      this.events.emit({ type: 'wake.refused', ...ref(backend), code: error.code, reason: error.message, retry_after_s: retryAfter })
    }
    return error
  }

  private wakeGroup(backend: Backend): Promise<void> {
    const group = backend.info.group
    if (group !== undefined) {
      for (const other of this.backends.values()) {
        // A sibling inside its own asleep_during window stays asleep: a request to another
        // member must not start what the window keeps off (its own requests get 503).
        if (other !== backend && other.provider === backend.provider && other.info.group === group && other.phase !== 'running' && (other.settings.always_on || this.scheduleRefusal(other) === undefined)) {
          other.wake().catch(() => undefined) // its own failure is logged by the backend
        }
      }
    }
    return backend.wake()
  }

  /**
   * One idle sweep: backends (or whole groups) idle past their idle_timeout are put to sleep.
   * A group sleeps only when every routed member is idle or already asleep.
   */
  sweep(now = this.deps.now()): Promise<boolean[]> {
    const groups = new Map<string, Backend[]>()
    const work: Promise<boolean>[] = []
    const wall = this.deps.wallNow()
    for (const backend of this.backends.values()) {
      backend.shareTick(now)
      const scheduled = scheduleAt(backend.settings, wall)
      if (scheduled === 'asleep' && !backend.settings.always_on) {
        // An asleep_during window: new requests are refused from its start (503), and the
        // backend is put to sleep once those in flight have ended.
        backend.drain(true)
        if (backend.maySleepEarly(now) && now >= (this.scheduledSleepAt.get(backend.key) ?? -Infinity)) work.push(this.sleepForSchedule(backend, now))
        continue
      }
      backend.drain(false)
      if (scheduled === 'awake') this.wakeForSchedule(backend, now)
      const group = backend.info.group
      if (group === undefined) {
        if (backend.isIdle(now)) work.push(backend.sleepIfIdle())
        continue
      }
      const key = `${providerId(backend.provider)}:${group}`
      let members = groups.get(key)
      if (!members) groups.set(key, (members = []))
      members.push(backend)
    }
    const groupWork: Promise<boolean[]>[] = []
    for (const members of groups.values()) {
      // Shared engines: also a member up in the engine that this sidecar never routed (another
      // sidecar woke it): its token must be quiet too before the group sleeps.
      const awake = members.filter((b) => b.phase !== 'asleep' || (b.provider.shared !== undefined && b.upInEngine))
      if (awake.length > 0 && awake.every((b) => b.isIdle(now))) {
        // A member kept awake by awake_during keeps the whole group: only its refusal is reported.
        const held = awake.filter((b) => scheduleAt(b.settings, wall) === 'awake')
        if (held.length > 0) for (const b of held) work.push(b.sleepIfIdle())
        else groupWork.push(this.sleepGroup(awake))
        continue
      }
      // Shared engines: a member with traffic here while a sibling is at 0 in the engine (a group
      // sleep split elsewhere, or a sibling slept by hand): wake the sibling, as a request would.
      if (members[0]?.provider.shared !== undefined && members.some((b) => b.phase === 'running' && !b.isIdle(now))) {
        for (const b of members) if (b.phase === 'asleep' && !b.upInEngine) this.wake(b).catch(() => undefined) // failures are events
      }
    }
    return Promise.all([Promise.all(work), ...groupWork]).then((done) => done.flat())
  }

  /**
   * A group sleeps together: every member's busy_cpu is read first, and one busy member keeps
   * them all. Then member by member, routed members (with hosts) first and dependencies last,
   * stopping at the first member that does not go to sleep (a refusal: on a shared engine
   * another sidecar wrote its token since): never a sibling put to sleep under a member that
   * stays up. A member that slept before a later refusal is woken by the next request or by
   * the sweep's group rule.
   */
  private async sleepGroup(awake: readonly Backend[]): Promise<boolean[]> {
    const busy = await Promise.all(awake.map((b) => b.busyNow()))
    if (busy.some(Boolean)) return awake.map(() => false)
    const ordered = [...awake.filter((b) => b.info.hosts.length > 0), ...awake.filter((b) => b.info.hosts.length === 0)]
    const done: boolean[] = []
    for (const b of ordered) {
      const slept = await b.sleepIfIdle({ busyChecked: true })
      done.push(slept)
      if (!slept) break
    }
    return [...done, ...ordered.slice(done.length).map(() => false)]
  }

  /**
   * Put to sleep for an asleep_during window; a failed or refused attempt (the engine, another
   * sidecar saw traffic) is retried after max(idle_timeout, 10s), not on every sweep tick.
   */
  private sleepForSchedule(backend: Backend, now: number): Promise<boolean> {
    return backend.sleepFor('schedule', `asleep_during: ${backend.settings.asleep_during?.text ?? ''}`).then((o) => {
      if (o.result === 'failed' || o.result === 'refused') this.scheduledSleepAt.set(backend.key, now + Math.max(backend.settings.idle_timeout, SCHEDULED_WAKE_RETRY_MS))
      else this.scheduledSleepAt.delete(backend.key)
      return o.result === 'done'
    })
  }

  /**
   * Inside an awake_during window an asleep backend is woken (its group too); a failed or
   * refused attempt is retried after max(wake_timeout, 10s), not on every sweep.
   */
  private wakeForSchedule(backend: Backend, now: number): void {
    if (backend.removed || backend.phase !== 'asleep' || backend.info.state === 'running') return
    if (now < (this.scheduledWakeAt.get(backend.key) ?? -Infinity)) return
    this.scheduledWakeAt.set(backend.key, now + Math.max(backend.settings.wake_timeout, SCHEDULED_WAKE_RETRY_MS))
    this.wake(backend).catch(() => undefined) // failures are events (wake.failed, wake.refused)
  }

  /**
   * A token write or verify read found `backend` at 0 in the engine (another sidecar slept it,
   * maybe with its group): wake it like a request would (its asleep siblings too, within
   * max_awake and the schedules); siblings still running here (their view update has not
   * arrived) write a token now, which answers `asleep` if they are at 0 too and wakes them.
   */
  private foundAsleep(backend: Backend): void {
    this.wake(backend).catch(() => undefined) // failures are events (wake.failed, wake.refused)
    const group = backend.info.group
    if (group === undefined) return
    for (const other of this.backends.values()) {
      if (other !== backend && other.provider === backend.provider && other.info.group === group && other.phase === 'running') other.sharer?.checkNow(this.deps.now())
    }
  }


  /** Start the idle sweep: every second, or faster when idle timeouts are short. */
  startIdleWatcher(tickMs = Math.min(1000, Math.max(50, Math.floor(this.config.min_idle_timeout / 10)))): void {
    const timer = setInterval(() => {
      this.sweep().catch((err: unknown) => this.log.error({ err }, 'idle sweep failed'))
    }, tickMs)
    timer.unref()
    this.timers.push(timer)
  }

  /** The access log lost its connection: lines may be lost, so in-flight counts are unreliable. */
  resetInflight(): void {
    for (const b of this.backends.values()) b.forgetInflight()
  }

  // ---- reload: see RegistryReload below ----

  applySettings(config: RegistryConfig): void {
    this.config = config
    this.applyCaps(config)
    this.deps.wakeQueue.concurrency = config.max_concurrent_wakes
    this.deps.sleepQueue.concurrency = config.max_concurrent_sleeps
    this.warnedSettings.clear()
    for (const b of this.backends.values()) b.reconfigure(this.resolveSettings(b.provider, b.info))
    this.rebuild() // base_domains may have changed
    for (const p of this.providers) this.startResyncTimer(p) // resync_interval may have changed
  }

  async addProvider(provider: Provider): Promise<void> {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'sidecar is shutting down')
    if (this.providers.some((p) => providerId(p) === providerId(provider))) throw new Error(`a provider with the id "${providerId(provider)}" is already running`)
    this.providers = [...this.providers, provider]
    await this.resync(provider)
    this.follow(provider)
    this.startResyncTimer(provider)
    await this.wakeAlwaysOn(provider)
  }

  removeProvider(provider: Provider): void {
    this.unfollow(provider)
    this.providers = this.providers.filter((p) => p !== provider)
    for (const b of [...this.backends.values()]) if (b.provider === provider) this.remove(b)
    this.status.delete(providerId(provider))
    this.rebuild()
  }

  async providerReconfigured(provider: Provider): Promise<void> {
    await this.resync(provider)
    this.startResyncTimer(provider)
    await this.wakeAlwaysOn(provider)
  }

  async replaceProvider(old: Provider, next: Provider): Promise<void> {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'sidecar is shutting down')
    const listedAt = this.deps.now()
    const bound = withDeadline(this.closer.signal, LIST_TIMEOUT_MS)
    let infos: BackendInfo[]
    try {
      infos = await next.list(bound.signal)
    } finally {
      bound.clear()
    }
    // From here on synchronous: no request sees a moment without the provider's hosts.
    this.unfollow(old)
    const previous = new Map<string, Backend>()
    for (const b of [...this.backends.values()]) {
      if (b.provider !== old) continue
      previous.set(b.key, b)
      this.backends.delete(b.key)
    }
    this.providers = this.providers.map((p) => (p === old ? next : p))
    for (const info of infos) {
      this.upsert(next, info, listedAt)
      const key = `${providerId(next)}:${info.id}`
      const before = previous.get(key)
      if (before) {
        this.backends.get(key)?.carryActivityFrom(before)
        previous.delete(key)
      }
    }
    for (const gone of previous.values()) {
      gone.markRemoved()
      gone.log.info('removed')
    }
    this.status.set(providerId(next), { ok: true, backends: infos.length, lastList: Date.now() })
    this.rebuild()
    this.follow(next)
    this.startResyncTimer(next)
    await this.wakeAlwaysOn(next)
  }

  /** Stop timers and watches and abort operations. Idempotent. Providers are closed by their owner. */
  close(): void {
    if (this.closed) return
    this.closed = true
    for (const t of this.timers) clearInterval(t)
    this.timers = []
    for (const t of this.resyncTimers.values()) clearInterval(t)
    this.resyncTimers.clear()
    for (const off of this.reconnectSubs.values()) off()
    this.reconnectSubs.clear()
    this.closer.abort(new RelightError('RELIGHT_ERR_CLOSED', 'sidecar is shutting down'))
  }
}

/** Reload support (sidecar/reload.ts decides what changed, per provider id; these apply it). */
export interface RegistryReload {
  /** New registry settings, live: defaults, min_idle_timeout, base_domains, resync_interval, caps. */
  applySettings(config: RegistryConfig): void
  /** New max_awake caps only (provider blocks changed; the other registry keys did not). */
  applyCaps(config: RegistryConfig): void
  /** List a new provider and follow it; its hosts are routable when this resolves. */
  addProvider(provider: Provider): Promise<void>
  /** A provider changed its own config in place (process apps): list it again, restart its timer. */
  providerReconfigured(provider: Provider): Promise<void>
  /** Its backends go at once (their hosts answer 404); the caller closes the provider. */
  removeProvider(provider: Provider): void
  /**
   * Swap instances (same id) without a routing gap; rejects (old one kept) when `next` cannot
   * be listed.
   */
  replaceProvider(old: Provider, next: Provider): Promise<void>
}

function sameHosts(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((h, i) => h === b[i])
}

/** max_awake of the top level and of each provider block. */
export function capsOf(config: RegistryConfig): CapacityLimits {
  const perProvider = new Map<string, number>()
  for (const blocks of Object.values(config.providers ?? {})) {
    for (const block of blocks ?? []) if (block.max_awake !== undefined) perProvider.set(block.id, block.max_awake)
  }
  return { global: config.max_awake, perProvider }
}

function ref(backend: Backend): { key: string; name: string; provider: string } {
  return { key: backend.key, name: backend.info.name, provider: providerId(backend.provider) }
}
