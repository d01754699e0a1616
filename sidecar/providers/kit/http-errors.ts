/**
 * The one mapping from an engine's HTTP answer or connection failure to an error code, shared by
 * every HTTP engine client (the Moby kit's EngineClient, Slicer's client, the Kubernetes
 * client), so one engine answer gives one code whichever provider met it:
 * - cannot connect: EACCES/EPERM → RELIGHT_ERR_PROVIDER_AUTH, else RELIGHT_ERR_PROVIDER_UNAVAILABLE;
 * - 401/403 → RELIGHT_ERR_PROVIDER_AUTH;
 * - 502/503/504 (a proxy or the engine says it cannot serve now) and 429 (too many requests:
 *   the engine asks to come back later) → RELIGHT_ERR_PROVIDER_UNAVAILABLE;
 * - 404 → the caller's choice (an unknown backend, or a failure of the call itself);
 * - any other status → RELIGHT_ERR_PROVIDER_FAILED.
 * The status travels in the error's `context.engine` (kind `status`); `httpStatus()` reads it back.
 */
import { type ErrorCode, isRelightError } from '../../core/errors.js'

const AUTH_ERRNOS = new Set(['EACCES', 'EPERM'])

export function codeForConnectError(errno: string | undefined): ErrorCode {
  return errno !== undefined && AUTH_ERRNOS.has(errno) ? 'RELIGHT_ERR_PROVIDER_AUTH' : 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'
}

export function codeForStatus(status: number, notFound: ErrorCode = 'RELIGHT_ERR_PROVIDER_FAILED'): ErrorCode {
  if (status === 401 || status === 403) return 'RELIGHT_ERR_PROVIDER_AUTH'
  if (status === 404) return notFound
  if (status === 502 || status === 503 || status === 504 || status === 429) return 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'
  return 'RELIGHT_ERR_PROVIDER_FAILED'
}

/** The HTTP status an engine answered, carried by a RelightError from an engine client. */
export function httpStatus(err: unknown): number | undefined {
  if (!isRelightError(err)) return undefined
  return err.context.engine?.kind === 'status' ? err.context.engine.status : undefined
}
