import { randomFillSync } from 'node:crypto'
import { monotonicNow } from './clock.js'

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
  /** Caddy's identity of the request (`requestKey`), for lines that come without the ticket. */
  readonly key: string | undefined
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

/** Substitutions remembered (see finishUnticketed); the oldest is forgotten beyond this. */
const MAX_SUBSTITUTES = 10_000
/**
 * A line without a ticket may be read before /auth has answered the request it logs (Caddy
 * gave up on the call it had sent, logged the request, and the sidecar reads the log socket
 * first). Such ends are remembered this long, and at most this many: the request's own /auth
 * call, if it comes, then gets no ticket.
 */
const EARLY_END_MS = 10_000
const MAX_EARLY_ENDS = 10_000
/**
 * Requests /auth answered without a ticket (an error, a failed wake, the waiting page, a client
 * gone during a wake): Caddy logs them without a ticket too, and that line must end nothing. Its
 * key is remembered this long (the line comes within UNTICKETED_DELAY_MS of being read, which
 * follows the answer), at most this many; the line consumes it. Without this, a client that
 * retries on the same connection (an EventSource reconnecting, the waiting page reloading)
 * would have its new stream ended by the old line, or refused a ticket as an early end. The
 * first guard is stateless (access-log.ts skips a line whose response carries X-Relight-Reply:
 * the sidecar's own answer, copied by Caddy); this one covers answers Caddy logs without that
 * header (a client gone during a wake). A flood of such answers can evict passes, never beyond
 * one client connection's own requests (see requestKey).
 */
const PASS_MS = 30_000
const MAX_PASSES = 10_000
/**
 * Lines without a ticket are matched this long after they are read, so that /auth calls Caddy
 * sent before it wrote the line (already in the sidecar's socket buffers) are answered first:
 * identical HTTP/2 requests then find each other's tickets rather than an early end.
 */
export const UNTICKETED_DELAY_MS = 3000
/** Lines waiting for that delay, at most (more are matched at once). */
const MAX_DELAYED = 100_000

/** Longest client connection (`ip:port`) a key is built from: an IPv6 address with a zone and port fits. */
const MAX_CONN_CHARS = 64

/**
 * Caddy's identity of one request: its client connection as Caddy sees it (`ip:port`, sent by
 * snippet 3 as X-Relight-Client and logged as request.remote_ip/remote_port, which no client can
 * choose), then a 64-bit hash of the method, Host and URI as the client sent them (snippet 3's
 * X-Relight-Request is Caddy's `{http.request.orig_method} {http.request.orig_uri}`, what it
 * logs, whatever rewrites ran before the snippet). Built the same way at /auth and from a log
 * line. A connection longer than any real one is cut (it cannot match a real one anyway).
 *
 * The hash keeps every key under ~90 characters, however long the URI (a key is held by an open
 * ticket, an early end, a pass and a delayed line). It is not cryptographic, and need not be: a
 * key only ever matches within one client connection (the cleartext `ip:port` part), so a
 * collision — even one a client crafts — can only make one of its own connection's lines end
 * another of its own requests, which it could do anyway by closing the connection.
 */
export function requestKey(conn: string, method: string, host: string, uri: string): string {
  // Two 32-bit lanes (cyrb53's mixing, kept to 64 bits), one pass over the three strings.
  let h1 = 0xdeadbeef
  let h2 = 0x41c6ce57
  for (const part of [method, host, uri]) {
    for (let i = 0; i < part.length; i++) {
      const c = part.charCodeAt(i)
      h1 = Math.imul(h1 ^ c, 2654435761)
      h2 = Math.imul(h2 ^ c, 1597334677)
    }
    // a separator no string above can hold, so ("a b", "c") and ("a", "b c") differ
    h1 = Math.imul(h1 ^ 0x10000, 2654435761)
    h2 = Math.imul(h2 ^ 0x10000, 1597334677)
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507) ^ Math.imul(h2 ^ (h2 >>> 13), 3266489909)
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507) ^ Math.imul(h1 ^ (h1 >>> 13), 3266489909)
  return `${conn.length > MAX_CONN_CHARS ? conn.slice(0, MAX_CONN_CHARS) : conn} ${(h1 >>> 0).toString(16)}.${(h2 >>> 0).toString(16)}`
}

/**
 * What the per-client bound counts against, from Caddy's remote IP: an IPv4 address itself; an
 * IPv6 address's /64 (one host, or one customer's network, usually holds a whole /64 and can
 * pick any address in it). Undefined for something that is not an address (never counted).
 */
