/**
 * A SharedEngine (core/shared.ts) whose answers the test scripts, and a MemoryProvider that
 * offers it: the core's shared-decision rules tested without an engine. Observations live in a
 * map the test edits (`foreignWrite`, `disconnect`, `reconnect`); the clock is the test's.
 */
import { RelightError, throwIfAborted } from '../../sidecar/core/errors.js'
import type { ActivityAnswer, Observation, SharedEngine, SleepIfAnswer } from '../../sidecar/core/shared.js'
import type { SleepMode } from '../../sidecar/core/provider.js'
import { deferred, type MemoryBackend, MemoryProvider } from './memory-provider.js'

export class FakeSharedEngine implements SharedEngine {
  readonly observations = new Map<string, Observation>()
  readonly calls = {
    recordActivity: [] as { id: string; agoMs: number }[],
    sleepIf: [] as { id: string; unchangedSince: string }[],
    refresh: [] as string[],
  }
  /** When set, recordActivity waits for it (the test resolves it). */
  holdRecord: Promise<void> | undefined
  /** When set, recordActivity rejects with it (until cleared). */
  failRecord: RelightError | undefined
  /** When set, recordActivity answers `asleep` (another sidecar slept it). */
  recordAsleep = false
  /** What refresh answers (after `holdRefresh`, if set). */
  refreshAnswer: 'awake' | 'asleep' | 'gone' = 'awake'
  holdRefresh: Promise<void> | undefined
  /** Called when sleepIf starts, before it compares (a write racing the decision). */
  beforeSleepIf: ((id: string) => void) | undefined
  /** Called when sleepIf scaled a backend down (the provider marks it asleep). */
  onSlept: ((id: string) => void) | undefined
  private readonly listeners = new Set<() => void>()
  private counter = 0

  constructor(private readonly now: () => number) {}

  /** The view first sees `id` (a list): version `none`, seen now. */
  seen(id: string, init: Partial<Observation> = {}): void {
    this.observations.set(id, { version: 'none', seenAt: this.now(), agoMs: 0, live: true, ...init })
  }

  /** Another sidecar wrote a token for `id`; this view sees it now. */
  foreignWrite(id: string, agoMs = 0): string {
    const version = `foreign-${++this.counter}`
    const before = this.observations.get(id)
    this.observations.set(id, { version, seenAt: this.now(), agoMs, live: before?.live ?? true })
    return version
  }

  /** The view's stream broke: every observation is not live. */
  disconnect(): void {
    for (const [id, o] of this.observations) this.observations.set(id, { ...o, live: false })
  }

  /** The view re-listed: live again, every `seenAt` reset to now (core/shared.ts contract), listeners told. */
  reconnect(): void {
    for (const [id, o] of this.observations) this.observations.set(id, { ...o, seenAt: this.now(), live: true })
    for (const l of this.listeners) l()
  }

  observe(id: string): Observation | undefined {
    return this.observations.get(id)
  }

  async recordActivity(id: string, agoMs: number, signal: AbortSignal): Promise<ActivityAnswer> {
    throwIfAborted(signal)
    this.calls.recordActivity.push({ id, agoMs })
    if (this.holdRecord) await this.holdRecord
    if (this.failRecord) throw this.failRecord
    if (this.recordAsleep) return { state: 'asleep' }
    const before = this.observations.get(id)
    const observation = { version: `own-${++this.counter}`, seenAt: this.now(), agoMs, live: before?.live ?? true }
    this.observations.set(id, observation)
    return { state: 'awake', observation }
  }

  async refresh(id: string, signal: AbortSignal): Promise<'awake' | 'asleep' | 'gone'> {
    this.calls.refresh.push(id)
    if (this.holdRefresh) {
      await Promise.race([
        this.holdRefresh,
        new Promise((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      ])
    }
    throwIfAborted(signal)
    return this.refreshAnswer
  }

  async sleepIf(id: string, unchangedSince: string, signal: AbortSignal): Promise<SleepIfAnswer> {
    throwIfAborted(signal)
    this.calls.sleepIf.push({ id, unchangedSince })
    this.beforeSleepIf?.(id)
    const now = this.observations.get(id)
    if (now === undefined || now.version !== unchangedSince || !now.live) {
      const observation = now ?? { version: 'none', seenAt: this.now(), agoMs: 0, live: false }
      return { result: 'changed', observation }
    }
    this.onSlept?.(id)
    return { result: 'slept' }
  }

  onReconnect(listener: () => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}

/**
 * A MemoryProvider on a shared engine: list() makes the engine see each backend; sleepIf's
 * scale-down marks it asleep; `startFailure` resolves when the test calls `taskFailed`.
 * provider.sleep() (old path) is not used by the core for shared backends.
 */
export class SharedMemoryProvider extends MemoryProvider {
  readonly shared: FakeSharedEngine
  private failure = deferred<string>()

  constructor(backends: MemoryBackend[], now: () => number, options: { id?: string } = {}) {
    super(backends, { sleepModes: ['scale'] as SleepMode[], ...(options.id ? { id: options.id } : {}) })
    this.shared = new FakeSharedEngine(now)
    for (const b of backends) this.shared.seen(b.id)
    this.shared.onSlept = (id) => {
      const b = this.backends.get(id)
      if (b) b.state = 'scaled_to_zero'
    }
  }

  /** A task of `id` failed right after its start. */
  taskFailed(reason: string): void {
    this.failure.resolve(reason)
  }

  startFailure(_id: string, signal: AbortSignal): Promise<string> {
    const failure = this.failure.promise
    return new Promise<string>((resolve, reject) => {
      signal.addEventListener('abort', () => reject(new RelightError('RELIGHT_ERR_ABORTED', 'probe ended')), { once: true })
      failure.then(resolve, reject)
    })
  }
}
