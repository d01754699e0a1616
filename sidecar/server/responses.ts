/** The one place where errors become HTTP answers. */
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
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
  // Not "Queued": only a navigation gets the page that retries by itself (sendQueuedPage).
  RELIGHT_ERR_CAPACITY: { status: 503, title: 'Too many apps awake', retryAfter: 5 },
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
 * The message and context go to the client as they are: for the admin API and the status page
 * (authenticated, or messages written for anyone). Answers to any client: sendPublicError.
 * Logs nothing: the caller logs a bug with the sidecar logger (the admin API's error handler).
 */
export function sendError(req: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const error = err instanceof RelightError ? err : toRelightError(err, 'RELIGHT_ERR_INTERNAL')
  const detail = ENGINE_DETAIL[error.code] ?? error.message
  return answer(req, reply, error, detail, {
    ...(typeof error.context.host === 'string' ? { host: error.context.host } : {}),
    ...(typeof error.context.backend === 'string' ? { backend: error.context.backend } : {}),
    ...(typeof error.context.reason === 'string' ? { reason: error.context.reason } : {}),
  })
}

/**
 * What any client is told per code (the answers of /_relight/auth reach browsers and API clients
 * through Caddy): no backend names, configuration keys, engine words or internal reasons. Those
 * go to the sidecar log (and the lifecycle events, the admin API, the status page).
 */
const PUBLIC_DETAIL: Partial<Record<ErrorCode, string>> = {
  ...ENGINE_DETAIL,
  RELIGHT_ERR_HOST_INVALID: 'The host name of this request is not valid.',
  RELIGHT_ERR_HOST_UNKNOWN: 'No app is served at this host.',
  RELIGHT_ERR_BACKEND_NOT_FOUND: 'The app behind this host is gone.',
  RELIGHT_ERR_WAKE_TIMEOUT: 'The app did not start in time; try again shortly.',
  RELIGHT_ERR_BACKEND_EXITED: 'The app stopped while it was starting; try again shortly.',
  RELIGHT_ERR_PORT_IN_USE: 'The app could not be started; the sidecar log has the reason.',
  RELIGHT_ERR_CLOSED: 'The service is restarting; try again shortly.',
  RELIGHT_ERR_ABORTED: 'The app was not ready for this request; try again.',
  RELIGHT_ERR_STATEFUL_UNRESOLVED: 'The app cannot be reached right now; try again shortly.',
  RELIGHT_ERR_RESTART_BACKOFF: 'The app keeps stopping and waits before its next start; try again shortly.',
  RELIGHT_ERR_CAPACITY: 'Too many apps are awake right now; this one starts when one of them goes idle. Try again after Retry-After.',
}

function publicDetail(error: RelightError): string {
  if (error.code === 'RELIGHT_ERR_SCHEDULED_ASLEEP') {
    return `This app is asleep by schedule${error.context.until ? ` until ${error.context.until}` : ''} and is not started before then.`
  }
  return PUBLIC_DETAIL[error.code] ?? `${HTTP[error.code].title}; the sidecar log has the details.`
}

/**
 * An error answered to any client (/_relight/auth, /_relight/ask): the host it asked for, the
 * code, a title, a generic sentence and Retry-After. The message, backend and reason go to `log`
 * as `request refused`: at debug by default (wake refusals and failures have their own info/warn
 * lines from the lifecycle events; unknown hosts would be a scanner's spam), at `level` when the
 * caller made the refusal itself and nothing else reports it; a bug at error.
 */
export function sendPublicError(req: FastifyRequest, reply: FastifyReply, err: unknown, log: Logger, host: string | undefined, level: 'debug' | 'info' = 'debug'): FastifyReply {
  const error = err instanceof RelightError ? err : toRelightError(err, 'RELIGHT_ERR_INTERNAL')
  if (error.code === 'RELIGHT_ERR_INTERNAL') log.error({ err, host }, 'unexpected error')
  else if (log.isLevelEnabled(level)) logRefusal(log, error, host, level)
  return answer(req, reply, error, publicDetail(error), host === undefined ? {} : { host })
}

function logRefusal(log: Logger, error: RelightError, host: string | undefined, level: 'debug' | 'info' = 'debug'): void {
  const c = error.context
  log[level](
    { code: error.code, host, ...(c.backend !== undefined ? { backend: c.backend } : {}), ...(c.reason !== undefined ? { reason: c.reason } : {}), err: error.message },
    'request refused',
  )
}

function answer(req: FastifyRequest, reply: FastifyReply, error: RelightError, detail: string, extra: Record<string, string>): FastifyReply {
  const map = HTTP[error.code]
  const retryAfter = error.context.retryAfter ?? map.retryAfter
  reply.code(map.status).header(REPLY_HEADER, error.code).header('cache-control', 'no-store')
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
  if (map.status === 410) return reply.send()
  if (isNavigation(req)) {
    return reply.type('text/html; charset=utf-8').send(errorPage(map.status, map.title, detail, map.status >= 500 && retryAfter ? retryAfter : undefined, extra.host))
  }
  return reply.type('application/problem+json').send(
    JSON.stringify({ type: `urn:relight:error:${error.code}`, title: map.title, status: map.status, detail, code: error.code, ...extra }),
  )
}

/**
 * A browser navigation whose wake was refused for capacity (RELIGHT_ERR_CAPACITY): the page
 * saying it is queued, 503 with Retry-After, marked with the code like any refusal. No reason on
 * the page (the caps are configuration): `log` gets it, as sendPublicError.
 */
export function sendQueuedPage(reply: FastifyReply, host: string, error: RelightError, log: Logger): FastifyReply {
  const retryAfter = error.context.retryAfter ?? HTTP.RELIGHT_ERR_CAPACITY.retryAfter ?? 5
  if (log.isLevelEnabled('debug')) logRefusal(log, error, host)
  return reply
    .code(503)
    .header(REPLY_HEADER, error.code)
    .header('retry-after', String(retryAfter))
    .header('cache-control', 'no-store')
    .type('text/html; charset=utf-8')
    .send(queuedPage(host, retryAfter))
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
export function sendIgnored(reply: FastifyReply, status: number, host: string | undefined): FastifyReply {
  reply.code(status).header(REPLY_HEADER, 'ignored').header('cache-control', 'no-store')
  if (status === 503) reply.header('retry-after', String(IGNORED_RETRY_SECONDS))
  // Nothing about the rules (the client must not learn that, or which, rule matched it).
  return reply.type('text/plain; charset=utf-8').send(`${host ?? 'this app'} is asleep; try again later.\n`)
}
