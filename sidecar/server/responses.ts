/** The one place where errors become HTTP answers. */
import type { FastifyReply, FastifyRequest } from 'fastify'
import { REPLY_HEADER } from '../core/access-log.js'
import { type ErrorCode, RelightError, toRelightError } from '../core/errors.js'
import { errorPage, queuedPage, waitingPage } from '../pages/html.js'

interface HttpMapping {
  status: number
  title: string
  retryAfter?: number
}

const HTTP: Record<ErrorCode, HttpMapping> = {
  RELIGHT_ERR_CONFIG: { status: 500, title: 'Configuration error' },
  RELIGHT_ERR_HOST_INVALID: { status: 400, title: 'Bad host' },
  RELIGHT_ERR_HOST_UNKNOWN: { status: 404, title: 'Unknown host' },
  RELIGHT_ERR_BACKEND_NOT_FOUND: { status: 404, title: 'Backend gone' },
  RELIGHT_ERR_WAKE_TIMEOUT: { status: 504, title: 'Backend did not start in time' },
  RELIGHT_ERR_BACKEND_EXITED: { status: 502, title: 'Backend exited while starting', retryAfter: 5 },
  RELIGHT_ERR_PROVIDER_UNAVAILABLE: { status: 503, title: 'Backend engine unavailable', retryAfter: 5 },
  RELIGHT_ERR_PROVIDER_FAILED: { status: 502, title: 'Backend could not be woken', retryAfter: 5 },
  RELIGHT_ERR_PROVIDER_AUTH: { status: 502, title: 'Backend engine refused the sidecar', retryAfter: 30 },
  RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED: { status: 500, title: 'Unsupported sleep mode' },
  RELIGHT_ERR_SLEEP_REFUSED: { status: 409, title: 'Sleep refused' },
  RELIGHT_ERR_CLOSED: { status: 503, title: 'Shutting down', retryAfter: 2 },
  RELIGHT_ERR_ABORTED: { status: 503, title: 'Cancelled', retryAfter: 2 },
  RELIGHT_ERR_UNAUTHORIZED: { status: 401, title: 'Unauthorized' },
  RELIGHT_ERR_STATEFUL_GONE: { status: 410, title: 'Gone' },
  RELIGHT_ERR_STATEFUL_UNRESOLVED: { status: 502, title: 'Upstream host does not resolve', retryAfter: 5 },
  RELIGHT_ERR_NOT_FOUND: { status: 404, title: 'Not found' },
  RELIGHT_ERR_BAD_REQUEST: { status: 400, title: 'Bad request' },
  RELIGHT_ERR_INTERNAL: { status: 500, title: 'Internal error' },
  RELIGHT_ERR_PORT_IN_USE: { status: 503, title: 'Port held by another program', retryAfter: 10 },
  RELIGHT_ERR_RESTART_BACKOFF: { status: 503, title: 'Backend is crashing; waiting to restart it', retryAfter: 1 },
  RELIGHT_ERR_TOO_MANY_FAILURES: { status: 429, title: 'Too many wrong credentials' },
  RELIGHT_ERR_HEADERS_TOO_LARGE: { status: 431, title: 'Request headers too large' },
  RELIGHT_ERR_CAPACITY: { status: 503, title: 'Queued: too many apps awake', retryAfter: 5 },
  RELIGHT_ERR_SCHEDULED_ASLEEP: { status: 503, title: 'Asleep by schedule' },
}


/** A browser navigation: GET that accepts HTML (what gets pages instead of JSON). */
export function isNavigation(req: FastifyRequest): boolean {
  const method = req.headers['x-forwarded-method'] ?? req.method
  if (method !== 'GET' && method !== 'HEAD') return false
  const accept = req.headers.accept
  return typeof accept === 'string' && accept.includes('text/html')
}

/**
 * Engine errors carry engine internals (socket paths, API replies): clients get this sentence
 * and the code, the sidecar's log gets the message.
 */
