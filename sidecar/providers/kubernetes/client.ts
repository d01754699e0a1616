/**
 * HTTP transport to the Kubernetes API server (undici over TLS): JSON requests, merge patches,
 * and watch streams (one JSON event per line). Only transport lives here; what the objects mean
 * is in workloads.ts, leases.ts and provider.ts.
 *
 * Errors are RelightErrors:
 * Codes come from the kit's one table (providers/kit/http-errors.ts), as for every engine:
 * - RELIGHT_ERR_PROVIDER_UNAVAILABLE: the server cannot be reached (refused, reset, timeout, TLS),
 *   or it answered 502/503/504/429 (it cannot serve now).
 * - RELIGHT_ERR_PROVIDER_AUTH: 401 (credentials rejected) or 403 (RBAC denied). The message says
 *   which verb on which resource was denied; `context.engine` (kind `status`: status, verb,
 *   resource, namespace) holds it.
 * - RELIGHT_ERR_PROVIDER_FAILED: any other non-2xx answer; `context.engine.status` (404, 409, 410…)
 *   and `context.engine.reason` (the Status object's reason: NotFound, Conflict, Expired, Gone…).
 * - the signal's reason (a RelightError) or RELIGHT_ERR_ABORTED when the caller's signal aborts.
 * - RELIGHT_ERR_CLOSED after close().
 */
import { readFileSync } from 'node:fs'
import { Agent, type Dispatcher } from 'undici'
import { RelightError, isRelightError } from '../../core/errors.js'
import { codeForStatus } from '../kit/http-errors.js'
import type { Credentials } from './credentials.js'
import { jsonLines } from '../kit/json-lines.js'

export interface KubeClientOptions {
  /** Per-request limit (ms) for short requests. Default 30 s. */
  readonly requestTimeout?: number
  /** Send requests through this dispatcher (tests: undici MockAgent). Not closed by close(). */
  readonly dispatcher?: Dispatcher
  /**
   * How long past a watch's `timeoutSeconds` (the server's promise to end it) the client waits
   * for a byte before it gives the watch up as stalled (ms). Default 30 s (tests: shorter).
   */
  readonly watchGrace?: number
}

/** timeoutSeconds sent on a watch that names none: the server ends it by then, and the client gives up 30 s later. */
export const DEFAULT_WATCH_TIMEOUT_S = 300
const DEFAULT_WATCH_GRACE_MS = 30_000

/** A Kubernetes `Status` answer. */
export interface KubeStatus {
  kind?: string
  status?: string
  message?: string
  reason?: string
  code?: number
  details?: { name?: string; group?: string; kind?: string }
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR'
  object: T
}

export type Query = Record<string, string | number | boolean | undefined>

export interface KubeRequest {
  readonly query?: Query
  readonly body?: unknown
  /** Content type of the body: JSON, or a merge patch. */
  readonly contentType?: 'application/json' | 'application/merge-patch+json'
  readonly signal?: AbortSignal
}

/** What a path means, for messages: `patch deployments/scale "web" in namespace "shop"`. */
export interface RequestMeaning {
  readonly verb: string
  readonly resource: string
  readonly namespace?: string
  readonly name?: string
}

const VERBS: Record<string, string> = { GET: 'get', POST: 'create', PUT: 'update', PATCH: 'patch', DELETE: 'delete' }

/**
 * `/apis/apps/v1/namespaces/ns/deployments/web/scale` → patch deployments/scale "web" in "ns".
 * Good enough for the handful of paths this provider uses.
 */
export function describePath(method: string, path: string, query?: Query): RequestMeaning {
  const parts = path.split('?')[0]?.split('/').filter(Boolean) ?? []
  // strip /api/v1 or /apis/<group>/<version>
  const rest = parts[0] === 'api' ? parts.slice(2) : parts.slice(3)
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1]
    rest.splice(0, 2)
  }
  const [resource = '', name, sub] = rest
  const watch = query?.watch === 1 || query?.watch === true || query?.watch === '1' || query?.watch === 'true'
  let verb = VERBS[method] ?? method.toLowerCase()
  if (method === 'GET' && name === undefined) verb = watch ? 'watch' : 'list'
  return {
    verb,
    resource: sub ? `${resource}/${sub}` : resource,
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined ? { name } : {}),
  }
}

/** `list deployments in namespace "shop"` / `patch deployments/scale "web" in namespace "shop"`. */
export function describeMeaning(m: RequestMeaning): string {
  return `${m.verb} ${m.resource}${m.name ? ` "${m.name}"` : ''}${m.namespace ? ` in namespace "${m.namespace}"` : ' (all namespaces)'}`
}

