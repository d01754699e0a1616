/**
 * The Swarm provider's one view of the engine (docs/plans/issue-21-shared-decisions.md §4.1):
 * a cache of our services fed by the service event stream, which the operations read instead of
 * asking the engine, and through which every write of this sidecar goes.
 *
 * - A write's own `update` event is recognised by its time: the event's `timeNano` is the
 *   service's `UpdatedAt` (probed on Docker 20.10: equal to the ns), compared in µs with a
 *   tolerance of 1 (the JSON number has 256 ns steps). Own events change nothing visible.
 * - Someone else's write moves the observation (`seenAt` = now, monotonic) and schedules one
 *   coalesced inspect (routing facts, the CAS version, the token's `ago_ms`); no task list.
 * - The stream reopens promptly (200 ms doubling to 2 s, reset when a stream opens), re-lists at
 *   once, and only then counts as live: every `seenAt` is reset to the reconnect time, so nothing
 *   sleeps for one idle_timeout after an outage.
 */
import type { Logger } from 'pino'
import { toRelightError } from '../../core/errors.js'
import type { Observation } from '../../core/shared.js'
import { delay, withDeadline } from '../../core/timers.js'
import { domainLabel } from '../kit/labels.js'
import { Reconnect } from '../kit/reconnect.js'
import { KeyedLock } from '../moby/keyed-lock.js'
import type { MobyEvent } from '../moby/events.js'
import { sharedLabels, tokenAgoMs } from './labels.js'
import { type Service, type ServiceSpec, type SwarmServices, eventMicros, isOutOfSequence, parseUpdatedAt, sameMicros } from './services.js'
import { TaskWatch } from './task-watch.js'

/** Reconnect schedule of the view's event stream: a stale view must not last (issue 21: 7.5 s measured with 500 ms → 30 s). */
export const CLUSTER_VIEW_BACKOFF = { firstMs: 200, maxMs: 2_000 } as const
/** A stream that closes within this time with no event does not reset the backoff. */
const STABLE_OPEN_MS = 1_000
/** The re-list after a (re)connect must answer within this, or the stream is reopened. */
const RELIST_TIMEOUT_MS = 10_000
/** Bounded reads in a row that must fail or time out before the view counts as not live. */
const SLOW_READS_NOT_LIVE = 2
/** Own writes remembered per service (their UpdatedAt). */
const OWN_KEPT = 8

export interface ServiceEntry {
  /** Last read (list, inspect or read-back); its Version.Index is the CAS version unless `stale`. */
  service: Service
  /** Newest change seen (event time or read UpdatedAt), µs. */
  lastChangeUs: bigint
  /** Monotonic ms when `lastChangeUs` was first seen here (reset on reconnect). */
  seenAt: number
  /** The token's `ago_ms` at `lastChangeUs`, once a read showed it; else 0. */
  agoMs: number
  /** An event newer than `service` arrived: read before the next CAS. */
  stale: boolean
  /** Events of someone else's writes handled so far: a read started before one of them is older than it. */
  events: number
  /** UpdatedAt of our last writes (read back). */
  readonly ownUs: bigint[]
  /** Own writes in flight: this service's events wait for them (our event may beat our POST's answer). */
  writing: number
  readonly queued: MobyEvent[]
}

export interface ViewHooks {
  /** Someone else changed what routing sees (a service appeared, its labels or its replica count changed). */
  changed(service: Service): void
  /** The service is gone or no longer ours. */
  removed(id: string): void
  /** The stream (re)connected: events may have been missed (the registry lists). */
  resync(): void
  /** The view stopped (false, with why) or started again (true) following the engine. */
  connection(up: boolean, reason?: string): void
}

export interface ViewOptions {
  readonly prefix: string
  readonly now: () => number
  /** At most one inspect per service per this many ms after someone else's writes (default 1000). */
  readonly inspectEveryMs?: number
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number }
  /** Task poll pauses (tests). */
  readonly taskPollMs?: readonly number[]
}

