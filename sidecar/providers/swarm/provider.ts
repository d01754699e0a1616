import { hostname } from 'node:os'
import type { Logger } from 'pino'
import { monotonicNow } from '../../core/clock.js'
import { RelightError, isRelightError } from '../../core/errors.js'
import type { BackendInfo, BackendSettings, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import type { ActivityAnswer, Observation, SharedEngine, SleepIfAnswer } from '../../core/shared.js'
import { delay, withDeadline } from '../../core/timers.js'
import { WarnOnce } from '../../core/warn-once.js'
import { settingsFrom } from '../../core/settings.js'
import { EngineClient } from '../moby/client.js'
import type { SwarmConfig } from './config.js'
import { SwarmContext, nameOf, replicasOf } from './context.js'
import { SWARM_SLEEP_MODES } from './descriptor.js'
import { sharedLabels } from './labels.js'
import { recordActivity } from './service-activity.js'
import { checkSwarm } from './service-check.js'
import { listServices } from './service-list.js'
import { sleepIf } from './service-sleep.js'
import { routedService, wakeService } from './service-wake.js'
import { type Service, SwarmServices } from './services.js'
import { startFailure } from './start-failure.js'
import { SwarmView } from './view.js'

/** Following a service someone else scaled up, until a task runs (Swarm has no task events). */
const FOLLOW_POLL_MS = 250
const FOLLOW_MAX_MS = 120_000

/** Service events that can change what the registry knows. */
export const WATCHED_ACTIONS = ['create', 'update', 'remove'] as const

export interface SwarmProviderOptions {
  /** Use this engine client instead of one built from `config.socket` (tests: recorded answers). */
  readonly engine?: EngineClient
  /** Use these engine calls instead (tests: an in-memory swarm shared by several provider instances). */
  readonly api?: SwarmServices
  /** The monotonic clock of the view (tests). */
  readonly now?: () => number
  /** Task poll pauses (tests). */
  readonly taskPollMs?: readonly number[]
  /** Minimum spacing of the view's inspects after someone else's writes (tests). */
  readonly inspectEveryMs?: number
}

/**
 * Docker Swarm services labelled `<prefix>.domain`, through a manager's Engine API. A service
 * is awake at its `<prefix>.replicas` count (default 1) and asleep at 0 replicas (mode
 * `scale`); upstreams are the host-mode published port of each running task.
 *
 * Several sidecars (one per edge node, each beside its Caddy) may drive the same services: they
 * decide together through the service itself (core/shared.ts, docs/plans/issue-21 §0). Every
 * write of activity puts a new token in the service (`<prefix>.activity`), which gives it a new
 * UpdatedAt that every sidecar's view sees as an event; a scale-down is written only with the
 * version of a fresh read that still shows the UpdatedAt the core judged idle, so a token written
 * since makes the engine refuse it. No wall-clock time from another host is compared.
 * The operations live one per file (service-*.ts, start-failure.ts); the view in view.ts.
 */
export class SwarmProvider implements Provider {
  readonly kind: string = 'swarm'
  readonly id: string
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = SWARM_SLEEP_MODES
  readonly api: SwarmServices
  readonly view: SwarmView
  readonly shared: SharedEngine
  private readonly ctx: SwarmContext
  private readonly engine: EngineClient
  private readonly configSettings: BackendSettings
  private readonly listeners = new Set<(event: ProviderEvent) => void>()
  private readonly warned = new WarnOnce()
  /** Services scaled up by someone else, followed until a task runs. */
  private readonly following = new Set<string>()
  private readonly closer = new AbortController()
  private started = false
  private closed = false

  constructor(
    config: SwarmConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    private readonly options: SwarmProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    this.engine =
      options.engine ??
      new EngineClient({ address: config.socket, name: 'docker', ...(config.api_version ? { apiPrefix: `/v${config.api_version}` } : {}) })
    this.api = options.api ?? new SwarmServices(this.engine)
    this.configSettings = settingsFrom(config)
    const now = options.now ?? monotonicNow
    this.view = new SwarmView(this.api, log, {
      prefix: config.label_prefix,
      now,
      ...(options.inspectEveryMs !== undefined ? { inspectEveryMs: options.inspectEveryMs } : {}),
      ...(options.taskPollMs ? { taskPollMs: options.taskPollMs } : {}),
    })
    const identity = config.identity ?? `${hostname()}/${process.pid}`
    this.ctx = new SwarmContext(this.kind, this.api, this.view, log, config.label_prefix, sharedLabels(config.label_prefix), identity, this.configSettings, this.warned)
    const ctx = this.ctx
    const view = this.view
    const open = () => this.assertOpen()
    this.shared = {
      observe: (id: string): Observation | undefined => view.observe(id),
      recordActivity: (id: string, agoMs: number, signal: AbortSignal): Promise<ActivityAnswer> => {
        open()
        return recordActivity(ctx, id, agoMs, signal)
      },
      refresh: async (id: string, signal: AbortSignal): Promise<'awake' | 'asleep' | 'gone'> => {
        open()
        let s: Service
        try {
          s = await view.read(id, signal)
        } catch (err) {
          if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) return 'gone'
          throw err
        }
        if (!ctx.toBackend(s, [])) return 'gone'
        return replicasOf(s) === 0 ? 'asleep' : 'awake'
      },
      sleepIf: (id: string, unchangedSince: string, signal: AbortSignal): Promise<SleepIfAnswer> => {
        open()
        return sleepIf(ctx, id, unchangedSince, signal)
      },
      onReconnect: (listener: () => void) => view.onReconnect(listener),
    }
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.assertOpen()
    const out = await listServices(this.ctx, signal)
    const present = new Set(this.view.ids())
    this.warned.prune((id) => present.has(id))
    return out
  }

  /** What the registry knows about a service; undefined when it is not routed. */
  toBackend(s: Service, tasks: Parameters<SwarmContext['toBackend']>[1]): BackendInfo | undefined {
    return this.ctx.toBackend(s, tasks)
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed) return
    const stop = AbortSignal.any([signal, this.closer.signal])
    this.listeners.add(onEvent)
    stop.addEventListener('abort', () => this.listeners.delete(onEvent), { once: true })
    if (this.started) return
    this.started = true
    this.view.start(
      {
        changed: (s) => void this.changed(s, stop),
        removed: (id) => {
          this.warned.forget(id)
          this.ctx.woke.delete(id)
          this.emit({ type: 'remove', id })
        },
        resync: () => this.emit({ type: 'resync' }),
        connection: (up, reason) => this.emit(up ? { type: 'connection', up } : { type: 'connection', up, ...(reason !== undefined ? { reason } : {}) }),
      },
      this.closer.signal,
    )
  }

  /** Someone else changed a service: its facts for the registry (a task list only when it is up). */
  private async changed(s: Service, signal: AbortSignal): Promise<void> {
    try {
      const tasks = replicasOf(s) === 0 ? [] : await this.api.tasks({ service: [s.ID], 'desired-state': ['running'] }, signal)
      await this.ctx.learnNodes(tasks, signal)
      const info = this.ctx.toBackend(s, tasks)
      this.emit(info ? { type: 'upsert', backend: info } : { type: 'remove', id: s.ID })
      if (info?.state === 'starting') this.followStarting(s.ID, signal)
    } catch (err) {
      if (!signal.aborted) this.log.debug({ service: s.ID, err: (err as Error).message }, 'reading a changed service failed; the resync corrects it')
    }
  }

  /**
   * A service someone else scaled up has no task running yet, and Swarm sends no task events: its
   * running tasks are listed every FOLLOW_POLL_MS (no inspect) until one runs, so the core can
   * adopt it (probe and route with no write). One follower per service; ends when the view says
   * it went back to 0 or is gone, or after FOLLOW_MAX_MS.
   */
  private followStarting(id: string, signal: AbortSignal): void {
    if (this.following.has(id)) return
    this.following.add(id)
    const bound = withDeadline(signal, FOLLOW_MAX_MS)
    const stop = bound.signal
    void (async () => {
      try {
        while (!stop.aborted) {
          await delay(FOLLOW_POLL_MS, stop)
          const entry = this.view.entry(id)
          if (!entry || replicasOf(entry.service) === 0) return
          const tasks = await this.api.tasks({ service: [id], 'desired-state': ['running'] }, stop)
          await this.ctx.learnNodes(tasks, stop)
          const info = this.ctx.toBackend(entry.service, tasks)
          if (!info) return
          if (info.state === 'running') {
            this.emit({ type: 'upsert', backend: info })
            return
          }
        }
      } catch (err) {
        if (!stop.aborted) this.log.debug({ service: id, err: (err as Error).message }, 'following a starting service failed; the resync corrects it')
      } finally {
        bound.clear()
        this.following.delete(id)
      }
    })()
  }

  private emit(event: ProviderEvent): void {
    for (const listener of this.listeners) listener(event)
  }

  // ── transitions ────────────────────────────────────────────────────────────────────────────

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    this.assertOpen()
    return wakeService(this.ctx, id, signal)
  }

  startFailure(id: string, signal: AbortSignal): Promise<string> {
    return startFailure(this.ctx, id, signal)
  }

  /**
   * Scale to 0 (mode `scale`) if nobody wrote the service since this sidecar's view last saw it
   * change: `sleepIf` on the observed version (the core calls `shared.sleepIf` itself for idle
   * and admin sleeps; this is the Provider contract's entry point).
   */
  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    this.assertOpen()
    this.ctx.throwIfAborted(signal)
    if (mode !== 'scale') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `swarm services sleep by scaling to 0 (scale), not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const service = await routedService(this.ctx, id, signal)
    if (replicasOf(service) === 0) return
    const obs = this.view.observe(id)
    if (!obs) throw this.ctx.refused(nameOf(service), 'this sidecar has not observed the service yet')
    const answer = await sleepIf(this.ctx, id, obs.version, signal)
    if (answer.result === 'changed') throw this.ctx.refused(nameOf(service), 'another sidecar wrote since (version changed)')
  }

  // ── check and lifecycle ────────────────────────────────────────────────────────────────────

  check(signal: AbortSignal): Promise<CheckResult[]> {
    return checkSwarm(this.ctx, this.engine.address.display, signal)
  }

  private assertOpen(): void {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the swarm provider is closed', { provider: this.kind })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    this.ctx.closeTimers()
    this.view.close()
    this.listeners.clear()
    if (!this.options.engine) await this.engine.close()
  }
}
