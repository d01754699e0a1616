/**
 * The Moby kit's engine client (providers/moby/: shared by Docker, Podman and Swarm). HTTP
 * transport to a container engine that speaks the Docker Engine API: dockerd, and Podman's
 * service (Docker-compatible endpoints plus libpod ones on the same socket). Only transport lives
 * here: addresses, connection errors, status codes, JSON and newline-delimited JSON streams.
 * What the answers mean (containers, labels, states) is the caller's business
 * (moby/containers.ts and the container-*.ts operations for containers).
 *
 *   const engine = new EngineClient({ address: '/var/run/docker.sock', name: 'docker' })
 *   const list = await engine.json<ContainerSummary[]>('GET', '/containers/json', { query: { all: true }, signal })
 *
 * Errors are RelightErrors:
 * - RELIGHT_ERR_PROVIDER_UNAVAILABLE: the engine cannot be reached (socket missing, refused,
 *   reset, timeout). `context.engine` (kind `connect`) holds the system code (ENOENT, ECONNREFUSED…).
 * - RELIGHT_ERR_PROVIDER_AUTH: the socket exists but we may not open it (EACCES, EPERM), or the
 *   engine answered 401/403.
 * - RELIGHT_ERR_PROVIDER_UNAVAILABLE also for 502/503/504 (the mapping is providers/kit/http-errors.ts,
 *   shared with Slicer's client).
 * - RELIGHT_ERR_PROVIDER_FAILED: the engine answered with another non-2xx status. `context.engine` (kind
 *   `status`) holds it (callers map 404 to "not found", 304/409 to "already in that state"), its `engineMessage` the engine's own
 *   `message`.
 * - RELIGHT_ERR_ABORTED / the signal's reason when the caller's signal aborts.
 * - RELIGHT_ERR_CLOSED after close().
 */
import { Pool } from 'undici'
import type { Dispatcher } from 'undici'
import { RelightError, isRelightError } from '../../core/errors.js'
import { codeForConnectError, codeForStatus, httpStatus } from '../kit/http-errors.js'
import { jsonLines } from '../kit/json-lines.js'

export interface EngineClientOptions {
  /**
   * Where the engine listens: a unix socket path (`/var/run/docker.sock`, `unix:///path`,
   * `unix:/path`), or a TCP URL (`tcp://127.0.0.1:2375`, `http://host:port`).
   */
  readonly address: string
  /**
   * Prefix for every path, e.g. `/v1.41` (pin a Docker API version) or `/v4.0.0/libpod`
   * (Podman's native API). Empty by default: the engine's current version.
   */
  readonly apiPrefix?: string
  /** Name for messages: `docker`, `podman`. */
  readonly name?: string
  /** Per-request limit when the caller gives no signal of its own (ms). Default 60 s. */
  readonly requestTimeout?: number
  /**
   * Send requests through this dispatcher instead of a connection pool to `address` (tests:
   * undici MockAgent with recorded engine answers). The client does not close it.
   */
  readonly dispatcher?: Dispatcher
}

export type Query = Record<string, string | number | boolean | undefined | object>

export interface RequestOptions {
  readonly query?: Query
  /** JSON-encoded unless it is a Buffer/Uint8Array/stream (sent as is). */
  readonly body?: unknown
  readonly headers?: Record<string, string>
  readonly signal?: AbortSignal
}

export interface EngineResponse {
  readonly status: number
  readonly text: string
}

export interface ResolvedAddress {
  readonly origin: string
  readonly socketPath?: string
  /** For messages: the socket path or the URL. */
  readonly display: string
}

/** `/var/run/docker.sock`, `unix:///x.sock`, `tcp://h:p`, `http://h:p` → undici origin (+ socket). */
export function resolveEngineAddress(address: string): ResolvedAddress {
  const a = address.trim()
  if (a.startsWith('unix://')) return { origin: 'http://localhost', socketPath: a.slice('unix://'.length), display: a.slice('unix://'.length) }
  if (a.startsWith('unix:')) return { origin: 'http://localhost', socketPath: a.slice('unix:'.length), display: a.slice('unix:'.length) }
  if (a.startsWith('tcp://')) return { origin: `http://${a.slice('tcp://'.length).replace(/\/+$/, '')}`, display: a }
  if (a.startsWith('http://') || a.startsWith('https://')) {
    const url = new URL(a)
    return { origin: url.origin, display: a }
  }
  return { origin: 'http://localhost', socketPath: a, display: a }
}

/**
 * Objects (`filters: { label: ['a=b'] }`) become the JSON the Engine API expects; an array of
 * strings becomes a repeated parameter.
 */
