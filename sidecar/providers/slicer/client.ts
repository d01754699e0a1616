/**
 * A small client for the SlicerVM REST API over http(s) or a unix socket. Every path segment
 * that comes from data (host group, hostname, tag) is path-encoded here, in one place, so
 * nothing a VM or a request carries can change which endpoint is called.
 */
import { homedir } from 'node:os'
import { isAbsolute, resolve as resolvePath } from 'node:path'
import { Agent, request } from 'undici'
import { type ErrorCode, type ErrorContext, RelightError, toRelightError, throwIfAborted } from '../../core/errors.js'
import { withDeadline } from '../../core/timers.js'
import { codeForConnectError, codeForStatus } from '../kit/http-errors.js'

/** A node as the API reports it; every field but hostname may be missing. */
export interface SlicerNode {
  readonly hostname: string
  readonly hostgroup?: string
  readonly ip?: string
  readonly tags?: readonly string[]
  readonly status?: string
  readonly created_at?: string
  readonly persistent?: boolean
}

export interface SlicerEndpoint {
  /** Origin and path prefix requests go to (`http://localhost` on a socket). */
  readonly base: string
  readonly socketPath?: string
  /** What to show a user: the URL or the socket path. */
  readonly display: string
}

/** `http(s)://…` as it is; anything else is a unix socket path (`unix:` and `~/` allowed). */
export function parseEndpoint(url: string, baseDir = process.cwd(), home = homedir()): SlicerEndpoint {
  if (/^https?:\/\//i.test(url)) {
    const u = new URL(url)
    const base = `${u.origin}${u.pathname.replace(/\/+$/, '')}`
    return { base, display: base } // never show user:password from the URL
  }
  let path = url.startsWith('unix:') ? url.slice('unix:'.length) : url
  if (path === '~' || path.startsWith('~/')) path = home + path.slice(1)
  if (!isAbsolute(path)) path = resolvePath(baseDir, path)
  return { base: 'http://localhost', socketPath: path, display: path }
}

/**
 * One path segment, encoded. `.` and `..` (in any encoding) would be resolved away by URL
 * parsing and address another endpoint, so they are refused.
 */
function seg(value: string): string {
  if (/^(\.|%2e)+$/i.test(value)) throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `refusing the path segment ${JSON.stringify(value)}`, { provider: 'slicer' })
  return encodeURIComponent(value)
}

export const paths = {
  nodes: (tag?: string) => (tag === undefined ? '/nodes' : `/nodes?tag=${seg(tag)}`),
  groupNodes: (group: string) => `/hostgroup/${seg(group)}/nodes`,
  groupNode: (group: string, hostname: string) => `/hostgroup/${seg(group)}/nodes/${seg(hostname)}`,
  vm: (hostname: string, op: string, query = '') => `/vm/${seg(hostname)}/${op}${query}`,
  healthz: () => '/healthz',
} as const

export interface ApiResult {
  readonly status: number
  readonly body: unknown
}

const REQUEST_TIMEOUT_MS = 30_000

export class SlicerClient {
  readonly endpoint: SlicerEndpoint
  private readonly token: string | undefined
  private readonly agent: Agent
  private closed = false

  constructor(url: string, token: string | undefined, baseDir?: string) {
    this.endpoint = parseEndpoint(url, baseDir)
    this.token = token
    this.agent = new Agent(this.endpoint.socketPath ? { connect: { socketPath: this.endpoint.socketPath } } : {})
  }