export function clientGroup(ip: string): string | undefined {
  if (ip.length > MAX_CONN_CHARS) return undefined
  if (!ip.includes(':')) return ip
  const zone = ip.indexOf('%')
  const addr = (zone === -1 ? ip : ip.slice(0, zone)).toLowerCase()
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(addr)
  if (v4 !== null) return v4[1]
  const gap = addr.indexOf('::')
  const head = (gap === -1 ? addr : addr.slice(0, gap)).split(':').filter((g) => g !== '')
  const tail = gap === -1 ? [] : addr.slice(gap + 2).split(':').filter((g) => g !== '')
  const groups = gap === -1 ? head : [...head, ...Array<string>(Math.max(0, 8 - head.length - tail.length)).fill('0'), ...tail]
  const prefix = groups.slice(0, 4).map((g) => Number.parseInt(g, 16))
  if (prefix.length < 4 || prefix.some((g) => !(g >= 0 && g <= 0xffff))) return undefined
  return `${prefix.map((g) => g.toString(16)).join(':')}::/64`
}

/** Which bound refused a ticket. */
export type TicketBound = 'ledger' | 'backend' | 'client'
/** A ticket: 22 base64url characters of random bytes (132 bits: unguessable). */
const TICKET_CHARS = 22
/** Random bytes drawn at a time and encoded once: 4224 bytes = 5632 characters = 256 tickets. */
const POOL_BYTES = 4224

export interface TicketLedgerOptions {
  /** Durations only (ticket expiry, delays): the core's monotonic clock unless a test injects one. A wall-clock step must not expire open tickets. */
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
  /** Open tickets by request key (usually one; several only for identical HTTP/2 streams). */
  private readonly byKey = new Map<string, string[]>()
  /** A ticket ended in place of another by a line without its ticket → that line's key. */
  private readonly substitutes = new Map<string, string>()
  /** Lines without a ticket that matched no open one yet (see EARLY_END_MS): key → count, until. */
  private readonly early = new Map<string, { n: number; until: number }>()
  /** Requests answered without a ticket (see PASS_MS): key → count, until. */
  private readonly passes = new Map<string, { n: number; until: number }>()
  /** Lines without a ticket waiting UNTICKETED_DELAY_MS (in arrival order). */
  private delayed: { key: string; from: LogConnection; at: number }[] = []
  private delayTimer: NodeJS.Timeout | undefined
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
  /** Tickets ended by a line without its ticket (finishUnticketed), since start. */
  unticketedEnds = 0

  constructor(options: TicketLedgerOptions = {}) {
    this.now = options.now ?? monotonicNow
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
  issue(target: T, maxMs: number, client?: string, key?: string): string | undefined {
    if (key !== undefined && this.early.size > 0 && this.endedEarly(key)) return undefined
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
      return this.issue(target, maxMs, client, key)
    }
    if (this.poolAt === this.pool.length) {
      this.pool = randomFillSync(this.random).toString('base64url')
      this.poolAt = 0
    }
    const ticket = this.pool.slice(this.poolAt, this.poolAt + TICKET_CHARS)
    this.poolAt += TICKET_CHARS
    const expires = this.now() + maxMs
    if (expires < this.nextExpiry) this.nextExpiry = expires
    this.open.set(ticket, { target, client, key, wakes: target.counters.wakes, expires, binding: this.binding })
    this.perTarget.set(target, forTarget + 1)
    if (client !== undefined) this.perClient.set(client, forClient + 1)
    if (key !== undefined) {
      this.keyedSeen = true
      const same = this.byKey.get(key)
      if (same === undefined) this.byKey.set(key, [ticket])
      else same.push(ticket)
    }
    return ticket
  }

  /**
   * A ticket with a request key was issued (snippet 3 is in use): only then are lines without a
   * ticket looked at. Not "while one is open": a line may be read before its /auth call is.
   */
  get keyed(): boolean {
    return this.keyedSeen
  }
  private keyedSeen = false

  /**
   * A line without a ticket, from Caddy's proven connection, for the request `key`: Caddy logged
   * a request whose ticket never reached its response headers (the client left, or Caddy gave
   * up, while /auth was answering). It ends the open ticket with the same key. Only a proven
   * connection counts (anyone else's lines change nothing), and the key holds Caddy's own view
   * of the client connection, so the line can only end a request of that same connection:
   * HTTP/1.1 carries one request at a time, so that is the request itself. Over HTTP/2 one
   * connection may carry identical requests at once: the newest is ended and remembered, and
   * when its own line arrives later another one of that key is ended instead, so the count
   * stays right. True when a ticket ended.
   */
  finishUnticketed(key: string, from: LogConnection): boolean {
    if (!from.proven || !from.open) return false
    // The line of a request /auth answered without a ticket: it ends nothing.
    if (this.passes.size > 0 && this.consume(this.passes, key)) return false
    const same = this.byKey.get(key)
    const ticket = same?.at(-1)
    if (same === undefined || ticket === undefined) {
      // Perhaps read before its /auth call was answered: remembered for a moment.
      this.remember(this.early, key, EARLY_END_MS, MAX_EARLY_ENDS)
      return false
    }
    if (same.length > 1) {
      if (this.substitutes.size >= MAX_SUBSTITUTES) {
        for (const oldest of this.substitutes.keys()) {
          this.substitutes.delete(oldest)
          break
        }
      }
      this.substitutes.set(ticket, key)
    }
    const ended = this.finish(ticket, from)
    if (ended) this.unticketedEnds++
    return ended
  }