export function encodeQuery(query: Query | undefined): string {
  if (!query) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue
    if (Array.isArray(value) && value.every((v) => typeof v === 'string')) {
      for (const v of value) params.append(key, v) // repeated parameter (e.g. import `changes`)
      continue
    }
    params.set(key, typeof value === 'object' ? JSON.stringify(value) : String(value))
  }
  const text = params.toString()
  return text ? `?${text}` : ''
}

/** Explain a connection failure in words a user can act on. */
export function describeConnectError(errno: string | undefined, display: string, name: string): string {
  switch (errno) {
    case 'ENOENT':
      return `the ${name} socket ${display} does not exist: is the ${name} daemon running, and is the socket path right?`
    case 'EACCES':
    case 'EPERM':
      return `permission denied on the ${name} socket ${display}: run the sidecar as a user in the socket's group (e.g. docker) or as root`
    case 'ECONNREFUSED':
      return `nothing accepts connections at ${display}: the ${name} daemon is not running or listens elsewhere`
    case 'ENOTSOCK':
      return `${display} is not a socket: check the ${name} socket setting`
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'ETIMEDOUT':
      return `connecting to the ${name} engine at ${display} timed out`
    default:
      return `cannot reach the ${name} engine at ${display}${errno ? ` (${errno})` : ''}`
  }
}

function errnoOf(err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && !code.startsWith('UND_ERR_SOCKET')) return code
    e = (e as { cause?: unknown }).cause
  }
  return typeof (err as { code?: unknown })?.code === 'string' ? ((err as { code: string }).code) : undefined
}

interface SharedConnections {
  /** Short requests: bounded pool. */
  readonly dispatcher: Dispatcher
  /**
   * Long-lived streams (`/events`, one per health-check wait): their own connections, so a
   * burst of streams can never take every connection short requests need.
   */
  readonly streams: Dispatcher
  /** Created here (closed by close()), or given by the caller (left open). */
  readonly owned: boolean
  closed: boolean
}

export class EngineClient {
  readonly name: string
  readonly address: ResolvedAddress
  readonly apiPrefix: string
  /** Connections shared by every prefix view of this client (see withPrefix). */
  private readonly shared: SharedConnections
  private readonly requestTimeout: number

  constructor(options: EngineClientOptions, shared?: SharedConnections) {
    this.name = options.name ?? 'docker'
    this.address = resolveEngineAddress(options.address)
    this.apiPrefix = (options.apiPrefix ?? '').replace(/\/+$/, '')
    this.requestTimeout = options.requestTimeout ?? 60_000
    const pool = (connections: number | null) =>
      new Pool(this.address.origin, {
        ...(this.address.socketPath ? { socketPath: this.address.socketPath } : {}),
        connections,
        keepAliveTimeout: 10_000,
        connectTimeout: 5_000,
      })
    this.shared = shared ?? {
      dispatcher: options.dispatcher ?? pool(16),
      streams: options.dispatcher ?? pool(null),
      owned: options.dispatcher === undefined,
      closed: false,
    }
  }

  /**
   * The same connections with another path prefix: Podman serves Docker-compatible paths and
   * `/v4.0.0/libpod/…` on one socket. Closing any view closes them all.
   */
  withPrefix(apiPrefix: string): EngineClient {
    return new EngineClient({ address: this.address.display, apiPrefix, name: this.name, requestTimeout: this.requestTimeout }, this.shared)
  }

  private get closed(): boolean {
    return this.shared.closed
  }

  /** A request whose answer is read whole. Non-2xx statuses reject (see the file comment). */
  async request(method: Dispatcher.HttpMethod, path: string, options: RequestOptions = {}): Promise<EngineResponse> {
    const { statusCode, body } = await this.dispatch(method, path, options, false)
    let text: string
    try {
      text = await body.text()
    } catch (err) {
      throw this.transportError(err, method, path, options.signal)
    }
    if (statusCode >= 200 && statusCode < 300) return { status: statusCode, text }
    throw this.statusError(statusCode, text, method, path)
  }