  /**
   * One API call. Network failures become RELIGHT_ERR_PROVIDER_UNAVAILABLE, 401/403
   * RELIGHT_ERR_PROVIDER_AUTH; other statuses are returned for the caller to judge
   * (see `fail` for the usual mapping).
   */
  async call(method: 'GET' | 'HEAD' | 'POST' | 'DELETE', path: string, signal: AbortSignal, body?: unknown): Promise<ApiResult> {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'slicer client is closed', { provider: 'slicer' })
    throwIfAborted(signal)
    const headers: Record<string, string> = { 'user-agent': 'relight-sidecar', accept: 'application/json' }
    if (this.token !== undefined) headers.authorization = `Bearer ${this.token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    // The request and its answer's body, within REQUEST_TIMEOUT_MS.
    const bound = withDeadline(signal, REQUEST_TIMEOUT_MS)
    try {
      return await this.send(method, path, headers, signal, bound.signal, body)
    } finally {
      bound.clear()
    }
  }

  private async send(method: 'GET' | 'HEAD' | 'POST' | 'DELETE', path: string, headers: Record<string, string>, signal: AbortSignal, bounded: AbortSignal, body?: unknown): Promise<ApiResult> {
    let res: Awaited<ReturnType<typeof request>>
    try {
      res = await request(`${this.endpoint.base}${path}`, {
        method,
        headers,
        dispatcher: this.agent,
        signal: bounded,
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      })
    } catch (err) {
      if (signal.aborted) throw toRelightError(signal.reason, 'RELIGHT_ERR_ABORTED', { provider: 'slicer' })
      const code = (err as NodeJS.ErrnoException).code
      throw new RelightError(
        codeForConnectError(code),
        `cannot reach the Slicer API at ${this.endpoint.display}${code ? ` (${code})` : ''}`,
        { provider: 'slicer', retryAfter: 5 },
        { cause: err },
      )
    }
    let text = ''
    try {
      text = method === 'HEAD' ? '' : await res.body.text()
    } catch (err) {
      if (signal.aborted) throw toRelightError(signal.reason, 'RELIGHT_ERR_ABORTED', { provider: 'slicer' })
      throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', `the Slicer API at ${this.endpoint.display} broke off its answer`, { provider: 'slicer', retryAfter: 5 }, { cause: err })
    } finally {
      if (method === 'HEAD') await res.body.dump().catch(() => undefined)
    }
    let parsed: unknown = text
    if (text !== '') {
      try {
        parsed = JSON.parse(text)
      } catch {
        // plain-text answer: keep the text
      }
    }
    if (codeForStatus(res.statusCode) === 'RELIGHT_ERR_PROVIDER_AUTH') {
      throw new RelightError(
        'RELIGHT_ERR_PROVIDER_AUTH',
        `the Slicer API at ${this.endpoint.display} rejected the token (HTTP ${res.statusCode}${describe(parsed)}): set providers.slicer.token to a valid Slicer API token`,
        { provider: 'slicer', engine: { kind: 'status', status: res.statusCode, engineMessage: describe(parsed).replace(/^: /, '') } },
      )
    }
    return { status: res.statusCode, body: parsed }
  }

  /** Map an unexpected answer to a RelightError (404 → `notFound`, 5xx → unavailable, else failed). */
  fail(result: ApiResult, what: string, notFound: ErrorCode = 'RELIGHT_ERR_PROVIDER_FAILED', context: ErrorContext = {}): RelightError {
    const code = codeForStatus(result.status, notFound)
    return new RelightError(code, `${what}: Slicer API answered HTTP ${result.status}${describe(result.body)}`, {
      provider: 'slicer',
      engine: { kind: 'status', status: result.status, engineMessage: describe(result.body).replace(/^: /, '') },
      ...(code === 'RELIGHT_ERR_PROVIDER_UNAVAILABLE' ? { retryAfter: 5 } : {}),
      ...context,
    })
  }

  async listNodes(signal: AbortSignal): Promise<SlicerNode[]> {
    const result = await this.call('GET', paths.nodes(), signal)
    if (result.status !== 200) throw this.fail(result, 'listing nodes (GET /nodes)')
    if (!Array.isArray(result.body)) {
      throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'GET /nodes did not answer with a JSON array', { provider: 'slicer' })
    }
    return result.body.filter((n): n is SlicerNode => n !== null && typeof n === 'object' && typeof (n as SlicerNode).hostname === 'string')
  }

  /** Release connections. Idempotent; later calls reject with RELIGHT_ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await this.agent.close().catch(() => undefined)
  }
}

/** `: message (code)` from a Slicer JSON error `{"error","code"}` or a short text body. */
function describe(body: unknown): string {
  if (body !== null && typeof body === 'object') {
    const { error, code } = body as { error?: unknown; code?: unknown }
    if (typeof error === 'string') return `: ${error}${typeof code === 'string' || typeof code === 'number' ? ` (${code})` : ''}`
    return ''
  }
  if (typeof body === 'string' && body.trim() !== '') return `: ${body.trim().slice(0, 200)}`
  return ''
}