/** A spec edit that decides to write nothing. */
export const SKIP = Symbol('skip')

export class SwarmView {
  private readonly entries = new Map<string, ServiceEntry>()
  private readonly watches = new Map<string, TaskWatch>()
  private readonly locks = new KeyedLock()
  private readonly reconnectListeners = new Set<() => void>()
  private readonly pendingInspects = new Map<string, { inspecting: boolean; again: boolean; lastAt: number }>()
  private readonly labels: ReturnType<typeof sharedLabels>
  private readonly closer = new AbortController()
  private stream: AbortController | undefined
  private everLive = false
  /** Bounded reads in a row that did not answer in time. */
  private slowReads = 0
  private _live = false
  private hooks: ViewHooks = { changed: () => undefined, removed: () => undefined, resync: () => undefined, connection: () => undefined }

  constructor(
    private readonly api: SwarmServices,
    private readonly log: Logger,
    private readonly options: ViewOptions,
  ) {
    this.labels = sharedLabels(options.prefix)
  }

  /** The view's monotonic clock (ms). */
  now(): number {
    return this.options.now()
  }

  /** The view follows the engine now (stream open, re-listed since). */
  get live(): boolean {
    return this._live
  }

  entry(id: string): ServiceEntry | undefined {
    return this.entries.get(id)
  }

  ids(): string[] {
    return [...this.entries.keys()]
  }

