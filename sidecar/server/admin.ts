/**
 * The admin API under /_relight/admin (only with `admin.token`): backends, one backend, wake
 * and sleep, the lifecycle events as Server-Sent Events, and the OpenAPI description built from
 * these routes' schemas. Every error is application/problem+json.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Logger } from 'pino'
import type { Backend } from '../core/backend.js'
import { RelightError } from '../core/errors.js'
import { LIFECYCLE_EVENT_TYPES, type Stamped } from '../core/events.js'
import type { Registry } from '../core/registry.js'
import type { ReloadResult } from '../reload.js'
import type { EventBuffer } from '../ops/event-buffer.js'
import type { BackendHistory } from '../ops/history.js'
import { providerLabel } from '../ops/metrics.js'
import { type Access, type AdminAccess, noStore } from './admin-access.js'
import { buildOpenApi, type RouteDoc } from './openapi.js'
import { sendError } from './responses.js'
import { backendSchema, problemSchema } from './schemas.js'

export interface AdminDeps {
  readonly registry: Registry
  readonly logger: Logger
  readonly access: AdminAccess
  readonly history: BackendHistory
  readonly buffer: EventBuffer
  /** Every documented route (collected by an onRoute hook), for the OpenAPI description. */
  readonly routes: () => readonly RouteDoc[]
  /** Read the config file again and apply it; absent in tests that build the app alone. */
  readonly reload?: () => Promise<ReloadResult>
}

/** Open event streams beyond this get 503 (each is a socket and a listener). */
const MAX_STREAMS = 100
/** A stream is closed if this much is ever queued (it is not: writes stop at the first push-back). */
const MAX_STREAM_BACKLOG = 1 << 20
const KEEPALIVE_MS = 15_000

declare module 'fastify' {
  interface FastifyRequest {
    relightAccess?: Access
  }
}

export function backendView(backend: Backend, history: BackendHistory, baseDomains: readonly string[]): Record<string, unknown> {
  const h = history.get(backend.key)
  const lastError = h.last_error ?? (backend.lastError ? { code: backend.lastError.code, reason: backend.lastError.message } : undefined)
  return {
    ...backend.status(),
    provider: providerLabel(backend.provider),
    // the names a browser can open: a one-label host under each base domain, exact names as they are
    full_hosts: backend.info.hosts.flatMap((host) => (host.includes('.') ? [host] : baseDomains.map((base) => `${host}.${base}`))),
    idle_timeout_ms: backend.settings.idle_timeout,
    always_on: backend.settings.always_on,
    ...h,
    ...(lastError ? { last_error: lastError } : {}),
  }
}

/** Events `GET /_relight/admin/events/recent` returns unless asked for fewer. */
const RECENT_EVENTS = 50

const keyParams = {
  type: 'object',
  properties: { key: { type: 'string', description: 'Backend key, `<provider>:<backend id>` (URL-encode it).' } },
  required: ['key'],
} as const

const errors = (...statuses: number[]) => Object.fromEntries(statuses.map((s) => [s, problemSchema]))

