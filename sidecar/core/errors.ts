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
} as const

export type ErrorCode = keyof typeof ERROR_CODES

export interface ErrorContext {
  backend?: string
  host?: string
  provider?: string
  /** Seconds a client should wait before retrying (503s). */
  retryAfter?: number
  [key: string]: unknown
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