const ENGINE_DETAIL: Partial<Record<ErrorCode, string>> = {
  RELIGHT_ERR_PROVIDER_UNAVAILABLE: 'The engine that runs this backend cannot be reached right now; try again shortly.',
  RELIGHT_ERR_PROVIDER_FAILED: 'The engine that runs this backend could not wake it; the sidecar log has the reason.',
  RELIGHT_ERR_PROVIDER_AUTH: 'The engine that runs this backend refused the sidecar; the sidecar log has the reason.',
  RELIGHT_ERR_INTERNAL: 'An unexpected error inside the sidecar; its log has the details.',
  RELIGHT_ERR_PORT_IN_USE: "Another program holds this app's port, so the app was not started; the sidecar log names it.",
}

/**
 * Engine failures arrive as RelightErrors (502/503/504 by code above). Anything else is a bug in
 * the sidecar, not the engine's fault: 500 RELIGHT_ERR_INTERNAL, never a 502 that blames the engine.
 */
export function sendError(req: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const error = err instanceof RelightError ? err : toRelightError(err, 'RELIGHT_ERR_INTERNAL')
  if (error.code === 'RELIGHT_ERR_INTERNAL') req.log.error({ err }, 'unexpected error')
  const map = HTTP[error.code]
  const detail = ENGINE_DETAIL[error.code] ?? error.message
  const retryAfter = error.context.retryAfter ?? map.retryAfter
  reply.code(map.status).header(REPLY_HEADER, error.code).header('cache-control', 'no-store')
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
  if (map.status === 410) return reply.send()
  if (isNavigation(req)) {
    return reply.type('text/html; charset=utf-8').send(errorPage(map.status, map.title, detail, map.status >= 500 && retryAfter ? retryAfter : undefined))
  }
  return reply.type('application/problem+json').send(
    JSON.stringify({
      type: `urn:relight:error:${error.code}`,
      title: map.title,
      status: map.status,
      detail,
      code: error.code,
      ...(typeof error.context.host === 'string' ? { host: error.context.host } : {}),
      ...(typeof error.context.backend === 'string' ? { backend: error.context.backend } : {}),
      ...(typeof error.context.reason === 'string' ? { reason: error.context.reason } : {}),
    }),
  )
}

/**
 * A waiting-page client whose wake was refused for capacity (RELIGHT_ERR_CAPACITY): the page
 * saying it is queued, 503 with Retry-After, marked with the code like any refusal.
 */
export function sendQueuedPage(reply: FastifyReply, host: string, error: RelightError): FastifyReply {
  const retryAfter = error.context.retryAfter ?? HTTP.RELIGHT_ERR_CAPACITY.retryAfter ?? 5
  return reply
    .code(503)
    .header(REPLY_HEADER, error.code)
    .header('retry-after', String(retryAfter))
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(queuedPage(host, retryAfter, error.context.reason ?? 'max_awake reached'))
}

/** `html`: an operator's template rendered for this request; the built-in page by default. */
export function sendWaitingPage(reply: FastifyReply, host: string, retryAfterSeconds: number, html = waitingPage(host, retryAfterSeconds)): FastifyReply {
  return reply
    .code(503)
    .header(REPLY_HEADER, 'waiting-page')
    .header('retry-after', String(retryAfterSeconds))
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(html)
}

/** Retry-After of a 503 answered to an ignored request (core/ignore.ts) while its backend sleeps. */
export const IGNORED_RETRY_SECONDS = 60

/**
 * An ignored request (the backend's `ignore` rules) while its backend sleeps: `status`
 * (`ignore_status`, 503 by default, with Retry-After), and the backend is not woken.
 */
export function sendIgnored(reply: FastifyReply, status: number): FastifyReply {
  reply.code(status).header(REPLY_HEADER, 'ignored').header('cache-control', 'no-store')
  if (status === 503) reply.header('retry-after', String(IGNORED_RETRY_SECONDS))
  return reply.type('text/plain; charset=utf-8').send('asleep: this request is ignored and does not wake it\n')
}
