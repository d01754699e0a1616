/**
 * An in-memory provider for benchmarks: N backends named `app-<i>` serving `app-<i>.<domain>`,
 * all routed to one real local HTTP server (so readiness probes and proxied requests are real).
 * Wakes and sleeps only flip a state after an optional delay; every call is counted, because the
 * benchmarks assert on provider traffic (one wake per backend under a storm, none for unknown
 * hosts).
 */
import { RelightError } from '../../sidecar/core/errors.js'
import type { BackendInfo, BackendState, Provider, SleepMode } from '../../sidecar/core/provider.js'
import { stateForMode } from '../../sidecar/core/provider.js'

export interface SyntheticOptions {
  /** How many backends. */
  readonly count: number
  /** `host:port` every backend routes to. */
  readonly upstream: string
  /** Hosts are `app-<i>.<domain>`. */
  readonly domain: string
  /** State of every backend at start. */
  readonly initial?: BackendState
  /** How long a wake takes before it resolves (simulated engine time), ms. */
  readonly wakeDelayMs?: number
  /** Ask the registry to list again when a host misses (what event-less engines do). */
  readonly relistOnMiss?: boolean
}

export interface SyntheticCalls {
  list: number
  wake: number
  sleep: number
}

export function syntheticHost(i: number, domain: string): string {
  return `app-${i}.${domain}`
}

export class SyntheticProvider implements Provider {
  readonly kind = 'synthetic'
  readonly sleepModes: readonly SleepMode[] = ['pause', 'stop']
  readonly relistOnMiss: boolean
  readonly calls: SyntheticCalls = { list: 0, wake: 0, sleep: 0 }
  private readonly states: BackendState[]
  private readonly options: SyntheticOptions

  constructor(options: SyntheticOptions) {
    this.options = options
    this.relistOnMiss = options.relistOnMiss ?? false
    this.states = new Array<BackendState>(options.count).fill(options.initial ?? 'running')
  }

  private index(id: string): number {
    const i = Number(id.slice('app-'.length))
    if (!id.startsWith('app-') || !Number.isInteger(i) || i < 0 || i >= this.states.length) {
      throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no synthetic backend ${id}`, { backend: id, provider: this.kind })
    }
    return i
  }

  private info(i: number): BackendInfo {
    const id = `app-${i}`
    return {
      id,
      name: id,
      hosts: [syntheticHost(i, this.options.domain)],
      state: this.states[i] as BackendState,
      upstreams: [this.options.upstream],
      settings: {},
    }
  }

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    signal.throwIfAborted()
    this.calls.list++
    const out: BackendInfo[] = []
    for (let i = 0; i < this.states.length; i++) out.push(this.info(i))
    return out
  }

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    this.calls.wake++
    const i = this.index(id)
    const ms = this.options.wakeDelayMs ?? 0
    if (ms > 0) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, ms)
        signal.addEventListener('abort', () => {
          clearTimeout(timer)
          reject(signal.reason)
        }, { once: true })
      })
    }
    this.states[i] = 'running'
    return this.info(i)
  }

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    signal.throwIfAborted()
    this.calls.sleep++
    this.states[this.index(id)] = stateForMode(mode)
  }
}