export function registerAdmin(app: FastifyInstance, deps: AdminDeps): void {
  const { registry, logger, access, history, buffer } = deps
  const streams = new Set<FastifyReply>()

  void app.register(
    async (admin) => {
      // Schemas document and validate; answers are plain JSON (no field is ever dropped).
      admin.setSerializerCompiler(() => (data) => JSON.stringify(data))
      admin.addHook('onRequest', (req, reply, done) => {
        const granted = access.check(req, { cookie: true })
        if (!granted) {
          sendError(req, reply, new RelightError('RELIGHT_ERR_UNAUTHORIZED', 'send Authorization: Bearer <admin.token>, or log in on /_relight/status'))
          return
        }
        if (req.method !== 'GET' && req.method !== 'HEAD' && !access.allowsChange(req, granted)) {
          sendError(req, reply, new RelightError('RELIGHT_ERR_UNAUTHORIZED', 'a browser session must send its x-relight-csrf token from the same origin'))
          return
        }
        req.relightAccess = granted
        done()
      })
      admin.setNotFoundHandler((req, reply) =>
        sendError(req, reply, new RelightError('RELIGHT_ERR_NOT_FOUND', `no admin endpoint ${req.method} ${req.url.split('?')[0]}; see /_relight/admin/openapi.json`)),
      )
      admin.setErrorHandler((err: Error & { validation?: unknown; statusCode?: number }, req, reply) => {
        if (err instanceof RelightError) return sendError(req, reply, err)
        if (err.validation !== undefined || (err.statusCode !== undefined && err.statusCode < 500)) {
          return sendError(req, reply, new RelightError('RELIGHT_ERR_BAD_REQUEST', err.message))
        }
        logger.error({ err }, 'admin request failed')
        return sendError(req, reply, new RelightError('RELIGHT_ERR_INTERNAL', 'the admin request failed; the sidecar log has the reason'))
      })

      const find = (req: FastifyRequest<{ Params: { key: string } }>): Backend => {
        const backend = registry.get(req.params.key)
        if (!backend) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no backend ${req.params.key}`, { backend: req.params.key })
        return backend
      }

      admin.get(
        '/backends',
        {
          schema: {
            summary: 'Every backend with its state, counters and history',
            response: { 200: { type: 'object', properties: { backends: { type: 'array', items: backendSchema } }, required: ['backends'] }, ...errors(401) },
          },
        },
        (_req, reply) => noStore(reply).send({ backends: [...registry.all()].map((b) => backendView(b, history, registry.baseDomains)) }),
      )

      admin.get<{ Params: { key: string } }>(
        '/backends/:key',
        { schema: { summary: 'One backend', params: keyParams, response: { 200: backendSchema, ...errors(401, 404) } } },
        (req, reply) => noStore(reply).send(backendView(find(req), history, registry.baseDomains)),
      )

      admin.post<{ Params: { key: string } }>(
        '/backends/:key/wake',
        {
          schema: {
            summary: 'Wake a backend (and its group) now; answers once it is ready',
            params: keyParams,
            response: { 200: backendSchema, ...errors(401, 404, 502, 503, 504) },
          },
        },
        async (req, reply) => {
          const backend = find(req)
          await registry.wake(backend)
          logger.info({ backend: backend.info.name, op: 'wake', via: req.relightAccess?.via }, 'admin operation')
          return noStore(reply).send(backendView(backend, history, registry.baseDomains))
        },
      )

      admin.post<{ Params: { key: string } }>(
        '/backends/:key/sleep',
        {
          schema: {
            summary: 'Put a backend to sleep now (refused while a request is in flight or a wake is pending)',
            description: 'A refusal is 409 RELIGHT_ERR_SLEEP_REFUSED with `reason` (e.g. `inflight: 1`); an already asleep backend answers 200.',
            params: keyParams,
            response: { 200: backendSchema, ...errors(401, 404, 409, 502, 503) },
          },
        },
        async (req, reply) => {
          const backend = find(req)
          const outcome = await backend.sleepNow()
          logger.info({ backend: backend.info.name, op: 'sleep', result: outcome.result, via: req.relightAccess?.via }, 'admin operation')
          if (outcome.result === 'refused') {
            throw new RelightError('RELIGHT_ERR_SLEEP_REFUSED', `backend ${backend.info.name} stays awake: ${outcome.reason}`, { backend: backend.key, reason: outcome.reason })
          }
          if (outcome.result === 'failed') throw outcome.error
          return noStore(reply).send(backendView(backend, history, registry.baseDomains))
        },
      )

      admin.get<{ Querystring: { limit?: number } }>(
        '/events/recent',
        {
          schema: {
            summary: `The most recent lifecycle events, oldest first (default ${RECENT_EVENTS}, at most the ${buffer.size} the stream replays)`,
            querystring: { type: 'object', properties: { limit: { type: 'integer', minimum: 1, maximum: buffer.size } } },
            response: { 200: { type: 'object', properties: { events: { type: 'array', items: { type: 'object' } } }, required: ['events'] }, ...errors(400, 401) },
          },
        },
        (req, reply) => noStore(reply).send({ events: buffer.since(Math.max(0, buffer.lastId - (req.query.limit ?? RECENT_EVENTS))).events }),
      )

      admin.get(
        '/events',
        {
          schema: {
            summary: 'Lifecycle events as Server-Sent Events (text/event-stream)',
            description:
              'Each event: `id: N`, `event: <type>`, `data: <JSON>`. Send `Last-Event-ID` to replay what was missed from the last ' +
              `${buffer.size} events; if some were lost meanwhile an \`event: reset\` comes first (reload your view). Types: ${LIFECYCLE_EVENT_TYPES.join(', ')}.`,
            headers: { type: 'object', properties: { 'last-event-id': { type: 'string' } } },
            response: { 200: { description: 'text/event-stream', type: 'string' }, ...errors(401, 503) },
          },
        },
        (req, reply) => {
          if (streams.size >= MAX_STREAMS) {
            return sendError(req, reply, new RelightError('RELIGHT_ERR_CLOSED', `too many open event streams (${MAX_STREAMS})`, { retryAfter: 10 }))
          }
          openStream(req, reply)
        },
      )

      admin.post(
        '/reload',
        {
          schema: {
            summary: 'Read the configuration file again and apply the difference',
            description: '200 `{ok: true, changed, summary}`; 422 `{ok: false, errors}` when the file is invalid (nothing changed).',
            response: { 200: { type: 'object' }, 422: { type: 'object' }, ...errors(401, 404) },
          },
        },
        async (req, reply) => {
          if (!deps.reload) throw new RelightError('RELIGHT_ERR_NOT_FOUND', 'reload is not available')
          const result = await deps.reload()
          logger.info({ op: 'reload', ok: result.ok, via: req.relightAccess?.via }, 'admin operation')
          return noStore(reply).code(result.ok ? 200 : 422).send(result)
        },
      )

      admin.get(
        '/openapi.json',
        { schema: { summary: 'This description (OpenAPI 3.1), built from the route schemas', response: { 200: { type: 'object' }, ...errors(401) } } },
        (_req, reply) => reply.send(buildOpenApi(deps.routes())),
      )

      admin.addHook('preClose', (done) => {
        for (const s of streams) s.raw.end()
        streams.clear()
        done()
      })
    },
    { prefix: '/_relight/admin' },
  )

  function openStream(req: FastifyRequest, reply: FastifyReply): void {
    const header = req.headers['last-event-id']
    let lastId = typeof header === 'string' && /^\d+$/.test(header) ? Number(header) : undefined
    reply.hijack()
    const res = reply.raw
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    })
    res.write('retry: 2000\n\n')
    // A client that does not read never makes the sidecar queue events for it: once the socket
    // pushes back (write() returns false) nothing more is written until it drains, and then the
    // stream resumes from the shared event buffer (an `event: reset` first if some fell out of
    // it meanwhile). Per client that is the socket's own buffer plus one event, whatever the
    // event rate; MAX_STREAM_BACKLOG still ends a stream whose single pending write is huge.
    // An id from a previous run of the sidecar (ids restart at 1): everything is new.
    if (lastId !== undefined && lastId > buffer.lastId) lastId = 0
    let sent = lastId ?? buffer.lastId
    let stalled = false
    const write = (text: string): void => {
      if (!res.write(text)) {
        stalled = true
        res.once('drain', catchUp)
      }
      if (res.writableLength > MAX_STREAM_BACKLOG) res.destroy()
    }
    const send = (e: Stamped): void => {
      if (stalled || res.destroyed) return
      sent = e.id
      write(`id: ${e.id}\nevent: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`)
    }
    const catchUp = (): void => {
      stalled = false
      const { events, complete } = buffer.since(sent)
      if (!complete) write(`event: reset\ndata: {"missed":true}\n\n`)
      for (const e of events) {
        if (stalled) return
        send(e)
      }
    }
    if (lastId !== undefined) {
      const { events, complete } = buffer.since(lastId)
      if (!complete || lastId === 0) write(`event: reset\ndata: {"missed":true}\n\n`)
      for (const e of events) send(e)
    }
    const stop = buffer.listen(send)
    const keepalive = setInterval(() => {
      if (!stalled) write(': keepalive\n\n')
    }, KEEPALIVE_MS)
    keepalive.unref()
    streams.add(reply)
    res.on('close', () => {
      stop()
      clearInterval(keepalive)
      streams.delete(reply)
    })
  }
}