  /** A request answered with JSON. */
  async json<T>(method: Dispatcher.HttpMethod, path: string, options: RequestOptions = {}): Promise<T> {
    const { text } = await this.request(method, path, options)
    if (text.trim() === '') return undefined as T
    try {
      return JSON.parse(text) as T
    } catch (err) {
      throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `${this.name} answered ${method} ${path} with invalid JSON`, { provider: this.name }, { cause: err })
    }
  }

  /**
   * A long-lived request answered with newline-delimited JSON (`/events`, health streams).
   * Resolves once the engine accepted the request (status 2xx), so callers know the stream is
   * established before they look at current state. Yields one parsed object per line until the
   * engine closes the stream or the signal aborts; a dropped connection throws
   * RELIGHT_ERR_PROVIDER_UNAVAILABLE from the iterator.
   */
  async stream<T>(path: string, options: RequestOptions & { signal: AbortSignal }): Promise<AsyncIterable<T>> {
    const { statusCode, body } = await this.dispatch('GET', path, options, true)
    if (statusCode < 200 || statusCode >= 300) {
      const text = await body.text().catch(() => '')
      throw this.statusError(statusCode, text, 'GET', path)
    }
    return {
      [Symbol.asyncIterator]: () => jsonLines<T>(body, (err) => this.transportError(err, 'GET', path, options.signal)),
    }
  }

  /** Close connections. Idempotent; later calls reject with RELIGHT_ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.shared.closed) return
    this.shared.closed = true
    // a dispatcher given by the caller (tests: MockAgent) is the caller's to close
    if (this.shared.owned) {
      await Promise.all([this.shared.dispatcher.destroy().catch(() => undefined), this.shared.streams.destroy().catch(() => undefined)])
    }
  }

  private async dispatch(method: Dispatcher.HttpMethod, path: string, options: RequestOptions, streaming: boolean) {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', `${this.name} client is closed`, { provider: this.name })
    // Every short request is bounded, even with the caller's (possibly long-lived) signal: one
    // engine call that never answers must not stall the event loop that awaits it.
    const timeout = streaming ? undefined : AbortSignal.timeout(this.requestTimeout)
    const signal = options.signal && timeout ? AbortSignal.any([options.signal, timeout]) : (options.signal ?? (timeout as AbortSignal))
    if (signal.aborted) throw this.abortError(signal)
    const headers: Record<string, string> = { ...(options.headers ?? {}) }
    let body: Dispatcher.DispatchOptions['body']
    if (options.body !== undefined) {
      if (options.body instanceof Uint8Array || typeof (options.body as { pipe?: unknown }).pipe === 'function') {
        body = options.body as Buffer
        headers['content-type'] ??= 'application/octet-stream'
      } else {
        body = JSON.stringify(options.body)
        headers['content-type'] ??= 'application/json'
      }
    }
    try {
      return await (streaming ? this.shared.streams : this.shared.dispatcher).request({
        origin: this.address.origin,
        path: `${this.apiPrefix}${path}${encodeQuery(options.query)}`,
        method,
        headers,
        body: body ?? null,
        signal,
        // Long operations (stop with a grace period, image import) are bounded by the caller's signal.
        headersTimeout: 0,
        bodyTimeout: streaming ? 0 : this.requestTimeout,
      })
    } catch (err) {
      if (timeout?.aborted && !options.signal?.aborted) {
        throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `${this.name} did not answer ${method} ${path} within ${this.requestTimeout} ms`, {
          provider: this.name,
        })
      }
      throw this.transportError(err, method, path, signal)
    }
  }

  private abortError(signal: AbortSignal): RelightError {
    const reason: unknown = signal.reason
    if (isRelightError(reason)) return reason
    return new RelightError('RELIGHT_ERR_ABORTED', `${this.name} request aborted`, { provider: this.name }, { cause: reason })
  }

  private transportError(err: unknown, method: string, path: string, signal: AbortSignal | undefined): RelightError {
    if (isRelightError(err)) return err
    if (signal?.aborted) return this.abortError(signal)
    if (this.closed) return new RelightError('RELIGHT_ERR_CLOSED', `${this.name} client is closed`, { provider: this.name })
    const errno = errnoOf(err)
    const message = describeConnectError(errno, this.address.display, this.name)
    const code = codeForConnectError(errno)
    return new RelightError(code, message, { provider: this.name, engine: { kind: 'connect', ...(errno !== undefined ? { errno } : {}), request: `${method} ${path}` } }, { cause: err })
  }

  private statusError(status: number, text: string, method: string, path: string): RelightError {
    let engineMessage = text.trim()
    try {
      const parsed = JSON.parse(text) as { message?: unknown; cause?: unknown }
      if (typeof parsed.message === 'string') engineMessage = parsed.message
    } catch {
      // plain text body
    }
    const code = codeForStatus(status)
    return new RelightError(code, `${this.name} refused ${method} ${path}: ${status} ${engineMessage || '(no message)'}`, {
      provider: this.name,
      engine: { kind: 'status', status, engineMessage },
    })
  }
}

/** The engine's HTTP status carried by a RelightError from EngineClient, if any. */
export const engineStatus = httpStatus