function errnoOf(err: unknown): string | undefined {
  let e: unknown = err
  for (let depth = 0; depth < 4 && e && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string') return code
    e = (e as { cause?: unknown }).cause
  }
  return undefined
}

export class KubeClient {
  readonly server: string
  private readonly creds: Credentials
  private readonly dispatcher: Dispatcher
  private readonly streams: Dispatcher
  private readonly owned: boolean
  private readonly requestTimeout: number
  private readonly watchGrace: number
  private token: string | undefined
  private closed = false

  constructor(creds: Credentials, options: KubeClientOptions = {}) {
    this.creds = creds
    this.server = creds.server
    this.token = creds.token
    this.requestTimeout = options.requestTimeout ?? 30_000
    this.watchGrace = options.watchGrace ?? DEFAULT_WATCH_GRACE_MS
    const connect = {
      ...(creds.ca !== undefined ? { ca: creds.ca } : {}),
      ...(creds.cert !== undefined ? { cert: creds.cert, key: creds.key } : {}),
      ...(creds.insecureSkipTlsVerify ? { rejectUnauthorized: false } : {}),
      timeout: 5_000,
    }
    this.owned = options.dispatcher === undefined
    this.dispatcher = options.dispatcher ?? new Agent({ connect, connections: 16, keepAliveTimeout: 10_000 })
    // Watches hold their connection for minutes: their own pool, so they never starve requests.
    this.streams = options.dispatcher ?? new Agent({ connect, keepAliveTimeout: 10_000 })
  }

