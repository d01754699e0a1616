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
 * - no connection open at its issue that may be Caddy's remains (Caddy died or restarted: lines in
 *   flight on that connection are lost with it);
 *
 * Bounds: at most `MAX_OPEN_TICKETS` open tickets in all, `MAX_OPEN_PER_BACKEND` for one
 * backend and `MAX_OPEN_PER_CLIENT` for one client address (Caddy's view of the client
 * connection's IP, which no client can choose). Beyond a bound no ticket is issued: the request
 * counts as activity only, like a call without the snippet. Open tickets are never dropped to
 * make room, so a flood from one client (or for one backend) can neither end nor block the
 * accounting of another backend's or another client's open stream.
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
  /** The client address it counts against (undefined: none given, a snippet before version 3). */
  readonly client: string | undefined
  readonly wakes: number
  readonly expires: number
  /** The access-log connections open when it was issued (shared, never copied per ticket). */
  readonly binding: readonly LogConnection[]
}

/** Open tickets kept at most; beyond, no new ones are issued (a flood cannot grow memory). */
export const MAX_OPEN_TICKETS = 100_000
/** Open tickets one backend may hold: a flood on one app leaves the others' accounting alone. */
export const MAX_OPEN_PER_BACKEND = 10_000
/**
 * Open tickets one client address may hold, across backends: more concurrent requests than a
 * browser or a NAT of ordinary size keeps open (h2 allows 250 streams per connection), so one
 * client cannot take a backend's whole share from the others.
 */
export const MAX_OPEN_PER_CLIENT = 1_000

/** Which bound refused a ticket. */
export type TicketBound = 'ledger' | 'backend' | 'client'
/** A ticket: 22 base64url characters of random bytes (132 bits: unguessable). */
const TICKET_CHARS = 22
/** Random bytes drawn at a time and encoded once: 4224 bytes = 5632 characters = 256 tickets. */
const POOL_BYTES = 4224

export interface TicketLedgerOptions {
  readonly now?: () => number
  /** Called when tickets stop counting without their line (expired, connection lost). */
  readonly onLost?: (reason: 'expired' | 'connection', count: number) => void
  /** Called when a request got no ticket because a bound was reached (it counts as activity only). */
  readonly onFull?: (bound: TicketBound, count: number) => void
  /** Bounds (tests use small ones); default MAX_OPEN_TICKETS, MAX_OPEN_PER_BACKEND, MAX_OPEN_PER_CLIENT. */
  readonly limits?: { readonly total?: number; readonly perBackend?: number; readonly perClient?: number }
}

export class TicketLedger<T extends TicketTarget = TicketTarget> {
  private readonly open = new Map<string, Entry<T>>()
  /** Open tickets per backend and per client address (entries removed at 0, so both stay bounded). */
  private readonly perTarget = new Map<T, number>()
  private readonly perClient = new Map<string, number>()
  private readonly maxTotal: number
  private readonly maxPerTarget: number
  private readonly maxPerClient: number
  private readonly random = Buffer.allocUnsafe(POOL_BYTES)
  private pool = ''
  private poolAt = 0
  private binding: readonly LogConnection[] = []
  private readonly connections = new Set<LogConnection>()
  /** Unproven connections that were open when the last proven one closed: not Caddy's. */
  private readonly suspects = new Set<LogConnection>()
  private canCount = false
  /** Earliest expiry among open tickets (a lower bound): `expire` scans only when it is due. */
  private nextExpiry = Number.POSITIVE_INFINITY
  private readonly now: () => number
  private readonly onLost: NonNullable<TicketLedgerOptions['onLost']>
  private readonly onFull: NonNullable<TicketLedgerOptions['onFull']>
  /** Requests refused a ticket because a bound was reached (since start). */
  refused = 0

  constructor(options: TicketLedgerOptions = {}) {
    this.now = options.now ?? Date.now
    this.onLost = options.onLost ?? (() => undefined)
    this.onFull = options.onFull ?? (() => undefined)
    this.maxTotal = options.limits?.total ?? MAX_OPEN_TICKETS
    this.maxPerTarget = options.limits?.perBackend ?? MAX_OPEN_PER_BACKEND
    this.maxPerClient = options.limits?.perClient ?? MAX_OPEN_PER_CLIENT
  }

  /** Open tickets counted for `target`. */
  openFor(target: T): number {
    return this.perTarget.get(target) ?? 0
  }

  /** Open tickets counted for a client address. */
  openForClient(client: string): number {
    return this.perClient.get(client) ?? 0
  }

  /** Open tickets. */
  get size(): number {
    return this.open.size
  }