  /** finishUnticketed, UNTICKETED_DELAY_MS from now. */
  finishUnticketedLater(key: string, from: LogConnection): void {
    if (this.delayed.length >= MAX_DELAYED) {
      this.finishUnticketed(key, from)
      return
    }
    this.delayed.push({ key, from, at: this.now() })
    this.delayTimer ??= setTimeout(() => this.runDelayed(), UNTICKETED_DELAY_MS).unref()
  }

  private runDelayed(): void {
    this.delayTimer = undefined
    const due = this.now() - UNTICKETED_DELAY_MS
    let i = 0
    while (i < this.delayed.length && (this.delayed[i] as { at: number }).at <= due) i++
    const ready = this.delayed.slice(0, i)
    this.delayed = this.delayed.slice(i)
    for (const { key, from } of ready) this.finishUnticketed(key, from)
    if (this.delayed.length > 0) {
      const next = (this.delayed[0] as { at: number }).at + UNTICKETED_DELAY_MS - this.now()
      this.delayTimer = setTimeout(() => this.runDelayed(), Math.max(1, next)).unref()
    }
  }

  /** A log line carried `ticket` on `from`. True when it was live (and is now finished). */
  finish(ticket: string, from?: LogConnection): boolean {
    const entry = this.open.get(ticket)
    if (entry === undefined) {
      // Ended earlier in place of an identical request (finishUnticketed): end that one now.
      const key = this.substitutes.get(ticket)
      if (key === undefined || from === undefined || !from.proven) return false
      this.substitutes.delete(ticket)
      const other = this.byKey.get(key)?.at(-1)
      return other !== undefined && this.finish(other, from)
    }
    this.open.delete(ticket)
    // Proof: only a connection that was open when the ticket was issued. Caddy's connection
    // predates the requests it logs; a foreign one opened after its owner got a ticket cannot
    // prove itself by replaying it.
    if (from !== undefined && !from.proven && from.open && entry.binding.includes(from)) {
      from.proven = true
      this.suspects.delete(from)
      this.rebind()
    }
    this.end(entry, ticket)
    return true
  }

  /**
   * /auth answered the request `key` without a ticket (snippet 3): its line, which Caddy writes
   * without one, ends nothing (see PASS_MS).
   */
  pass(key: string): void {
    this.remember(this.passes, key, PASS_MS, MAX_PASSES)
  }

  /** The request `key` was logged already (a line without its ticket came first): consume that. */
  private endedEarly(key: string): boolean {
    return this.consume(this.early, key)
  }

  /** Count `key` in `map` for `ms` more; beyond `max` keys the oldest is forgotten. */
  private remember(map: Map<string, { n: number; until: number }>, key: string, ms: number, max: number): void {
    const known = map.get(key)
    if (known !== undefined) {
      known.n++
      known.until = this.now() + ms
      return
    }
    if (map.size >= max) this.sweep(map, Number.POSITIVE_INFINITY, 1)
    map.set(key, { n: 1, until: this.now() + ms })
  }

  /** Take one count of `key` from `map`: true when it held one still in time. */
  private consume(map: Map<string, { n: number; until: number }>, key: string): boolean {
    const known = map.get(key)
    if (known === undefined) return false
    if (known.until < this.now() || --known.n === 0) map.delete(key)
    return known.until >= this.now()
  }

  /** Forget keys past their time (or, with `max`, the oldest `max` of them). */
  private sweep(map: Map<string, { n: number; until: number }>, now: number, max = Number.POSITIVE_INFINITY): void {
    let n = 0
    for (const [key, known] of map) {
      if (n >= max) return
      if (known.until <= now) {
        map.delete(key)
        n++
      }
    }
  }

  /** Drop tickets past their max_request_duration. Cheap when none is due. */
  expire(now = this.now()): number {
    if (this.early.size > 0) this.sweep(this.early, now)
    if (this.passes.size > 0) this.sweep(this.passes, now)
    if (now < this.nextExpiry) return 0
    let dropped = 0
    let next = Number.POSITIVE_INFINITY
    for (const [ticket, entry] of this.open) {
      if (entry.expires <= now) {
        this.open.delete(ticket)
        this.end(entry, ticket)
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
        this.end(entry, ticket)
        dropped++
      }
    }
    if (dropped > 0) this.onLost('connection', dropped)
  }

  /** Stop counting everything (shutdown). */
  clear(): void {
    for (const [ticket, entry] of this.open) this.end(entry, ticket)
    this.open.clear()
    this.perTarget.clear()
    this.perClient.clear()
    this.byKey.clear()
    this.substitutes.clear()
    this.early.clear()
    this.passes.clear()
    this.delayed = []
    clearTimeout(this.delayTimer)
    this.delayTimer = undefined
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
  private end(entry: Entry<T>, ticket: string): void {
    if (entry.key !== undefined) {
      const same = this.byKey.get(entry.key)
      if (same !== undefined) {
        if (same.length <= 1) this.byKey.delete(entry.key)
        else same.splice(same.indexOf(ticket), 1)
      }
    }
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
