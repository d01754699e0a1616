/**
 * Typed errors with stable codes. A code is never reused for another meaning; each is listed in
 * the README ("Error codes"). HTTP mapping lives in one place: server/responses.ts.
 */

export const ERROR_CODES = {
  RELIGHT_ERR_CONFIG: 'The configuration is invalid.',
  RELIGHT_ERR_HOST_INVALID: 'The Host (or domain) is not a valid DNS name.',
  RELIGHT_ERR_HOST_UNKNOWN: 'No backend serves this host.',
  RELIGHT_ERR_BACKEND_NOT_FOUND: 'The provider does not know this backend (it was removed).',
  RELIGHT_ERR_WAKE_TIMEOUT: 'The backend did not become ready within wake_timeout.',
  RELIGHT_ERR_BACKEND_EXITED: 'The backend exited while it was being woken.',
  RELIGHT_ERR_PROVIDER_UNAVAILABLE: 'The provider engine cannot be reached (socket missing, API down).',
  RELIGHT_ERR_PROVIDER_FAILED: 'The provider engine refused or failed the operation.',
  RELIGHT_ERR_PROVIDER_AUTH: 'The provider engine rejected our credentials (token, socket permission).',
  RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED: 'The backend or provider does not support this sleep mode.',
  RELIGHT_ERR_SLEEP_REFUSED: 'The backend stays awake: another sidecar saw recent activity, or the shared activity could not be checked.',
  RELIGHT_ERR_CLOSED: 'The object was closed and refuses new work.',
  RELIGHT_ERR_ABORTED: 'The operation was cancelled (shutdown or timeout).',
  RELIGHT_ERR_UNAUTHORIZED: 'Missing or wrong admin token.',
  RELIGHT_ERR_STATEFUL_GONE: 'The session token does not decrypt or matches no upstream.',
  RELIGHT_ERR_STATEFUL_UNRESOLVED: 'A stateful upstream host name has never resolved to an address.',
  RELIGHT_ERR_NOT_FOUND: 'No such admin endpoint or operation.',
  RELIGHT_ERR_BAD_REQUEST: 'The admin request is malformed (parameters, body).',
  RELIGHT_ERR_INTERNAL: 'An unexpected error inside the sidecar (a bug); the log has it.',
  RELIGHT_ERR_PORT_IN_USE: 'Another program holds the port a process app must listen on; the app is not started and nothing is routed there.',
  RELIGHT_ERR_RESTART_BACKOFF: 'The backend keeps exiting and waits for its next restart (backoff); requests are refused until then.',
  RELIGHT_ERR_TOO_MANY_FAILURES: 'Too many wrong admin credentials from this client address; it must wait (Retry-After) before the next is checked.',
  RELIGHT_ERR_CAPACITY: 'Waking the backend would exceed max_awake and no awake backend can be put to sleep (each has requests in flight or must stay awake); retry after Retry-After.',
  RELIGHT_ERR_SCHEDULED_ASLEEP: 'The backend is inside an asleep_during window and is not woken before it ends (Retry-After).',
  RELIGHT_ERR_HEADERS_TOO_LARGE: 'The request headers are larger than the sidecar reads (64 KiB); the request is refused, not routed.',
} as const

export type ErrorCode = keyof typeof ERROR_CODES

/**
 * What an engine said when a call to it failed, for the callers that decide by it (a 404 is
 * "not found", a 304 or 409 "already so"): its HTTP answer, or why no connection was made.
 */
export type EngineDetail =
  | {
      readonly kind: 'status'
      readonly status: number
      /** The engine's own words (its JSON `message`, or the body). */
      readonly engineMessage: string
      /** A machine-readable reason when the API has one (Kubernetes Status: NotFound, Conflict, Expired…). */
      readonly reason?: string
      /** What was asked, in the API's terms (Kubernetes: verb, resource, namespace). */
      readonly verb?: string
      readonly resource?: string
      readonly namespace?: string
    }
  | { readonly kind: 'connect'; readonly errno?: string; readonly request: string }

/** Typed context of a RelightError; server/responses.ts maps code + context to HTTP. */
export interface ErrorContext {
  backend?: string
  host?: string
  provider?: string
  /** Seconds a client should wait before retrying (503s). */
  retryAfter?: number
  /** The engine's answer or connection failure (RELIGHT_ERR_PROVIDER_* from an engine client). */
  engine?: EngineDetail
  /** The sleep mode refused (RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED). */
  mode?: string
  /** The provider operation that failed (checkpoint, restore). */
  operation?: string
  /** Exit code of a backend that exited while waking (RELIGHT_ERR_BACKEND_EXITED). */
  exitCode?: number
  /** Where a configuration came from (RELIGHT_ERR_CONFIG): a file path, or `environment`. */
  source?: string
  /** A stateful upstream's host name (RELIGHT_ERR_STATEFUL_UNRESOLVED). */
  upstreamHost?: string
  /** Why a backend stays awake or a request was refused, in words (RELIGHT_ERR_SLEEP_REFUSED); sent in problem+json. */
  reason?: string
  /** When an asleep_during window ends, in words (RELIGHT_ERR_SCHEDULED_ASLEEP): the one detail its public answer names. */
  until?: string
  /** The port another program holds, and that program's pid when it can be seen (RELIGHT_ERR_PORT_IN_USE). */
  port?: number
  holderPid?: number
}

export class RelightError extends Error {
  readonly code: ErrorCode
  readonly context: ErrorContext

  constructor(code: ErrorCode, message: string, context: ErrorContext = {}, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'RelightError'
    this.code = code
    this.context = context
  }
}

export function isRelightError(err: unknown, code?: ErrorCode): err is RelightError {
  return err instanceof RelightError && (code === undefined || err.code === code)
}

/** Wrap anything thrown into a RelightError, keeping a RelightError as it is. */
export function toRelightError(err: unknown, fallback: ErrorCode, context: ErrorContext = {}): RelightError {
  if (err instanceof RelightError) return err
  if (err instanceof Error && err.name === 'AbortError') {
    return new RelightError('RELIGHT_ERR_ABORTED', 'operation aborted', context, { cause: err })
  }
  const message = err instanceof Error ? err.message : String(err)
  return new RelightError(fallback, message, context, { cause: err })
}

/** signal.throwIfAborted(), but always a RelightError (RELIGHT_ERR_ABORTED unless the reason is one). */
export function throwIfAborted(signal: AbortSignal, context: ErrorContext = {}): void {
  if (signal.aborted) throw toRelightError(signal.reason, 'RELIGHT_ERR_ABORTED', context)
}