  observe(id: string): Observation | undefined {
    const e = this.entries.get(id)
    if (!e) return undefined
    return { version: String(e.lastChangeUs), seenAt: e.seenAt, agoMs: e.agoMs, live: this._live }
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener)
    return () => this.reconnectListeners.delete(listener)
  }

  /** Follow the service events until `signal` aborts or the view closes (never rejects). */
  start(hooks: ViewHooks, signal: AbortSignal): void {
    this.hooks = hooks
    const stop = AbortSignal.any([signal, this.closer.signal])
    void this.follow(stop)
  }

  /**
   * The engine did not answer in time (a frozen engine sends nothing and closes nothing): the
   * view is not live until the stream was reopened and the services re-listed.
   */
  markNotLive(why: string): void {
    if (this._live) this.log.warn({ reason: why }, 'swarm view not live; reopening the event stream and re-listing')
    this.down(why)
    this.stream?.abort(new Error(why))
  }

  private down(why: string): void {
    if (!this._live) return
    this._live = false
    this.safely('connection', () => this.hooks.connection(false, why))
  }

  /** Call a hook or listener: one that throws is logged, never an unhandled rejection of the stream loop. */
  private safely(what: string, fn: () => void): void {
    try {
      fn()
    } catch (err) {
      this.log.error({ hook: what, err: (err as Error).message }, 'a swarm view listener threw')
    }
  }

  // ── reads and writes ──────────────────────────────────────────────────────────────────────

  /** One shared task poller per service. */
  tasks(id: string): TaskWatch {
    let w = this.watches.get(id)
    if (!w) {
      w = new TaskWatch(this.api, id, this.closer.signal, this.options.taskPollMs, (err) =>
        this.log.warn({ service: id, err: (err as Error).message }, 'listing tasks failed; polling on with backoff'),
      )
      this.watches.set(id, w)
    }
    return w
  }

  /** The services this view follows: the routed ones (domain label) and, when any is in a group, the groups' members. */
  async listOurs(signal: AbortSignal): Promise<Service[]> {
    const routed = await this.api.list({ label: [domainLabel(this.options.prefix)] }, signal)
    const groupKey = `${this.options.prefix}.group`
    if (!routed.some((s) => s.Spec.Labels?.[groupKey] !== undefined)) return routed
    const members = await this.api.list({ label: [groupKey] }, signal)
    const seen = new Set(routed.map((s) => s.ID))
    return [...routed, ...members.filter((s) => !seen.has(s.ID))]
  }

  /** A complete list of our services: entries follow it (a missed event counts as a change seen now). */
  absorbList(services: readonly Service[]): void {
    const present = new Set<string>()
    for (const s of services) {
      present.add(s.ID)
      this.absorb(s, false)
    }
    for (const id of [...this.entries.keys()]) {
      if (!present.has(id) && this.entries.get(id)?.writing === 0) {
        // Removed (or lost our labels) while the stream was down: no event will say so.
        this.entries.delete(id)
        this.watches.delete(id)
        this.pendingInspects.delete(id)
        this.safely('removed', () => this.hooks.removed(id))
      }
    }
  }

  /**
   * A read of one service (inspect): the entry follows it. `emit`: tell the hooks when routing
   * changed. `eventsAtRead`: the entry's event count when the read started; a read older than an
   * event handled since changes nothing (it would clear `stale` with what the event superseded).
   */
  absorb(s: Service, emit: boolean, eventsAtRead?: number): ServiceEntry | undefined {
    if (eventsAtRead !== undefined) {
      const current = this.entries.get(s.ID)
      if (current && current.events !== eventsAtRead) return current
    }
    if (!this.isOurs(s)) {
      if (this.entries.delete(s.ID) && emit) this.hooks.removed(s.ID)
      return undefined
    }
    const us = parseUpdatedAt(s.UpdatedAt) ?? 0n
    const now = this.options.now()
    const e = this.entries.get(s.ID)
    if (!e) {
      const entry: ServiceEntry = {
        service: s,
        lastChangeUs: us,
        seenAt: now,
        agoMs: tokenAgoMs(s.Spec.Labels?.[this.labels.activity]),
        stale: false,
        events: 0,
        ownUs: [],
        writing: 0,
        queued: [],
      }
      this.entries.set(s.ID, entry)
      if (emit) this.hooks.changed(s)
      return entry
    }
    const before = e.service
    // Version.Index is the raft index: it only grows (UpdatedAt may step back after a leader change).
    if (s.Version.Index < before.Version.Index) return e
    e.service = s
    e.stale = false
    if (!sameMicros(us, e.lastChangeUs)) {
      // A change no event told us of (missed, or read before its event): seen now. UpdatedAt comes
      // from the leader's clock and may step back after a leader change: equality only.
      if (!this.isOwn(e, us)) {
        e.lastChangeUs = us
        e.seenAt = now
      }
    }
    if (sameMicros(us, e.lastChangeUs)) {
      // The exact µs of the read replace the event's (a double: ±1 µs), so every view names a write alike.
      e.lastChangeUs = us
      if (!this.isOwn(e, us)) e.agoMs = tokenAgoMs(s.Spec.Labels?.[this.labels.activity])
    }
    if (emit && routingKey(before, this.options.prefix) !== routingKey(s, this.options.prefix)) this.hooks.changed(s)
    return e
  }

  /**
   * Read the service now, bounded by `timeoutMs` (the fresh read before a scale-down). A bounded
   * read that fails or does not answer in time rethrows and:
   * - the first time, restarts only THIS service's idle clock (seenAt = now): one slow answer of
   *   a loaded but working manager must not restart every service's clock (review R9);
   * - the second time in a row (no bounded read answered in time between), marks the view not
   *   live (a frozen engine sends nothing and closes nothing): the stream reopens, re-lists, and
   *   every seenAt is reset.
   * Updates the entry (no hooks).
   */
  async read(id: string, signal: AbortSignal, timeoutMs?: number): Promise<Service> {
    const bound = timeoutMs === undefined ? undefined : withDeadline(signal, timeoutMs)
    let s: Service
    const eventsAtRead = this.entries.get(id)?.events
    try {
      s = await this.api.inspect(id, bound?.signal ?? signal)
    } catch (err) {
      if (timeoutMs !== undefined && !signal.aborted && !isNotFound(err)) {
        const why = `the engine did not answer a read of service ${id} within ${timeoutMs} ms`
        if (++this.slowReads >= SLOW_READS_NOT_LIVE) {
          this.slowReads = 0
          this.markNotLive(`${why} (${SLOW_READS_NOT_LIVE} in a row)`)
        } else {
          const e = this.entries.get(id)
          if (e) {
            e.seenAt = this.options.now()
            e.agoMs = 0
          }
          this.log.warn({ service: id, reason: why }, 'engine slow: this service stays up; its idle time starts again')
        }
      }
      throw err
    } finally {
      bound?.clear()
    }
    if (timeoutMs !== undefined) this.slowReads = 0
    this.absorb(s, false, eventsAtRead)
    return s
  }

  /**
   * Write service `id`, serialised per service in this sidecar: start from `from` (a read the
   * caller judged), a fresh read (`'fresh'`, or the cached one is stale), or the cached one;
   * `edit` answers the spec to write (SKIP: nothing). The update carries the version read, so a
   * write by anyone since makes the engine refuse it (`isOutOfSequence`; the entry turns stale).
   * Then one read-back records the write as ours. Answers the read-back (undefined when it
   * failed; the write stands) and the service the edit saw.
   */
  async write(
    id: string,
    edit: (s: Service) => ServiceSpec | typeof SKIP,
    signal: AbortSignal,
    from: Service | 'fresh' | 'cached' = 'cached',
  ): Promise<{ readonly base: Service; readonly written?: Service; readonly skipped: boolean }> {
    return this.locks.run(id, async () => {
      let entry = this.entries.get(id)
      if (entry) entry.writing++
      try {
        let base: Service
        if (typeof from === 'object') base = from
        else if (from === 'cached' && entry && !entry.stale) base = entry.service
        else base = await this.read(id, signal)
        if (!entry) {
          entry = this.entries.get(id)
          if (entry) entry.writing++
        }
        const spec = edit(base)
        if (spec === SKIP) return { base, skipped: true }
        try {
          await this.api.update(base.ID, base.Version.Index, spec, signal)
        } catch (err) {
          if (isOutOfSequence(err) && entry) entry.stale = true
          throw err
        }
        let written: Service | undefined
        try {
          written = await this.api.inspect(id, signal)
        } catch (err) {
          if (entry) entry.stale = true
          this.log.debug({ service: id, err: (err as Error).message }, 'read-back after a write failed; its event will count as someone else\'s')
          return { base, skipped: false }
        }
        const us = parseUpdatedAt(written.UpdatedAt)
        if (!showsWrite(written, spec)) {
          // Someone else wrote between our update and this read: that write is theirs (it moves
          // the observation and may change routing); our own event will count as foreign too.
          this.log.debug({ service: id }, 'read-back shows a later write by someone else')
          // Judge their change against what we wrote (our scale-down, then their scale-up: an upsert).
          if (entry) entry.service = { ...base, Spec: spec }
          this.absorb(written, true)
          return { base, written, skipped: false }
        }
        entry = this.entries.get(id) ?? this.absorb(written, false)
        if (entry && us !== undefined) {
          entry.ownUs.push(us)
          if (entry.ownUs.length > OWN_KEPT) entry.ownUs.shift()
          entry.service = written
          entry.stale = false
          entry.lastChangeUs = us
          entry.seenAt = this.options.now()
          entry.agoMs = tokenAgoMs(written.Spec.Labels?.[this.labels.activity])
        }
        return { base, written, skipped: false }
      } finally {
        const e = this.entries.get(id) ?? entry
        if (e && e.writing > 0) {
          e.writing--
          if (e.writing === 0) this.flush(e)
        }
      }
    })
  }

  /** A read showed a change (sleepIf): seen now. */
  noteChange(id: string, us: bigint): void {
    const e = this.entries.get(id)
    if (!e || sameMicros(e.lastChangeUs, us) || this.isOwn(e, us)) return
    e.lastChangeUs = us
    e.seenAt = this.options.now()
    e.agoMs = 0
  }

  // ── events ────────────────────────────────────────────────────────────────────────────────

  /** One event of the service stream (public for the ordering tests). */
  handle(event: MobyEvent): void {
    const id = event.Actor?.ID ?? event.id
    if (!id || event.Type !== undefined && event.Type !== 'service') return
    const e = this.entries.get(id)
    if (event.Action === 'remove') {
      this.pendingInspects.delete(id)
      if (e) {
        this.entries.delete(id)
        this.watches.delete(id)
        this.hooks.removed(id)
      }
      return
    }
    if (!e) {
      // A service we do not follow (yet): it may have just got our labels. Non-relight services
      // cost one coalesced inspect per write burst.
      this.scheduleInspect(id)
      return
    }
    if (e.writing > 0) {
      e.queued.push(event)
      return
    }
    // Without timeNano (Docker sends it since API 1.22) the time is whole seconds: unknown, so a change.
    const us = eventMicros(event.timeNano)
    if (us !== undefined && this.isOwn(e, us)) return
    if (us !== undefined && sameMicros(us, e.lastChangeUs)) return // already read (a read-back or inspect beat the event)
    // A write older than the last read is in that read already (its change was seen then). The
    // fresh read before any scale-down compares UpdatedAt for equality, so a clock that stepped
    // back after a leader change cannot make this skip a change that matters.
    const readUs = parseUpdatedAt(e.service.UpdatedAt)
    if (us !== undefined && readUs !== undefined && us < readUs) return
    e.lastChangeUs = us ?? e.lastChangeUs + 1n
    e.seenAt = this.options.now()
    e.agoMs = 0
    e.stale = true
    e.events++
    const replicas = event.Actor?.Attributes?.['replicas.new']
    const old = event.Actor?.Attributes?.['replicas.old']
    if (replicas !== undefined && Number.isInteger(Number(replicas))) {
      const n = Number(replicas)
      const spec = e.service.Spec
      e.service = { ...e.service, Spec: { ...spec, Mode: { ...spec.Mode, Replicated: { ...spec.Mode?.Replicated, Replicas: n } } } }
      // Up to up (1 → 2) changes nothing routing can use before the next read.
      if (n === 0 || Number(old ?? 0) === 0) this.hooks.changed(e.service)
    }
    this.scheduleInspect(id)
  }

  private flush(e: ServiceEntry): void {
    const events = e.queued.splice(0)
    for (const ev of events) this.handle(ev)
  }

  private isOwn(e: ServiceEntry, us: bigint): boolean {
    return e.ownUs.some((own) => sameMicros(own, us))
  }

  private isOurs(s: Service): boolean {
    const labels = s.Spec.Labels ?? {}
    return labels[domainLabel(this.options.prefix)] !== undefined || labels[`${this.options.prefix}.group`] !== undefined
  }

  /** At most one inspect in flight and one per `inspectEveryMs` per service. */
  private scheduleInspect(id: string): void {
    let p = this.pendingInspects.get(id)
    if (!p) this.pendingInspects.set(id, (p = { inspecting: false, again: false, lastAt: -Infinity }))
    if (p.inspecting) {
      p.again = true
      return
    }
    p.inspecting = true
    const state = p
    void (async () => {
      try {
        do {
          state.again = false
          const wait = state.lastAt + (this.options.inspectEveryMs ?? 1_000) - this.options.now()
          if (wait > 0) await delay(wait, this.closer.signal)
          state.lastAt = this.options.now()
          const eventsAtRead = this.entries.get(id)?.events
          try {
            const bound = withDeadline(this.closer.signal, RELIST_TIMEOUT_MS)
            let s: Service
            try {
              s = await this.api.inspect(id, bound.signal)
            } finally {
              bound.clear()
            }
            const e = this.entries.get(id)
            if (e && e.writing > 0) continue // our own write reads it back
            this.absorb(s, true, eventsAtRead)
          } catch (err) {
            if (isNotFound(err) && this.entries.delete(id)) this.hooks.removed(id)
            else if (!this.closer.signal.aborted) this.log.debug({ service: id, err: (err as Error).message }, 'inspect after a service event failed; the next resync corrects it')
          }
        } while (state.again && !this.closer.signal.aborted)
      } catch {
        // closed
      } finally {
        state.inspecting = false
      }
    })()
  }

  private async follow(stop: AbortSignal): Promise<void> {
    const retry = new Reconnect(this.options.backoff ?? CLUSTER_VIEW_BACKOFF)
    while (!stop.aborted) {
      const stream = new AbortController()
      this.stream = stream
      const signal = AbortSignal.any([stop, stream.signal])
      let openedAt: number | undefined
      let events = 0
      try {
        const iterator = await this.api.events({ type: ['service'], event: ['create', 'update', 'remove'] }, signal)
        openedAt = this.options.now()
        const relist = withDeadline(signal, RELIST_TIMEOUT_MS)
        let services: Service[]
        try {
          services = await this.listOurs(relist.signal)
        } finally {
          relist.clear()
        }
        this.absorbList(services)
        this.goLive()
        if (retry.failures > 0) this.log.info({ after_failures: retry.failures }, 'swarm event stream reconnected')
        retry.resetFailures()
        this.safely('resync', () => this.hooks.resync())
        for await (const event of iterator) {
          if (signal.aborted) break
          events++
          if (event && typeof event === 'object') this.handle(event)
        }
        if (!stop.aborted) this.log.warn('swarm event stream ended; reconnecting')
      } catch (err) {
        if (stop.aborted) break
        const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
        if (retry.failed()) {
          this.log.warn({ code: error.code, err: error.message, failures: retry.failures, retry_ms: retry.delayMs }, 'swarm event stream failed; reconnecting')
        }
      }
      this.down('the swarm event stream broke')
      stream.abort(new Error('reopening the swarm event stream'))
      if (stop.aborted) break
      // Reset when a stream opened (the measured 7.5 s reopen), unless it closed at once with nothing.
      if (openedAt !== undefined && (events > 0 || this.options.now() - openedAt >= STABLE_OPEN_MS)) retry.resetDelay()
      try {
        await retry.wait(stop)
      } catch {
        break
      }
    }
    this._live = false
  }

  private goLive(): void {
    const now = this.options.now()
    for (const e of this.entries.values()) e.seenAt = now
    const again = this.everLive
    this.everLive = true
    this._live = true
    this.safely('connection', () => this.hooks.connection(true))
    if (again) for (const l of this.reconnectListeners) this.safely('reconnect', l)
  }

  close(): void {
    this.closer.abort()
    this._live = false
  }
}

/** The read-back carries what we wrote (labels exactly, with the token's random part, and the replica count). */
function showsWrite(read: Service, wrote: ServiceSpec): boolean {
  const a = read.Spec.Labels ?? {}
  const b = wrote.Labels ?? {}
  const keys = new Set([...Object.keys(a), ...Object.keys(b)])
  for (const k of keys) if (a[k] !== b[k]) return false
  return (read.Spec.Mode?.Replicated?.Replicas ?? 0) === (wrote.Mode?.Replicated?.Replicas ?? 0)
}

function isNotFound(err: unknown): boolean {
  return (err as { code?: string } | undefined)?.code === 'RELIGHT_ERR_BACKEND_NOT_FOUND'
}

/** What routing uses of a service: its spec without the labels the sidecars write. */
function routingKey(s: Service, prefix: string): string {
  const labels = { ...(s.Spec.Labels ?? {}) }
  const shared = sharedLabels(prefix)
  delete labels[shared.activity]
  delete labels[shared.lastActivity]
  delete labels[shared.asleepSince]
  delete labels[shared.asleepReplicas]
  return JSON.stringify({ ...s.Spec, Labels: labels })
}