  /** A JSON request; non-2xx rejects (see the file comment). */
  async json<T>(method: Dispatcher.HttpMethod, path: string, options: KubeRequest = {}): Promise<T> {
    const attempt = async (): Promise<T> => {
      const { statusCode, body } = await this.dispatch(method, path, options)
      let text: string
      try {
        text = await body.text()
      } catch (err) {
        throw this.transportError(err, method, path, options)
      }
      if (statusCode < 200 || statusCode >= 300) throw this.statusError(statusCode, text, method, path, options.query)
      try {
        return JSON.parse(text) as T
      } catch (err) {
        throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `the API server answered ${method} ${path} with invalid JSON`, { provider: 'kubernetes' }, { cause: err })
      }
    }
    const used = this.token
    try {
      return await attempt()
    } catch (err) {
      // A projected service-account token is rotated on disk: read it again once on a 401 (or
      // use the one a parallel request just read).
      if (this.statusOf(err) === 401 && (this.token !== used || this.reloadToken())) return attempt()
      throw err
    }
  }

  /**
   * Open a watch (`?watch=1`); resolves once the server accepted it, then yields one event per
   * line until the server ends the stream (normal, every few minutes) or the signal aborts. A
   * dropped connection throws RELIGHT_ERR_PROVIDER_UNAVAILABLE from the iterator, and so does a
   * stalled one: the server promises to end the watch after `timeoutSeconds` (sent always,
   * default 300), so a stream silent for timeoutSeconds + watchGrace is given up (a half-open
   * connection, a proxy that swallowed the end) instead of waiting for ever.
   */
  async watch<T>(path: string, query: Query, signal: AbortSignal): Promise<AsyncIterable<WatchEvent<T>>> {
    const timeoutSeconds = Number(query.timeoutSeconds ?? DEFAULT_WATCH_TIMEOUT_S)
    const fullQuery = { ...query, timeoutSeconds, watch: 1, allowWatchBookmarks: true }
    const stall = timeoutSeconds * 1000 + this.watchGrace
    const { statusCode, body } = await this.dispatch('GET', path, { query: fullQuery, signal }, stall)
    if (statusCode < 200 || statusCode >= 300) {
      const text = await body.text().catch(() => '')
      throw this.statusError(statusCode, text, 'GET', path, fullQuery)
    }
    return {
      [Symbol.asyncIterator]: () => jsonLines<WatchEvent<T>>(body, (err) => this.transportError(err, 'GET', path, { signal, query: fullQuery })),
    }
  }

  /** The HTTP status a RelightError from this client carries, if any. */
  statusOf(err: unknown): number | undefined {
    if (!isRelightError(err)) return undefined
    return err.context.engine?.kind === 'status' ? err.context.engine.status : undefined
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    if (this.owned) await Promise.all([this.dispatcher.destroy().catch(() => undefined), this.streams.destroy().catch(() => undefined)])
  }

  private reloadToken(): boolean {
    if (!this.creds.tokenFile) return false
    try {
      const fresh = readFileSync(this.creds.tokenFile, 'utf8').trim()
      if (fresh === '' || fresh === this.token) return false
      this.token = fresh
      return true
    } catch {
      return false
    }
  }

  /** `stall`: a watch stream, given up after so many ms without a byte (headers or body). */
  private async dispatch(method: Dispatcher.HttpMethod, path: string, options: KubeRequest, stall?: number) {
    const streaming = stall !== undefined
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the kubernetes client is closed', { provider: 'kubernetes' })
    const timeout = streaming ? undefined : AbortSignal.timeout(this.requestTimeout)
    const signal = options.signal && timeout ? AbortSignal.any([options.signal, timeout]) : (options.signal ?? (timeout as AbortSignal))
    if (signal.aborted) throw this.abortError(signal)
    const headers: Record<string, string> = { accept: 'application/json' }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    let body: string | null = null
    if (options.body !== undefined) {
      body = JSON.stringify(options.body)
      headers['content-type'] = options.contentType ?? 'application/json'
    }
    const url = new URL(this.server)
    const prefix = url.pathname.replace(/\/+$/, '')
    try {
      return await (streaming ? this.streams : this.dispatcher).request({
        origin: url.origin,
        path: `${prefix}${path}${encodeQuery(options.query)}`,
        method,
        headers,
        body,
        signal,
        headersTimeout: stall ?? this.requestTimeout,
        bodyTimeout: stall ?? this.requestTimeout,
      })
    } catch (err) {
      if (timeout?.aborted && !options.signal?.aborted) {
        throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `the API server ${this.server} did not answer ${method} ${path} within ${this.requestTimeout} ms`, {
          provider: 'kubernetes',
        })
      }
      throw this.transportError(err, method, path, { ...options, signal })
    }
  }

  private abortError(signal: AbortSignal): RelightError {
    const reason: unknown = signal.reason
    if (isRelightError(reason)) return reason
    return new RelightError('RELIGHT_ERR_ABORTED', 'kubernetes request aborted', { provider: 'kubernetes' }, { cause: reason })
  }

  private transportError(err: unknown, method: string, path: string, options: KubeRequest): RelightError {
    if (isRelightError(err)) return err
    if (options.signal?.aborted) return this.abortError(options.signal)
    if (this.closed) return new RelightError('RELIGHT_ERR_CLOSED', 'the kubernetes client is closed', { provider: 'kubernetes' })
    const errno = errnoOf(err)
    const tls = errno !== undefined && /CERT|SSL|TLS|SELF_SIGNED|UNABLE_TO/.test(errno)
    const stalled = errno === 'UND_ERR_BODY_TIMEOUT' || errno === 'UND_ERR_HEADERS_TIMEOUT'
    const message = tls
      ? `TLS with the API server ${this.server} failed (${errno}): check the CA of ${this.creds.source}`
      : stalled
        ? `the API server ${this.server} went silent on ${method} ${path} past its timeout (${errno}); the connection is given up`
        : `cannot reach the API server ${this.server}${errno ? ` (${errno})` : ''}`
    return new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', message, { provider: 'kubernetes', engine: { kind: 'connect', ...(errno !== undefined ? { errno } : {}), request: `${method} ${path}` } }, { cause: err })
  }

  private statusError(status: number, text: string, method: string, path: string, query?: Query): RelightError {
    let parsed: KubeStatus = {}
    try {
      parsed = JSON.parse(text) as KubeStatus
    } catch {
      parsed = { message: text.trim() }
    }
    const meaning = describePath(method, path, query)
    const apiMessage = parsed.message ?? ''
    const code = codeForStatus(status)
    let message: string
    if (status === 401) {
      message = `the API server ${this.server} rejected the credentials from ${this.creds.source} (401 Unauthorized): the token or client certificate is wrong or expired`
    } else if (status === 403) {
      message = `RBAC denies ${describeMeaning(meaning)} to the sidecar's identity: grant the verb "${meaning.verb}" on "${meaning.resource}" (see examples/kubernetes/rbac.yaml)${apiMessage ? `. API server: ${apiMessage}` : ''}`
    } else {
      message = `the API server refused ${describeMeaning(meaning)}: ${status} ${parsed.reason ?? ''}${apiMessage ? ` ${apiMessage}` : ''}`.trim()
    }
    return new RelightError(code, message, {
      provider: 'kubernetes',
      engine: {
        kind: 'status',
        status,
        engineMessage: apiMessage,
        ...(parsed.reason ? { reason: parsed.reason } : {}),
        verb: meaning.verb,
        resource: meaning.resource,
        ...(meaning.namespace ? { namespace: meaning.namespace } : {}),
      },
    })
  }
}

export function encodeQuery(query: Query | undefined): string {
  if (!query) return ''
  const params = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) if (value !== undefined) params.set(key, String(value))
  const text = params.toString()
  return text ? `?${text}` : ''
}
