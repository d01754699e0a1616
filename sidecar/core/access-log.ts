import { createServer, type Server, type Socket } from 'node:net'
import type { Logger } from 'pino'
import { claimSocketPath } from './unix-socket.js'

/** Header the sidecar puts on every answer it gives instead of the backend (denials, waiting page). */
export const REPLY_HEADER = 'X-Relight-Reply'

export interface FinishedRequest {
  readonly host: string
  readonly status: number
}

export interface AccessLogHandlers {
  /** One request Caddy finished proxying (answers the sidecar gave itself are filtered out). */
  finished(entry: FinishedRequest): void
  /** Connection count changed: 0 means no Caddy is sending its log. */
  connections(count: number): void
}

/**
 * Longest line kept. Caddy accepts 1 MB of request headers by default and JSON escaping can
 * grow them several times; a line cut short would lose a "finished" and pin its backend awake.
 */
const MAX_LINE = 16 << 20

const REPLY_KEY = `"${REPLY_HEADER}":`

/**
 * Extract what we need from one JSON line of Caddy's access log; undefined for anything else,
 * and for answers the sidecar gave itself (their resp_headers carry X-Relight-Reply).
 *
 * Lines are scanned rather than parsed: JSON.parse of every ~1 KB line was a tenth of the
 * sidecar's CPU under load. The scan relies on what JSON and Caddy guarantee: inside a string
 * value every `"` is escaped, so `"host":"` and `"X-Relight-Reply":` can only be keys; the
 * request object comes before `resp_headers`, the last key. Anything unexpected is parsed.
 */
export function parseAccessLine(line: string): FinishedRequest | undefined {
  const respAt = line.lastIndexOf('"resp_headers":')
  const requestAt = line.indexOf('"request":{')
  const hostAt = line.indexOf('"host":"', requestAt)
  if (respAt !== -1 && requestAt !== -1 && hostAt !== -1 && hostAt < respAt) {
    const start = hostAt + 8
    const end = line.indexOf('"', start)
    const host = line.slice(start, end)
    if (end > start && !host.includes('\\')) {
      if (line.indexOf(REPLY_KEY, respAt) !== -1) return undefined
      const statusAt = line.lastIndexOf('"status":', respAt)
      return { host, status: statusAt === -1 ? 0 : Number.parseInt(line.slice(statusAt + 9, statusAt + 13), 10) || 0 }
    }
  }
  return parseAccessLineSlow(line)
}

function parseAccessLineSlow(line: string): FinishedRequest | undefined {
  let entry: unknown
  try {
    entry = JSON.parse(line)
  } catch {
    return undefined
  }
  if (typeof entry !== 'object' || entry === null) return undefined
  const e = entry as { request?: { host?: unknown }; status?: unknown; resp_headers?: Record<string, unknown> }
  const host = e.request?.host
  if (typeof host !== 'string') return undefined
  const headers = e.resp_headers
  if (headers && typeof headers === 'object' && REPLY_HEADER in headers) return undefined
  return { host, status: typeof e.status === 'number' ? e.status : 0 }
}

/**
 * Listens where Caddy's `log { output net ADDRESS  format json }` connects (unix:/path or
 * host:port) and reports every finished request. Caddy 2.6 connects at start-up (and refuses to
 * start if nobody listens) and redials at most every 10 s after a broken connection.
 */
export class AccessLogServer {
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()

  constructor(
    private readonly address: string,
    private readonly handlers: AccessLogHandlers,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((socket) => this.accept(socket))
    this.server = server
    const unixPath = this.address.startsWith('unix:') ? this.address.slice('unix:'.length) : undefined
    if (unixPath !== undefined) await claimSocketPath(unixPath, 'access_log')
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      if (unixPath !== undefined) {
        server.listen(unixPath, () => resolve())
      } else {
        const colon = this.address.lastIndexOf(':')
        const host = this.address.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1'
        server.listen(Number(this.address.slice(colon + 1)), host, () => resolve())
      }
    })
    server.on('error', (err) => this.log.error({ err }, 'access log listener failed'))
  }

  /** The bound address (the real port when listening on :0). */
  get boundAddress(): string {
    const addr = this.server?.address()
    if (addr && typeof addr === 'object') return `${addr.address}:${addr.port}`
    return this.address
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket)
    this.handlers.connections(this.sockets.size)
    this.log.info({ connections: this.sockets.size }, 'caddy access log connected')
    let buffered = ''
    socket.setEncoding('utf8')
    socket.on('data', (chunk: string) => {
      buffered += chunk
      let nl: number
      while ((nl = buffered.indexOf('\n')) !== -1) {
        const line = buffered.slice(0, nl)
        buffered = buffered.slice(nl + 1)
        const entry = parseAccessLine(line)
        if (entry) this.handlers.finished(entry)
      }
      if (buffered.length > MAX_LINE) buffered = '' // not Caddy's JSON; drop rather than grow
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      this.sockets.delete(socket)
      this.handlers.connections(this.sockets.size)
      this.log.warn({ connections: this.sockets.size }, 'caddy access log disconnected')
    })
  }

  async close(): Promise<void> {
    const server = this.server
    if (!server) return
    this.server = undefined
    for (const s of this.sockets) s.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  }
}
