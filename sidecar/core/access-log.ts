import { createServer, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { type LogConnection, requestKey } from './tickets.js'
import { bindPrivately, claimSocketPath } from './unix-socket.js'
import { atPowerOfTwo } from './log-throttle.js'

/** Header the sidecar puts on every answer it gives instead of the backend (denials, waiting page). */
export const REPLY_HEADER = 'X-Relight-Reply'

/** Header that carries a request's ticket: /auth answers it, Caddy copies it into the logged response. */
export const TICKET_HEADER = 'X-Relight-Ticket'

/** What one access-log line says, as far as accounting goes. */
export interface AccessLine {
  /** The ticket in the logged response headers; undefined when the line has none. */
  readonly ticket: string | undefined
}

export interface AccessLogHandlers {
  /** A line carrying a ticket arrived on `conn`. */
  ticket(ticket: string, conn: LogConnection): void
  /**
   * A line without a ticket arrived on `conn`. Called only for a proven connection while
   * `wantUnticketed()` says some open ticket could match (Caddy's lines for other sites cost a
   * scan only then).
   */
  unticketed?(line: string, conn: LogConnection): void
  wantUnticketed?(): boolean
  /**
   * A line without a ticket, not the sidecar's own answer, while `wantLaneLines(conn)` says
   * some backend has the fast lane on and lines of `conn` may count (a proven connection, or
   * any on a unix socket: activity ends no ticket, so an unproven writer can at most keep an
   * app awake): maybe a fast-lane request's end.
   */
  laneLine?(line: string): void
  wantLaneLines?(conn: LogConnection): boolean
  /** A connection opened (it is `open` and not yet `proven`). */
  opened(conn: LogConnection): void
  /** A connection closed (lines still owed on it are lost). */
  closed(conn: LogConnection): void
}

export interface AccessLogLimits {
  /** Connections accepted at once; more are closed at once (and logged). */
  readonly maxConnections: number
  /** Longest line read; a longer one is skipped as it streams by, never buffered whole. */
  readonly maxLine: number
}

export const DEFAULT_ACCESS_LOG_LIMITS: AccessLogLimits = { maxConnections: 4, maxLine: 256 << 10 }

/**
 * Connections that never prove themselves (deliver a live ticket issued while they were open:
 * see TicketLedger) cannot hold the slots. When every slot is taken, a newcomer replaces the
 * unproven connection open longest, once that one has had PROOF_GRACE_MS to prove itself
 * (Caddy re-dials on its next write after a refusal, so an intruder who filled the slots first
 * keeps it out for at most this long plus Caddy's 10 s re-dial pause). And while a proven
 * connection is open, unproven ones are closed after PROOF_TIMEOUT_MS (Caddy writes every site's
 * lines to one address through one connection; a second one of Caddy's, if any, re-dials on its
 * next write, and the proven one keeps its tickets counting meanwhile).
 */
export const PROOF_GRACE_MS = 5_000
export const PROOF_TIMEOUT_MS = 30_000

/**
 * Fairness: a connection yields to the event loop after this many bytes (so /auth requests are
 * served between chunks of a flood rather than after it), and is read at most WINDOW_BUDGET per
 * WINDOW_MS (40 MiB/s, ten times what Caddy logs at full speed here with request headers): a
 * writer faster than that waits in its socket buffer, so a flood costs bounded CPU.
 */
const TURN_BYTES = 256 << 10
const WINDOW_MS = 100
const WINDOW_BUDGET = 4 << 20
/**
 * While a connection skips an over-long line its bytes are worthless: read them at 1.25 MiB/s
 * (Caddy writes such a line only for requests with huge headers; its log writer then waits a
 * moment), so a flood of them costs next to nothing.
 */
const SKIP_WINDOW_BUDGET = 128 << 10

const RESP_KEY = '"resp_headers":'
const TICKET_KEY = `"${TICKET_HEADER}":["`

/**
 * The ticket of one JSON line of Caddy's access log, read from `resp_headers` (the last key of
 * Caddy's line). Only the response headers are looked at: the request headers in the line are
 * whatever the client sent, and a client can send anything there. Within the line, `"` inside
 * a string value is always escaped, and request header names come before `resp_headers`, so
 * the last `"resp_headers":` is the key, and the ticket key after it is Caddy's own.
 *
 * Lines are scanned, never parsed (JSON.parse of every line was a tenth of the sidecar's CPU
 * under load). Caddy's JSON encoder always writes `"resp_headers":` exactly so; a line without
 * it carries no ticket (and is not parsed: parsing what anyone sends would let them spend the
 * sidecar's CPU). Lines arrive decoded as latin1 (one byte, one character): tickets are ASCII.
 */
export function ticketOf(line: string): string | undefined {
  const respAt = line.lastIndexOf(RESP_KEY)
  if (respAt === -1) return undefined
  const keyAt = line.indexOf(TICKET_KEY, respAt)
  if (keyAt === -1) return undefined
  const start = keyAt + TICKET_KEY.length
  const end = line.indexOf('"', start) // the closing quote; tickets never contain escapes
  if (end === -1 || end - start > 64) return undefined
  return line.slice(start, end)
}

const REPLY_KEY = `"${REPLY_HEADER}":[`

/**
 * The sidecar answered this request itself (an error, a failed wake, the waiting page: Caddy's
 * forward_auth copies that answer, headers and all, and logs it without a ticket). Such a line
 * must end nothing: the same client connection may already be retrying the same request (an
 * EventSource reconnecting, the waiting page reloading), and that retry's ticket has the same
 * key. Read from the response headers only, which a client cannot write.
 */
export function repliedBySidecar(line: string): boolean {
  const respAt = line.lastIndexOf(RESP_KEY)
  return respAt !== -1 && line.indexOf(REPLY_KEY, respAt) !== -1
}

const REQUEST_START = '"request":{"remote_ip":"'

/** The Host a line logs (as the client sent it, port included), or undefined. */
export function hostOf(line: string): string | undefined {
  const fields = requestFieldsOf(line)
  return fields?.[4]
}

/**
 * Caddy's identity of the request a line logs (`requestKey`): remote_ip, remote_port, method,
 * host and uri, which Caddy 2.6 writes first in `request`, in this order, before any header
 * (so before anything a client names). Undefined when the line is not shaped so.
 */
export function requestKeyOf(line: string): string | undefined {
  const fields = requestFieldsOf(line)
  if (fields === undefined) return undefined
  const [ip, port, , method, host, uri] = fields
  return requestKey(`${ip}:${port}`, method, host, uri)
}

/** remote_ip, remote_port, proto, method, host, uri of a line's `request`, or undefined. */
function requestFieldsOf(line: string): [string, string, string, string, string, string] | undefined {
  let at = line.indexOf(REQUEST_START)
  if (at === -1) return undefined
  at += REQUEST_START.length
  const fields: string[] = []
  for (const name of ['remote_port', 'proto', 'method', 'host', 'uri']) {
    const value = readString(line, at)
    if (value === undefined) return undefined
    fields.push(value.text)
    const next = `,"${name}":"`
    if (!line.startsWith(next, value.end + 1)) return undefined
    at = value.end + 1 + next.length
  }
  const uri = readString(line, at)
  if (uri === undefined) return undefined
  return [...(fields as [string, string, string, string, string]), uri.text]
}

/** The JSON string whose content starts at `from` (after its opening quote): its text and closing quote. */
function readString(line: string, from: number): { text: string; end: number } | undefined {
  let end = line.indexOf('"', from)
  let escaped = false
  while (end !== -1 && line.charCodeAt(end - 1) === 0x5c) {
    // a quote preceded by backslashes: escaped only when their number is odd
    let n = 0
    while (line.charCodeAt(end - 1 - n) === 0x5c) n++
    if (n % 2 === 0) break
    escaped = true
    end = line.indexOf('"', end + 1)
  }
  if (end === -1) return undefined
  if (!escaped && line.lastIndexOf('\\', end) < from) return { text: line.slice(from, end), end }
  try {
    return { text: JSON.parse(`"${line.slice(from, end)}"`) as string, end }
  } catch {
    return undefined
  }
}

/** What one access-log line says, as far as accounting goes (undefined: not Caddy's line shape). */
export function parseAccessLine(line: string): AccessLine | undefined {
  if (line.lastIndexOf(RESP_KEY) === -1) return undefined
  return { ticket: ticketOf(line) }
}

/**
 * Listens where Caddy's `log { output net ADDRESS  format json }` connects (unix:/path or
 * host:port) and reports the ticket of every line. Caddy 2.6 connects at start-up (and refuses
 * to start if nobody listens) and redials at most every 10 s after a broken connection.
 *
 * Limits, so that whoever can connect cannot exhaust memory or stall the sidecar: at most
 * `maxConnections` at once (Caddy uses one per log writer, briefly two during a reload); a line
 * longer than `maxLine` is skipped chunk by chunk as it arrives (never held whole); work per
 * received chunk is one byte search, so no input can block the event loop for long.
 */
export class AccessLogServer {
  private server: Server | undefined
  private readonly sockets = new Map<Socket, { readonly conn: LogConnection; readonly openedAt: number }>()
  private sweepTimer: NodeJS.Timeout | undefined
  private refusedConnections = 0
  private evictedConnections = 0
  private skippedLines = 0
  private readLines = 0
  private peakBuffered = 0
  private readonly limits: AccessLogLimits

  constructor(
    private readonly address: string,
    private readonly handlers: AccessLogHandlers,
    private readonly log: Logger,
    limits: Partial<AccessLogLimits> = {},
  ) {
    this.limits = { ...DEFAULT_ACCESS_LOG_LIMITS, ...limits }
  }

  async listen(): Promise<void> {
    const server = createServer((socket) => this.accept(socket))
    this.server = server
    const unixPath = this.address.startsWith('unix:') ? this.address.slice('unix:'.length) : undefined
    if (unixPath !== undefined) await claimSocketPath(unixPath, 'access_log')
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      if (unixPath !== undefined) {
        bindPrivately(() => server.listen(unixPath, () => resolve())) // 0700 until the daemon's secureSocket
      } else {
        const colon = this.address.lastIndexOf(':')
        const host = this.address.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1'
        server.listen(Number(this.address.slice(colon + 1)), host, () => resolve())
      }
    })
    server.on('error', (err) => this.log.error({ err }, 'access log listener failed'))
    this.sweepTimer = setInterval(() => this.sweep(), 1000)
    this.sweepTimer.unref()
  }

  /** While a proven connection is open, close unproven ones older than PROOF_TIMEOUT_MS. */
  private sweep(now = performance.now()): void {
    let proven = false
    for (const { conn } of this.sockets.values()) if (conn.proven && conn.open) proven = true
    if (!proven) return
    for (const [socket, { conn, openedAt }] of this.sockets) {
      if (!conn.proven && now - openedAt >= PROOF_TIMEOUT_MS) this.evict(socket, 'it never proved itself while Caddy\'s proven connection was open')
    }
  }

  private evict(socket: Socket, why: string): void {
    this.evictedConnections++
    if (atPowerOfTwo(this.evictedConnections)) this.log.warn({ why, evicted: this.evictedConnections }, 'access log connection closed: not proven to be Caddy\'s (who else writes to this socket?)')
    socket.destroy()
  }

  /** The bound address (the real port when listening on :0). */
  get boundAddress(): string {
    const addr = this.server?.address()
    if (addr && typeof addr === 'object') return `${addr.address}:${addr.port}`
    return this.address
  }

  /** Counters for status and tests. */
  get stats(): { connections: number; provenConnections: number; refusedConnections: number; evictedConnections: number; lines: number; skippedLines: number; peakBufferedBytes: number } {
    let proven = 0
    for (const { conn } of this.sockets.values()) if (conn.proven) proven++
    return {
      connections: this.sockets.size,
      provenConnections: proven,
      refusedConnections: this.refusedConnections,
      evictedConnections: this.evictedConnections,
      lines: this.readLines,
      skippedLines: this.skippedLines,
      peakBufferedBytes: this.peakBuffered,
    }
  }

  private accept(socket: Socket): void {
    if (this.sockets.size >= this.limits.maxConnections) {
      // Make room by closing the unproven connection open longest, once it had its grace.
      const now = performance.now()
      let oldest: [Socket, number] | undefined
      for (const [s, { conn, openedAt }] of this.sockets) {
        if (!conn.proven && now - openedAt >= PROOF_GRACE_MS && (oldest === undefined || openedAt < oldest[1])) oldest = [s, openedAt]
      }
      if (oldest !== undefined) {
        this.evict(oldest[0], 'all access_log_max_connections slots were taken and it had not proved itself')
        // its close handler runs later: free the slot now
        const entry = this.sockets.get(oldest[0])
        this.sockets.delete(oldest[0])
        if (entry) {
          entry.conn.open = false
          this.handlers.closed(entry.conn)
        }
      }
    }
    if (this.sockets.size >= this.limits.maxConnections) {
      socket.destroy()
      this.refusedConnections++
      // 1st, 2nd, 4th, 8th…: loud enough to notice, quiet under a flood.
      if (atPowerOfTwo(this.refusedConnections)) {
        this.log.warn(
          { max: this.limits.maxConnections, refused: this.refusedConnections },
          'access log connection refused: access_log_max_connections reached (who else writes to this socket?)',
        )
      }
      return
    }
    const conn: LogConnection = { open: true, proven: false }
    this.sockets.set(socket, { conn, openedAt: performance.now() })
    this.handlers.opened(conn)
    this.log.info({ connections: this.sockets.size }, 'caddy access log connected')
    const maxLine = this.limits.maxLine
    // The start of the current line (latin1, at most maxLine characters), and whether the
    // current line is being skipped (over-long: its bytes are dropped until the next newline).
    let pending = ''
    let skipping = false
    const lineDone = (line: string) => {
      this.readLines++
      const ticket = ticketOf(line)
      if (ticket !== undefined) this.handlers.ticket(ticket, conn)
      else if (conn.proven && !repliedBySidecar(line)) {
        if (this.handlers.wantUnticketed?.()) this.handlers.unticketed?.(line, conn)
        if (this.handlers.wantLaneLines?.(conn)) this.handlers.laneLine?.(line)
      } else if (!conn.proven && this.handlers.wantLaneLines?.(conn) && !repliedBySidecar(line)) this.handlers.laneLine?.(line)
    }
    let turnBytes = 0
    let windowBytes = 0
    let windowEnds = 0
    let resumeTimer: NodeJS.Timeout | undefined
    const resume = () => {
      resumeTimer = undefined
      if (!socket.destroyed) socket.resume()
    }
    const pace = (bytes: number, skip: boolean) => {
      const now = performance.now()
      if (now >= windowEnds) {
        windowEnds = now + WINDOW_MS
        windowBytes = 0
      }
      windowBytes += bytes
      turnBytes += bytes
      if (windowBytes >= (skip ? SKIP_WINDOW_BUDGET : WINDOW_BUDGET)) {
        socket.pause()
        turnBytes = 0
        resumeTimer = setTimeout(resume, Math.max(1, windowEnds - now))
        resumeTimer.unref()
      } else if (turnBytes >= TURN_BYTES) {
        socket.pause()
        turnBytes = 0
        setImmediate(resume)
      }
    }
    socket.on('data', (chunk: Buffer) => {
      pace(chunk.length, skipping)
      let start = 0
      if (skipping) {
        const nl = chunk.indexOf(0x0a)
        if (nl === -1) return
        skipping = false
        start = nl + 1
      }
      // One decode per chunk (latin1: no validation, one byte per character), string scans after.
      const text = chunk.toString('latin1', start)
      let from = 0
      for (let nl = text.indexOf('\n'); nl !== -1; nl = text.indexOf('\n', from)) {
        const length = pending.length + (nl - from)
        if (length > maxLine) this.skipped(length)
        else lineDone(pending.length === 0 ? text.slice(from, nl) : pending + text.slice(from, nl))
        pending = ''
        from = nl + 1
      }
      if (from === text.length) return
      const rest = text.length - from
      if (pending.length + rest > maxLine) {
        // Too long to be a line we read: forget what we have and skip up to the next newline.
        this.skipped(pending.length + rest)
        pending = ''
        skipping = true
        return
      }
      pending += text.slice(from)
      if (pending.length > this.peakBuffered) this.peakBuffered = pending.length
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      clearTimeout(resumeTimer)
      if (!this.sockets.delete(socket)) return // evicted: already reported closed
      conn.open = false
      this.handlers.closed(conn)
      this.log.warn({ connections: this.sockets.size }, 'caddy access log disconnected')
    })
  }

  private skipped(atLeast: number): void {
    this.skippedLines++
    if (atPowerOfTwo(this.skippedLines)) {
      this.log.warn({ bytes_at_least: atLeast, max: this.limits.maxLine, skipped: this.skippedLines }, 'access log line longer than access_log_max_line skipped')
    }
  }

  async close(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    clearInterval(this.sweepTimer)
    for (const s of this.sockets.keys()) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
