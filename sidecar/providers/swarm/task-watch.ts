/**
 * Swarm sends no task events, so task progress is polled: ONE poller per service, shared by
 * every waiter (a wake, the start-failure hook, a wait for an old task to let go of its port),
 * started by the first waiter and stopped when the last one leaves. Polls after 25, 50, 100,
 * 100… ms: about 12 `GET /tasks` for a task that runs after 1 s, at most 100 ms added latency.
 */
import { delay } from '../../core/timers.js'
import type { SwarmServices, Task } from './services.js'

/** Pauses between polls; the last one repeats. */
export const TASK_POLL_SCHEDULE_MS: readonly number[] = [25, 50, 100]

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
   * when `pick` throws or a poll fails; on abort the waiter leaves and the promise rejects with
   * the signal's reason.
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
    for (let i = 0; this.waiters.size > 0 && !this.closing.aborted; i++) {
      const pause = this.schedule[Math.min(i, this.schedule.length - 1)] ?? 100
      try {
        await delay(pause, this.closing)
      } catch {
        break
      }
      if (this.waiters.size === 0) break
      let tasks: Task[]
      try {
        tasks = await this.api.tasks({ service: [this.serviceId] }, this.closing)
      } catch (err) {
        for (const w of [...this.waiters]) w.reject(err)
        break
      }
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
