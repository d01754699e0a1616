import { randomFillSync } from 'node:crypto'

/**
 * In-flight accounting by ticket. Each request the sidecar authorises (and can see the end of)
 * gets an unguessable ticket; Caddy copies it into the request and, through a deferred
 * `header`, into the response headers it logs; the access-log line carrying a live ticket is
 * the only thing that finishes that request. A line without a live ticket changes nothing, so
 * nobody who can merely write to the access-log socket can end (or prolong) a request they
 * did not receive the ticket of.
 *
 * A ticket ends in exactly one of these ways:
 * - its line arrives (`finish`);
 * - it is older than its backend's `max_request_duration` (a lost line, or an /auth call
 *   Caddy did not make): it stops counting at the next `expire`;
 * - every access-log connection it was bound to closed (Caddy died or restarted: lines in
 *   flight on that connection are lost with it);
 * - the ledger is full (`MAX_OPEN_TICKETS`): the oldest one stops counting.
 */

/** What a ticket counts against (a Backend). */
export interface TicketTarget {
  /** The request ended (or stopped counting): one fewer in flight, activity now. */
  finished(): void
  /** Bumped when the backend slept (its in-flight count was reset): older tickets are void. */
  readonly counters: { readonly wakes: number }
}

/** One access-log connection, as the ledger sees it. */
export interface LogConnection {
  /** Still open. */
  open: boolean
  /** Has delivered a line with a live ticket: it is Caddy's, not just anyone's. */
  proven: boolean
}

interface Entry<T> {
  readonly target: T
  readonly wakes: number
  readonly expires: number
  /** The connections that could deliver its line (shared, never copied per ticket). */
  readonly binding: readonly LogConnection[]
}

/** Open tickets kept at most; beyond, the oldest stop counting (a flood cannot grow memory). */
export const MAX_OPEN_TICKETS = 100_000
/**
 * How many of the oldest are dropped at once when the ledger is full. In batches because a
 * Map's first live entry is found by walking past every deleted one: dropping one at a time
 * made each issue at the cap cost O(n).
 */
const DROP_BATCH = MAX_OPEN_TICKETS / 10
/** A ticket: 22 base64url characters of random bytes (132 bits: unguessable). */
const TICKET_CHARS = 22
/** Random bytes drawn at a time and encoded once: 4224 bytes = 5632 characters = 256 tickets. */
const POOL_BYTES = 4224

export interface TicketLedgerOptions {
  readonly now?: () => number
  /** Called when tickets stop counting without their line (expired, connection lost, ledger full). */
  readonly onLost?: (reason: 'expired' | 'connection' | 'full', count: number) => void
}

export class TicketLedger<T extends TicketTarget = TicketTarget> {
  private readonly open = new Map<string, Entry<T>>()
  private readonly random = Buffer.allocUnsafe(POOL_BYTES)
  private pool = ''
  private poolAt = 0
  private binding: readonly LogConnection[] = []
  private readonly connections = new Set<LogConnection>()
  /** Earliest expiry among open tickets (a lower bound): `expire` scans only when it is due. */
  private nextExpiry = Number.POSITIVE_INFINITY
  private readonly now: () => number
  private readonly onLost: NonNullable<TicketLedgerOptions['onLost']>

  constructor(options: TicketLedgerOptions = {}) {
    this.now = options.now ?? Date.now
    this.onLost = options.onLost ?? (() => undefined)
  }

  /** Open tickets. */
  get size(): number {
    return this.open.size
  }

  /** True when a ticket's line can arrive: at least one access-log connection is open. */
  get counting(): boolean {
    return this.binding.length > 0
  }

  /**
   * Hot path: a new ticket for a request authorised for `target`, counted until its line
   * arrives or `maxMs` passes. The caller has already counted the request in flight.
   */
  issue(target: T, maxMs: number): string {
    if (this.poolAt === this.pool.length) {
      this.pool = randomFillSync(this.random).toString('base64url')
      this.poolAt = 0
    }
    const ticket = this.pool.slice(this.poolAt, this.poolAt + TICKET_CHARS)
    this.poolAt += TICKET_CHARS
    const expires = this.now() + maxMs
    if (expires < this.nextExpiry) this.nextExpiry = expires
    this.open.set(ticket, { target, wakes: target.counters.wakes, expires, binding: this.binding })
    if (this.open.size > MAX_OPEN_TICKETS) this.dropOldest(DROP_BATCH)
    return ticket
  }

  /** A log line carried `ticket` on `from`. True when it was live (and is now finished). */
  finish(ticket: string, from?: LogConnection): boolean {
    const entry = this.open.get(ticket)
    if (entry === undefined) return false
    this.open.delete(ticket)
    if (from !== undefined && !from.proven) {
      from.proven = true
      this.rebind()
    }
    this.end(entry)
    return true
  }

  /** Drop tickets past their max_request_duration. Cheap when none is due. */
  expire(now = this.now()): number {
    if (now < this.nextExpiry) return 0
    let dropped = 0
    let next = Number.POSITIVE_INFINITY
    for (const [ticket, entry] of this.open) {
      if (entry.expires <= now) {
        this.open.delete(ticket)
        this.end(entry)
        dropped++
      } else if (entry.expires < next) next = entry.expires
    }
    this.nextExpiry = next
    if (dropped > 0) this.onLost('expired', dropped)
    return dropped
  }

  /** An access-log connection opened. */
  connectionOpened(conn: LogConnection): void {
    this.connections.add(conn)
    this.rebind()
  }

  /**
   * An access-log connection closed: lines still owed on it are lost with it, so tickets that
   * only it could have finished stop counting now.
   */
  connectionClosed(conn: LogConnection): void {
    conn.open = false
    this.connections.delete(conn)
    this.rebind()
    let dropped = 0
    for (const [ticket, entry] of this.open) {
      if (entry.binding.includes(conn) && entry.binding.every((c) => !c.open)) {
        this.open.delete(ticket)
        this.end(entry)
        dropped++
      }
    }
    if (dropped > 0) this.onLost('connection', dropped)
  }

  /** Stop counting everything (shutdown). */
  clear(): void {
    for (const entry of this.open.values()) this.end(entry)
    this.open.clear()
    this.nextExpiry = Number.POSITIVE_INFINITY
  }

  /**
   * New tickets are bound to the connections that have proven to be Caddy's (they delivered a
   * live ticket), or to every open one until one has. An idle connection anyone else opened
   * therefore cannot keep tickets counting once Caddy's own connection is gone.
   */
  private rebind(): void {
    const open = [...this.connections]
    const proven = open.filter((c) => c.proven)
    this.binding = Object.freeze(proven.length > 0 ? proven : open)
  }

  private dropOldest(count: number): void {
    let dropped = 0
    for (const [ticket, entry] of this.open) {
      if (dropped === count) break
      this.open.delete(ticket)
      this.end(entry)
      dropped++
    }
    this.onLost('full', dropped)
  }

  /** A request counted for `entry.target` ends, unless the backend slept since (count reset). */
  private end(entry: Entry<T>): void {
    if (entry.target.counters.wakes === entry.wakes) entry.target.finished()
  }
}