  /**
   * True when a ticket's line can arrive: a proven connection is open, or one that may be
   * Caddy's (any, until one has proven itself; afterwards only those opened since the last
   * proven one closed: Caddy's redial).
   */
  get counting(): boolean {
    return this.canCount
  }

  /** True while a connection that proved itself to be Caddy's is open. */
  get proven(): boolean {
    for (const c of this.connections) if (c.proven) return true
    return false
  }

  /**
   * Hot path: a new ticket for a request authorised for `target`, counted until its line
   * arrives or `maxMs` passes. The caller counts the request in flight when a ticket is
   * returned; undefined when a bound is reached (expired tickets are dropped first): then the
   * request must count as activity only. `client` is Caddy's address of the client connection
   * (the snippet's X-Relight-Client), when known.
   */
  issue(target: T, maxMs: number, client?: string): string | undefined {
    const forTarget = this.perTarget.get(target) ?? 0
    const forClient = client === undefined ? 0 : (this.perClient.get(client) ?? 0)
    if (this.open.size >= this.maxTotal || forTarget >= this.maxPerTarget || forClient >= this.maxPerClient) {
      this.expire()
      const bound: TicketBound | undefined =
        this.open.size >= this.maxTotal ? 'ledger' : this.openFor(target) >= this.maxPerTarget ? 'backend' : client !== undefined && this.openForClient(client) >= this.maxPerClient ? 'client' : undefined
      if (bound !== undefined) {
        this.refused++
        this.onFull(bound, this.refused)
        return undefined
      }
      return this.issue(target, maxMs, client)
    }
    if (this.poolAt === this.pool.length) {
      this.pool = randomFillSync(this.random).toString('base64url')
      this.poolAt = 0
    }
    const ticket = this.pool.slice(this.poolAt, this.poolAt + TICKET_CHARS)
    this.poolAt += TICKET_CHARS
    const expires = this.now() + maxMs
    if (expires < this.nextExpiry) this.nextExpiry = expires
    this.open.set(ticket, { target, client, wakes: target.counters.wakes, expires, binding: this.binding })
    this.perTarget.set(target, forTarget + 1)
    if (client !== undefined) this.perClient.set(client, forClient + 1)
    return ticket
  }

  /** A log line carried `ticket` on `from`. True when it was live (and is now finished). */
  finish(ticket: string, from?: LogConnection): boolean {
    const entry = this.open.get(ticket)
    if (entry === undefined) return false
    this.open.delete(ticket)
    // Proof: only a connection that was open when the ticket was issued. Caddy's connection
    // predates the requests it logs; a foreign one opened after its owner got a ticket cannot
    // prove itself by replaying it.
    if (from !== undefined && !from.proven && from.open && entry.binding.includes(from)) {
      from.proven = true
      this.suspects.delete(from)
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
    this.suspects.delete(conn)
    if (conn.proven && ![...this.connections].some((c) => c.proven)) {
      // Caddy's connection is gone: those that idled beside it without proving are not Caddy's.
      for (const c of this.connections) if (!c.proven) this.suspects.add(c)
    }
    this.rebind()
    let dropped = 0
    for (const [ticket, entry] of this.open) {
      if (entry.binding.includes(conn) && !entry.binding.some((c) => this.mayDeliver(c))) {
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
    this.perTarget.clear()
    this.perClient.clear()
    this.nextExpiry = Number.POSITIVE_INFINITY
  }

  /**
   * New tickets record every open connection. A ticket keeps counting while one of them may
   * still deliver its line (`mayDeliver`): an idle connection that sat beside Caddy's without
   * proving itself therefore cannot keep tickets counting once Caddy's own connection is gone.
   */
  private rebind(): void {
    const open = [...this.connections]
    this.binding = Object.freeze(open)
    this.canCount = open.some((c) => this.mayDeliver(c))
  }

  /** Open, and proven to be Caddy's or possibly Caddy's (not a suspect). */
  private mayDeliver(c: LogConnection): boolean {
    return c.open && (c.proven || !this.suspects.has(c))
  }

  /**
   * A request counted for `entry.target` ends (its entry was just removed from `open`), unless
   * the backend slept since (count reset).
   */
  private end(entry: Entry<T>): void {
    const forTarget = (this.perTarget.get(entry.target) ?? 1) - 1
    if (forTarget > 0) this.perTarget.set(entry.target, forTarget)
    else this.perTarget.delete(entry.target)
    if (entry.client !== undefined) {
      const forClient = (this.perClient.get(entry.client) ?? 1) - 1
      if (forClient > 0) this.perClient.set(entry.client, forClient)
      else this.perClient.delete(entry.client)
    }
    if (entry.target.counters.wakes === entry.wakes) entry.target.finished()
  }
}
