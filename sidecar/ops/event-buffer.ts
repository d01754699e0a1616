/**
 * The last N lifecycle events, for `Last-Event-ID` replay on the admin events stream, and the
 * live fan-out to its subscribers. Bounded: the oldest event falls out when the buffer is full.
 */
import type { LifecycleEvents, Stamped } from '../core/events.js'

export const EVENT_BUFFER_SIZE = 1000

export class EventBuffer {
  private readonly ring: (Stamped | undefined)[]
  private next = 0
  private count = 0
  private readonly listeners = new Set<(e: Stamped) => void>()
  readonly stop: () => void

  constructor(events: LifecycleEvents, readonly size = EVENT_BUFFER_SIZE) {
    this.ring = new Array<Stamped | undefined>(size)
    this.stop = events.subscribe((e) => {
      this.ring[this.next] = e
      this.next = (this.next + 1) % size
      this.count = Math.min(this.count + 1, size)
      for (const listener of this.listeners) listener(e)
    })
  }

  /**
   * Events after `lastId`, oldest first. `complete` is false when some were already dropped
   * (the client missed events and should reload its view).
   */
  since(lastId: number): { events: Stamped[]; complete: boolean } {
    const events: Stamped[] = []
    for (let i = 0; i < this.count; i++) {
      const e = this.ring[(this.next - this.count + i + this.size) % this.size] as Stamped
      if (e.id > lastId) events.push(e)
    }
    const first = events[0]
    return { events, complete: first === undefined || first.id <= lastId + 1 || this.count < this.size }
  }

  /** The id of the newest event (0 before any). */
  get lastId(): number {
    return this.count === 0 ? 0 : (this.ring[(this.next - 1 + this.size) % this.size] as Stamped).id
  }

  listen(listener: (e: Stamped) => void): () => void {
    this.listeners.add(listener)
    return () => this.listeners.delete(listener)
  }
}
