/**
 * The operator's view, registered only when `admin.token` is set: the admin API and its events
 * stream (admin.ts), Prometheus metrics, and the status page (status.ts). All of it listens to
 * the lifecycle events; none of it runs on the /auth hot path.
 */
import type { FastifyInstance, FastifyRequest, RouteOptions } from 'fastify'
import type { Logger } from 'pino'
import { RelightError } from '../core/errors.js'
import type { Registry } from '../core/registry.js'
import type { ReloadResult } from '../reload.js'
import { EventBuffer } from '../ops/event-buffer.js'
import { BackendHistory } from '../ops/history.js'
import { Metrics, type MetricsSources } from '../ops/metrics.js'
import { AdminAccess, noStore } from './admin-access.js'
import { registerAdmin } from './admin.js'
import type { AuthOutcomes } from '../ops/auth-outcomes.js'
import type { RouteDoc } from './openapi.js'
import { problemSchema } from './schemas.js'
import { sendError } from './responses.js'
import { registerStatus } from './status.js'
import { GuessLimit, type GuessLimitOptions } from './guess-limit.js'

export interface OperationsOptions {
  readonly adminToken?: string
  readonly accessLogConnections?: () => number
  readonly heartbeatFailures?: () => number
  readonly webhooks?: MetricsSources['webhooks']
  /** Read the config file again and apply it (POST /_relight/admin/reload). */
  readonly reload?: () => Promise<ReloadResult>
  /** Rate of wrong credentials tolerated per client address (tests shorten the log interval). */
  readonly guessLimit?: GuessLimitOptions
}

/** A request that presents a credential to check: a bearer token, or the status page's login form. */
function presentsCredential(req: FastifyRequest): boolean {
  const path = req.url.split('?')[0] ?? ''
  if (!path.startsWith('/_relight/admin') && path !== '/_relight/metrics' && path !== '/_relight/status/login') return false
  return req.headers.authorization !== undefined || (req.method === 'POST' && path === '/_relight/status/login')
}

/**
 * Wrong credentials are rate limited per client address (server/guess-limit.ts): a credential
 * from an address over its budget is answered 429 unchecked; every 401 to a credential counts.
 * A logged-in browser (session cookie, no credential) is never held up.
 */
function limitGuesses(app: FastifyInstance, limit: GuessLimit): void {
  const address = (req: FastifyRequest) => req.ip ?? 'unix-socket'
  app.addHook('onRequest', (req, reply, done) => {
    if (!presentsCredential(req)) return done()
    const wait = limit.retryAfter(address(req))
    if (wait === 0) return done()
    sendError(req, reply, new RelightError('RELIGHT_ERR_TOO_MANY_FAILURES', `too many wrong admin credentials from ${address(req)}; try again in ${wait} s`, { retryAfter: wait }))
  })
  app.addHook('onResponse', (req, reply, done) => {
    if (reply.statusCode === 401 && presentsCredential(req)) limit.failed(address(req))
    done()
  })
  app.addHook('onClose', (_app, done) => {
    limit.close()
    done()
  })
}

export function registerOperations(app: FastifyInstance, options: OperationsOptions, registry: Registry, logger: Logger, auth: AuthOutcomes): void {
  const token = options.adminToken
  if (token === undefined) return
  const access = new AdminAccess(token)
  const history = new BackendHistory(registry.events)
  const buffer = new EventBuffer(registry.events)
  const metrics = new Metrics(registry.events, {
    registry,
    auth,
    ...(options.accessLogConnections ? { accessLogConnections: options.accessLogConnections } : {}),
    ...(options.heartbeatFailures ? { heartbeatFailures: options.heartbeatFailures } : {}),
    ...(options.webhooks ? { webhooks: options.webhooks } : {}),
  })
  app.addHook('onClose', (_app, done) => {
    history.stop()
    buffer.stop()
    metrics.stop()
    done()
  })

  const docs: RouteDoc[] = []
  app.addHook('onRoute', (route: RouteOptions) => {
    const schema = route.schema as RouteDoc['schema'] | undefined
    if (schema?.summary !== undefined) docs.push({ method: route.method, url: route.url, schema })
  })

  limitGuesses(app, new GuessLimit(logger.child({ component: 'admin-access' }), options.guessLimit))

  registerAdmin(app, { registry, logger, access, history, buffer, routes: () => docs, ...(options.reload ? { reload: options.reload } : {}) })
  registerStatus(app, access)

  app.get(
    '/_relight/metrics',
    {
      schema: {
        summary: 'Prometheus metrics (text exposition format); bearer token only',
        response: { 200: { description: 'text/plain', type: 'string' }, 401: problemSchema },
        security: [{ bearer: [] }],
      },
    },
    async (req, reply) => {
      if (!access.check(req, { cookie: false })) {
        return sendError(req, reply, new RelightError('RELIGHT_ERR_UNAUTHORIZED', 'send Authorization: Bearer <admin.token>'))
      }
      const text = await metrics.text()
      return noStore(reply).type(metrics.contentType).send(text)
    },
  )
}
