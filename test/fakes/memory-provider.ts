/**
 * An in-memory provider for unit tests of the core. Its backends' upstream is a real local HTTP
 * server (so readiness probes connect for real); wake and sleep can be held, failed or delayed.
 */
import { RelightError, throwIfAborted } from '../../sidecar/core/errors.js'
import type { BackendInfo, BackendSettings, BackendState, Provider, ProviderEvent, SleepMode } from '../../sidecar/core/provider.js'
import { stateForMode } from '../../sidecar/core/provider.js'

export interface MemoryBackend {
  id: string
  /** Default: the id. */
  name?: string
  hosts: string[]
  state: BackendState
  upstreams: string[]
  group?: string
  settings?: BackendSettings
}

export class MemoryProvider implements Provider {
  readonly kind: string
  readonly id: string | undefined
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[]
  readonly backends = new Map<string, MemoryBackend>()
  readonly calls = { list: 0, wake: 0, sleep: [] as SleepMode[] }
  /** When set, wake() waits for it before resolving. */
  holdWake: Promise<void> | undefined
  /** When set, the next wake()/sleep(mode) rejects with it. */
  failWake: RelightError | undefined
  failSleep = new Map<SleepMode, RelightError>()
  failList: RelightError | undefined
  /** Called during wake() before it reports running: an engine may hand out a new address. */
  onWake: ((b: MemoryBackend) => void) | undefined
  /** When set, sleep() waits for it before resolving. */
  holdSleep: Promise<void> | undefined
  /** When set, list() takes its snapshot at once but answers only after it resolves. */
  holdList: Promise<void> | undefined
  private listener: ((e: ProviderEvent) => void) | undefined

  constructor(backends: MemoryBackend[], options: { kind?: string; id?: string; resyncInterval?: number; sleepModes?: SleepMode[] } = {}) {
    this.kind = options.kind ?? 'memory'
    this.id = options.id
    this.resyncInterval = options.resyncInterval
    this.sleepModes = options.sleepModes ?? ['pause', 'stop']
    for (const b of backends) this.backends.set(b.id, { ...b })
  }

  private info(b: MemoryBackend): BackendInfo {
    return { id: b.id, name: b.name ?? b.id, hosts: b.hosts, state: b.state, upstreams: b.upstreams, settings: b.settings ?? {}, ...(b.group ? { group: b.group } : {}) }
  }

  private get(id: string): MemoryBackend {
    const b = this.backends.get(id)
    if (!b) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no backend ${id}`, { backend: id })
    return b
  }

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    throwIfAborted(signal)
    this.calls.list++
    if (this.failList) throw this.failList
    const snapshot = [...this.backends.values()].map((b) => this.info(b))
    if (this.holdList) await this.holdList
    return snapshot
  }

  watch(onEvent: (e: ProviderEvent) => void, signal: AbortSignal): void {
    this.listener = onEvent
    signal.addEventListener('abort', () => (this.listener = undefined))
  }

  emit(event: ProviderEvent): void {
    this.listener?.(event)
  }

  /** Add or change a backend and tell the registry, as an engine event would. */
  put(b: MemoryBackend): void {
    this.backends.set(b.id, { ...b })
    this.emit({ type: 'upsert', backend: this.info(b) })
  }

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    throwIfAborted(signal)
    const b = this.get(id)
    this.calls.wake++
    if (this.failWake) {
      const err = this.failWake
      this.failWake = undefined
      throw err
    }
    if (this.holdWake) {
      await Promise.race([
        this.holdWake,
        new Promise((_r, reject) => signal.addEventListener('abort', () => reject(signal.reason), { once: true })),
      ])
    }
    this.onWake?.(b)
    b.state = 'running'
    return this.info(b)
  }

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    throwIfAborted(signal)
    const b = this.get(id)
    if (!this.sleepModes.includes(mode)) throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `no ${mode}`)
    this.calls.sleep.push(mode)
    const fail = this.failSleep.get(mode)
    if (fail) throw fail
    if (this.holdSleep) await this.holdSleep
    b.state = stateForMode(mode)
    this.emit({ type: 'state', id, state: b.state })
  }
}

/** A deferred promise: resolve it from the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve(v: T): void; reject(e: unknown): void } {
  let resolve!: (v: T) => void
  let reject!: (e: unknown) => void
  const promise = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { promise, resolve, reject }
}
