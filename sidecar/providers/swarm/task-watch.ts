/**
 * Swarm sends no task events, so task progress is polled: ONE poller per service, shared by
 * every waiter (a wake, the start-failure hook, a wait for an old task to let go of its port),
 * started by the first waiter and stopped when the last one leaves. Polls after 25, 50, 100,
 * 100… ms: about 12 `GET /tasks` for a task that runs after 1 s, at most 100 ms added latency.
 */
import { delay, withDeadline } from '../../core/timers.js'
import type { SwarmServices, Task } from './services.js'

/** Pauses between polls; the last one repeats. */
export const TASK_POLL_SCHEDULE_MS: readonly number[] = [25, 50, 100]
/** One `GET /tasks` answers within this, or counts as failed (a hung poll must not hold every waiter). */
const POLL_TIMEOUT_MS = 5_000
/** Pause after a failed poll: doubling from the first, up to the last. */
const ERROR_BACKOFF_MS = { firstMs: 25, maxMs: 1_000 } as const

interface Waiter {
  /** Called with every poll's tasks: a value ends the wait with it; a throw rejects it. */
  readonly pick: (tasks: readonly Task[]) => unknown
  readonly resolve: (value: unknown) => void
  readonly reject: (err: unknown) => void
}

export class TaskWatch {
  private readonly waiters = new Set<Waiter>()
  private running = false
  /** The last poll's answer (for a waiter that joins between polls: answered at the next one). */
  latest: readonly Task[] | undefined

  constructor(
    private readonly api: SwarmServices,
    readonly serviceId: string,
    private readonly closing: AbortSignal,
    private readonly schedule: readonly number[] = TASK_POLL_SCHEDULE_MS,
    /** Told of the first failed poll of a run of failures (logging). */
    private readonly onError?: (err: unknown) => void,
  ) {}

  /** Waiters now (tests: the poller stops when none is left). */
  get size(): number {
    return this.waiters.size
  }

  get polling(): boolean {
    return this.running
  }

  /**
   * Resolve with `pick(tasks)` once it answers a value (not undefined) for some poll. Rejects
   * when `pick` throws or the service is gone; on abort the waiter leaves and the promise rejects with
   * the signal's reason.
   */
  /**
   * A failed poll (dockerd restarting, a manager election, a timeout) does not end any wait: the
   * poller keeps going with backoff, and each waiter's own signal bounds it. Only a service that
   * is gone (NOT_FOUND) rejects every waiter.
   */
  wait<T>(pick: (tasks: readonly Task[]) => T | undefined, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (signal.aborted) {
        reject(signal.reason)
        return
      }
      const waiter: Waiter = {
        pick,
        resolve: (v) => {
          done()
          resolve(v as T)
        },
        reject: (e) => {
          done()
          reject(e)
        },
      }
      const onAbort = () => waiter.reject(signal.reason)
      const done = () => {
        this.waiters.delete(waiter)
        signal.removeEventListener('abort', onAbort)
      }
      signal.addEventListener('abort', onAbort, { once: true })
      this.waiters.add(waiter)
      this.start()
    })
  }

  private start(): void {
    if (this.running || this.closing.aborted) return
    this.running = true
    void this.loop().finally(() => {
      this.running = false
      // A waiter that joined while the loop was ending.
      if (this.waiters.size > 0 && !this.closing.aborted) this.start()
    })
  }

  private async loop(): Promise<void> {
    let errorPause = 0
    for (let i = 0; this.waiters.size > 0 && !this.closing.aborted; i++) {
      const pause = errorPause > 0 ? errorPause : (this.schedule[Math.min(i, this.schedule.length - 1)] ?? 100)
      try {
        await delay(pause, this.closing)
      } catch {
        break
      }
      if (this.waiters.size === 0) break
      let tasks: Task[]
      try {
        const bound = withDeadline(this.closing, POLL_TIMEOUT_MS)
        try {
          tasks = await this.api.tasks({ service: [this.serviceId] }, bound.signal)
        } finally {
          bound.clear()
        }
      } catch (err) {
        if (this.closing.aborted) break
        if ((err as { code?: string } | undefined)?.code === 'RELIGHT_ERR_BACKEND_NOT_FOUND') {
          for (const w of [...this.waiters]) w.reject(err)
          break
        }
        if (errorPause === 0) this.onError?.(err)
        errorPause = Math.min(errorPause === 0 ? ERROR_BACKOFF_MS.firstMs : errorPause * 2, ERROR_BACKOFF_MS.maxMs)
        continue
      }
      errorPause = 0
      this.latest = tasks
      for (const w of [...this.waiters]) {
        try {
          const value = w.pick(tasks)
          if (value !== undefined) w.resolve(value)
        } catch (err) {
          w.reject(err)
        }
      }
    }
    if (this.closing.aborted) for (const w of [...this.waiters]) w.reject(this.closing.reason)
  }
}
