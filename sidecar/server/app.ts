import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify'
import type { Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { REPLY_HEADER, TICKET_HEADER } from '../core/access-log.js'
import type { Backend, VerifyOutcome } from '../core/backend.js'
import { RelightError } from '../core/errors.js'
import { canonicalHostProblem, normalizeHost } from '../core/hosts.js'
import { providerId } from '../core/provider.js'
import type { Registry } from '../core/registry.js'
import { clientGroup, requestKey, type TicketLedger } from '../core/tickets.js'
import type { WaitingPages } from '../pages/template.js'
import type { StatefulRouter, StatefulSite } from '../routing/stateful/router.js'
import { AuthOutcomes } from '../ops/auth-outcomes.js'
import { type OperationsOptions, registerOperations } from './operations.js'
import type { ReloadResult } from '../reload.js'
import { isNavigation, sendPublicError, sendIgnored, sendQueuedPage, sendWaitingPage } from './responses.js'
import { VERSION } from '../core/version.js'
import { atPowerOfTwo } from '../core/log-throttle.js'

export const UPSTREAM_HEADER = 'x-relight-upstream'
/**
 * Sent by the snippet's forward_auth (`header_up X-Relight-Snippet 3`): this caller copies the
 * ticket into the request and logs it. Requests without it (snippet version 1, a monitoring
 * probe, anyone calling /auth by hand) are answered but never counted in flight.
 *
 * Version 3 sets the ticket as a response header at once as well as last (so Caddy logs it for
 * every end: websocket closes, aborted requests, its own 502/504s, HTTP/2 resets) and sends
 * X-Relight-Client. Version 2 only logs it on a normal response: its other ends count until
 * max_request_duration (the sidecar warns, `check` says so).
 */
export const SNIPPET_HEADER = 'x-relight-snippet'
/**
 * relight_fast's forward_auth names the flag directory it was given (`header_up X-Relight-Fast-Dir {args.1}`).
 * Recorded only from a caller that proves it is Caddy the way /auth's callers can at all: the
 * connection came through a unix-socket `listen`, which only the sidecar's user and
 * `socket_group` open (over TCP any local user can send the header and feed `check` a value).
 */
const FAST_DIR_HEADER = 'x-relight-fast-dir'
/** At most this many directories are kept (the least recently named one makes room)… */
export const FAST_DIRS_KEPT = 4
/** …each at most this long (PATH_MAX is 4096; a flag directory is a short absolute path). */
export const FAST_DIR_MAX_LENGTH = 1024

/** The connection came through a unix socket (`listen: unix:…`): only the sidecar's user and `socket_group` can open it. */
function overUnixSocket(socket: Socket): boolean {
  // net.Server sets `server` on every connection it accepts; a pipe server's address is its path
  const server = (socket as Socket & { server?: { address(): unknown } }).server
  return typeof server?.address() === 'string'
}
export const SNIPPET_VERSION = '3'
/** The version before 3: still counted, but only its normal responses end a request. */
export const SNIPPET_V2 = '2'
/**
 * Snippet version 4's `relight_fast` (the fast lane, core/fast-lane.ts) sends 4 from its
 * forward_auth lane: accounted exactly as 3; `check` and healthz tell the fast lane is imported.
 * Its plain `relight` is unchanged and still sends 3.
 */
export const SNIPPET_FAST = '4'
/** The accounting protocol a snippet header speaks (4 speaks 3's). */
const protocolOf = (snippet: string | string[] | undefined) => (snippet === SNIPPET_FAST ? SNIPPET_VERSION : snippet)
/**
 * Caddy's address of the client connection (`{http.request.remote.host}:{http.request.remote.port}`),
 * set by snippet 3: the same connection identity Caddy logs (remote_ip, remote_port).
 */
export const CLIENT_HEADER = 'x-relight-client'
/**
 * The request as Caddy logs it, set by snippet 3: `{http.request.orig_method} {http.request.orig_uri}`
 * (X-Forwarded-Uri is Caddy's re-encoded URI after rewrites: an absolute-form target, a raw
 * non-ASCII path, handle_path or uri strip_prefix before the snippet make it differ from the
 * logged `uri`). A snippet-3 call without it is not counted in flight: snippet 1 forwards the
 * client's own headers to /auth, so a client could otherwise claim version 3 through it.
 */
export const REQUEST_HEADER = 'x-relight-request'
/** The ticket answered when none is issued (Caddy 2.6's copy_headers would copy a placeholder). */
export const NO_TICKET = '-'

export interface AppOptions extends OperationsOptions {
  /** Report whether an access-log connection is up (for healthz). undefined: not configured. */
  readonly accessLogState?: () => 'connected' | 'unproven' | 'disconnected'
  /** Read the config file again and apply it (POST /_relight/admin/reload). */
  readonly reload?: () => Promise<ReloadResult>
}

export interface AppDeps {
  readonly registry: Registry
  readonly logger: Logger
  /**
   * Stateful (doors-caddy) hosts; undefined when `stateful:` is empty, so other hosts pay nothing.
   * Read on every request (it may be a getter: a reload replaces the router).
   */
  readonly stateful?: StatefulRouter
  /** In-flight tickets; undefined without `access_log` (nothing can report a request's end). */
  readonly tickets?: TicketLedger<Backend>
  /** Operator templates for the waiting page (`waiting_page_template`); the built-in page without. */
  readonly waitingPages?: WaitingPages
}

/** Request headers read at most (Caddy forwards the client's headers to /_relight/auth). */
const MAX_HEADER_BYTES = 64 * 1024
/** After a malformed request, what the client still sends is read and dropped up to this much / long. */
const DRAIN_BYTES = 4 << 20
const DRAIN_MS = 5000
const answered = new WeakSet<Duplex>()

/**
 * A request Node's parser refuses (headers over MAX_HEADER_BYTES, malformed): answer it — 431
 * RELIGHT_ERR_HEADERS_TOO_LARGE or 400 RELIGHT_ERR_BAD_REQUEST — and close the connection
 * cleanly. Fastify's default destroys the socket with the rest of the request unread, so the
 * kernel resets it and Caddy, still writing, reports 502 for a client's mistake. Here the rest
 * is read and dropped (bounded) until the peer closes.
 */
function answerClientError(err: Error & { code?: string }, socket: Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed || answered.has(socket)) return
  answered.add(socket)
  const overflow = err.code === 'HPE_HEADER_OVERFLOW'
  const code = overflow ? 'RELIGHT_ERR_HEADERS_TOO_LARGE' : 'RELIGHT_ERR_BAD_REQUEST'
  const status = overflow ? 431 : 400
  const detail = overflow ? `the request headers exceed ${MAX_HEADER_BYTES / 1024} KiB` : 'the request is not valid HTTP'
  const body = JSON.stringify({ type: `urn:relight:error:${code}`, title: overflow ? 'Request headers too large' : 'Bad request', status, detail, code })
  let drained = 0
  const timer = setTimeout(() => socket.destroy(), DRAIN_MS)
  timer.unref()
  socket.on('data', (chunk: Buffer) => {
    drained += chunk.length
    if (drained > DRAIN_BYTES) socket.destroy()
  })
  socket.once('close', () => clearTimeout(timer))
  socket.resume()
  if (socket.writable) {
    socket.end(
      `HTTP/1.1 ${status} ${overflow ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nconnection: close\r\ncache-control: no-store\r\n` +
        `content-type: application/problem+json\r\n${REPLY_HEADER}: ${code}\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    )
  }
}

/** Retry-After of the waiting page: how soon the browser reloads. */
const WAITING_RETRY_SECONDS = 2

/**
 * The HTTP face of the sidecar. The hot path (`/_relight/auth` for an awake backend) is one
 * cached map lookup, a round-robin pick and one header: no I/O, no logging, no validation work.
 */
export function buildApp(options: AppOptions, deps: AppDeps): FastifyInstance {
  const { registry, logger, tickets } = deps
  let oldSnippetCalls = 0
  let v2SnippetCalls = 0
  /** The snippet version of the last forward_auth call Caddy made (healthz; `check` shows it). */
  let snippetSeen: string | undefined
  /**
   * The flag directories relight_fast's forward_auth calls named (X-Relight-Fast-Dir: its {args.1})
   * over a unix-socket `listen` (proven Caddy), with the order in which each was last named; `check` compares them
   * with fast_lane_dir. Bounded: FAST_DIRS_KEPT entries of at most FAST_DIR_MAX_LENGTH characters.
   */
  const fastDirsSeen = new Map<string, number>()
  let fastDirSeq = 0
  /** relight_fast calls whose directory was not recorded: over TCP (unproven), or too long. */
  let fastDirsUnproven = 0
  const startedAt = Date.now()
  const outcomes = new AuthOutcomes()
  const app = Fastify({
    logger: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 200 },
    bodyLimit: 1024,
    http: { maxHeaderSize: MAX_HEADER_BYTES },
    clientErrorHandler: answerClientError,
  })

  app.get('/_relight/auth', (req, reply) => {
    // Stateful hosts first (they are routed by token and cookie, never woken or put to sleep).
    const stateful = deps.stateful
    if (stateful !== undefined) {
      const site = stateful.lookupRaw(req.headers.host)
      if (site !== undefined) return answerStateful(site, req, reply)
    }
    const { target, host, canonical } = registry.index.lookupRaw(req.headers.host)
    if (target !== undefined) {
      if (!target.settings.ignore.empty && ignored(target, req)) return answerIgnored(target, req, reply)
      const upstream = target.upstream()
      if (upstream !== undefined) {
        // Shared engines only (one property check otherwise): a verify read while the engine
        // view is not live, or the wait for this request's token write after a quiet spell.
        const gate = target.sharer === undefined ? undefined : sharedGate(target)
        if (gate !== undefined) return gate.then((outcome) => afterGate(target, outcome, req, reply, canonical))
        outcomes.routed++
        return authorise(target, upstream, req, reply, canonical)
      }
      return wakeAndAnswer(target, req, reply, canonical)
    }
    if (host === undefined) {
      return authError(req, reply, new RelightError('RELIGHT_ERR_HOST_INVALID', 'the Host header is not a valid DNS name'))
    }
    return registry.resolveAfterMiss(host).then(
      (late) => {
        if (late && !late.settings.ignore.empty && ignored(late, req)) return answerIgnored(late, req, reply)
        if (late) return wakeAndAnswer(late, req, reply, registry.index.lookupRaw(req.headers.host).canonical)
        return authError(req, reply, new RelightError('RELIGHT_ERR_HOST_UNKNOWN', `no backend serves ${host}`, { host }))
      },
      (err: unknown) => authError(req, reply, err),
    )
  })

  /**
   * Several sidecars on one engine, before routing to a backend this sidecar believes running:
   * while the engine view is not live, a verify read (bounded, rate-limited: Backend.verify);
   * otherwise the hold of ActivitySharer (only after idle_timeout/2 of shared silence).
   */
  function sharedGate(backend: Backend): Promise<VerifyOutcome> | undefined {
    return backend.viewStale ? backend.verify() : backend.shareHold()
  }

  function afterGate(backend: Backend, outcome: VerifyOutcome, req: FastifyRequest, reply: FastifyReply, canonical: boolean): FastifyReply | Promise<FastifyReply> {
    if (outcome === 'gone') {
      return authError(req, reply, new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `backend ${backend.info.name} no longer exists`, { backend: backend.info.name }), 'info')
    }
    // 'asleep': another sidecar scaled it down (the backend is marked asleep and waking);
    // 'awake' or 'unconfirmed' (the engine did not answer in time): route on what is known.
    const upstream = backend.upstream()
    if (upstream === undefined) return wakeAndAnswer(backend, req, reply, canonical)
    outcomes.routed++
    return authorise(backend, upstream, req, reply, canonical)
  }

  /**
   * The backend's `ignore` rules match this request (core/ignore.ts). Method and URI as Caddy
   * logs them (snippet 3's X-Relight-Request), else forward_auth's X-Forwarded-Method/-Uri; the
   * client is Caddy's view of the connection (X-Relight-Client, without the port). X-Relight-*
   * only from snippet 3 (or 4, which speaks 3), as keyOf(): older snippets pass the client's own X-Relight-* headers
   * on, so under them a `client` rule matches nothing (`check` warns).
   */
  function ignored(backend: Backend, req: FastifyRequest): boolean {
    const h = req.headers
    const current = protocolOf(h[SNIPPET_HEADER]) === SNIPPET_VERSION
    const request = current ? h[REQUEST_HEADER] : undefined
    let method: string | undefined
    let uri: string | undefined
    if (typeof request === 'string') {
      const space = request.indexOf(' ')
      method = space < 0 ? request : request.slice(0, space)
      uri = space < 0 ? undefined : request.slice(space + 1)
    } else {
      const m = h['x-forwarded-method']
      const u = h['x-forwarded-uri']
      method = typeof m === 'string' ? m : undefined
      uri = typeof u === 'string' ? u : undefined
    }
    const conn = current ? h[CLIENT_HEADER] : undefined
    const agent = h['user-agent']
    return backend.settings.ignore.matches({
      userAgent: typeof agent === 'string' ? agent : undefined,
      method,
      uri,
      client: typeof conn === 'string' && conn.includes(':') ? conn.slice(0, conn.lastIndexOf(':')) : undefined,
    })
  }

  /**
   * An ignored request: served while the backend is awake, but neither counted as activity nor
   * in flight (no ticket: its log line ends nothing); while it sleeps (or wakes), answered
   * `ignore_status` without waking it.
   */
  function answerIgnored(backend: Backend, req: FastifyRequest, reply: FastifyReply): FastifyReply {
    const upstream = backend.upstream()
    if (upstream !== undefined) {
      // Logged with the ticket `-` (snippet 3 sets it at once): the line ends nothing.
      outcomes.ignored++
      return reply.header(UPSTREAM_HEADER, upstream).header(TICKET_HEADER, NO_TICKET).send()
    }
    noTicket(req)
    outcomes.ignored_asleep++
    return sendIgnored(reply, backend.settings.ignore_status, normalizeHost(req.headers.host))
  }

  /**
   * An /auth answer that is an error, counted by its code (relight_auth_requests_total). `info`:
   * a refusal made here that no lifecycle event reports (the log line is the operator's only trace).
   */
  function authError(req: FastifyRequest, reply: FastifyReply, err: unknown, level: 'debug' | 'info' = 'debug'): FastifyReply {
    outcomes.error(err)
    noTicket(req)
    return sendPublicError(req, reply, err, logger, normalizeHost(req.headers.host), level)
  }

  /**
   * Caddy's identity of the request a snippet-3 call is about (see requestKey); undefined for
   * any other caller.
   */
  function keyOf(req: FastifyRequest): string | undefined {
    const h = req.headers
    const conn = h[CLIENT_HEADER]
    const request = h[REQUEST_HEADER]
    if (protocolOf(h[SNIPPET_HEADER]) !== SNIPPET_VERSION || typeof conn !== 'string' || typeof request !== 'string') return undefined
    const space = request.indexOf(' ')
    return requestKey(conn, request.slice(0, space), String(h.host), request.slice(space + 1))
  }

  /**
   * Answered without a ticket (an error, the waiting page, a client gone): Caddy logs this
   * request without one, and that line must not end the same connection's next request.
   */
  function noTicket(req: FastifyRequest): void {
    if (tickets === undefined || !tickets.keyed) return
    const key = keyOf(req)
    if (key !== undefined) tickets.pass(key)
  }

  function answerStateful(site: StatefulSite, req: FastifyRequest, reply: FastifyReply): FastifyReply | Promise<FastifyReply> {
    const uri = req.headers['x-forwarded-uri']
    let upstream: string | Promise<string>
    try {
      upstream = site.route(typeof uri === 'string' ? uri : undefined, req.headers.cookie)
    } catch (err) {
      return authError(req, reply, err)
    }
    outcomes.stateful++
    if (typeof upstream === 'string') return reply.header(UPSTREAM_HEADER, upstream).header(TICKET_HEADER, NO_TICKET).send()
    return upstream.then(
      (late) => reply.header(UPSTREAM_HEADER, late).header(TICKET_HEADER, NO_TICKET).send(),
      (err: unknown) => authError(req, reply, err),
    )
  }

  async function wakeAndAnswer(backend: Backend, req: FastifyRequest, reply: FastifyReply, canonical: boolean): Promise<FastifyReply> {
    const wake = registry.wake(backend)
    try {
      if (backend.settings.strategy === 'waiting_page' && isNavigation(req)) {
        let timer: NodeJS.Timeout | undefined
        const late = new Promise<'late'>((resolve) => {
          timer = setTimeout(() => resolve('late'), backend.settings.waiting_page_after)
        })
        const outcome = await Promise.race([wake.then(() => 'ready' as const), late]).finally(() => clearTimeout(timer))
        if (outcome === 'late') {
          wake.catch(() => undefined) // the wake goes on; its failure is logged by the backend
          outcomes.waiting_page++
          const host = normalizeHost(req.headers.host) ?? 'this app'
          noTicket(req)
          return sendWaitingPage(reply, host, WAITING_RETRY_SECONDS, deps.waitingPages?.render(backend.info.settings, host, WAITING_RETRY_SECONDS))
        }
      } else {
        await wake
      }
    } catch (err) {
      // A browser is told it is queued (the page retries by itself), whatever the strategy; an
      // API client gets problem+json like any refusal.
      if (err instanceof RelightError && err.code === 'RELIGHT_ERR_CAPACITY' && isNavigation(req)) {
        outcomes.error(err)
        noTicket(req)
        return sendQueuedPage(reply, normalizeHost(req.headers.host) ?? 'this app', err, logger)
      }
      return authError(req, reply, err)
    }
    const upstream = backend.upstream()
    if (upstream === undefined) {
      // Went back to sleep or lost its upstream between the wake and now: let the client retry.
      return authError(req, reply, new RelightError('RELIGHT_ERR_ABORTED', `backend ${backend.info.name} is not ready`, { backend: backend.info.name, retryAfter: 1 }), 'info')
    }
    outcomes.woken++
    // A client that left while we woke the backend sends nothing on: do not count it in flight.
    if (req.raw.destroyed) {
      backend.started(false)
      noTicket(req)
      return reply.header(UPSTREAM_HEADER, upstream).send()
    }
    return authorise(backend, upstream, req, reply, canonical)
  }

  /**
   * Answer 200 with the upstream. The request counts in flight (with a ticket its access-log
   * line brings back) only when that line can arrive: an access-log connection is up, the
   * caller is the snippet (version 3, or 2) and the Host is in the canonical spelling
   * (`canonical`: Caddy picks a site's logger by the literal Host, case-sensitively, so
   * `app.APPS.example.com` is routed by a `*.apps.example.com` site but logged elsewhere).
   * Everything else counts as activity only.
   */
  function authorise(backend: Backend, upstream: string, req: FastifyRequest, reply: FastifyReply, canonical: boolean): FastifyReply {
    const snippet = protocolOf(req.headers[SNIPPET_HEADER])
    // a version-3 call without X-Relight-Request is the first cut of version 3 (or a client
    // claiming it through snippet 1): not counted, and healthz / check say it is outdated
    const claimed = snippet === SNIPPET_VERSION && req.headers[REQUEST_HEADER] === undefined
    if (snippet === SNIPPET_V2 || (snippet === SNIPPET_VERSION && !claimed)) snippetSeen = req.headers[SNIPPET_HEADER] as string
    else if (claimed) snippetSeen = '3 without X-Relight-Request'
    else if (req.headers['x-forwarded-method'] !== undefined) snippetSeen = typeof snippet === 'string' ? snippet.slice(0, 8) : '1' // forward_auth without the marker: version 1
    if (req.headers[SNIPPET_HEADER] === SNIPPET_FAST && req.headers[FAST_DIR_HEADER] !== undefined) noteFastDir(req)
    if (tickets !== undefined && ((snippet === SNIPPET_VERSION && !claimed) || snippet === SNIPPET_V2) && canonical && tickets.counting) {
      if (snippet === SNIPPET_V2) noteV2(req)
      // No ticket when a bound is reached: activity only (below), never in flight without one.
      const conn = req.headers[CLIENT_HEADER]
      let ticket: string | undefined
      if (typeof conn === 'string' && snippet === SNIPPET_VERSION) {
        // bounded per client address (IPv4, or IPv6 /64), matched per connection (a line without its ticket)
        ticket = tickets.issue(backend, backend.settings.max_request_duration, clientGroup(conn.slice(0, Math.max(0, conn.lastIndexOf(':')))), keyOf(req))
      } else {
        ticket = tickets.issue(backend, backend.settings.max_request_duration)
      }
      if (ticket !== undefined) {
        backend.started(true)
        return reply.header(UPSTREAM_HEADER, upstream).header(TICKET_HEADER, ticket).send()
      }
      backend.started(false)
      return reply.header(UPSTREAM_HEADER, upstream).header(TICKET_HEADER, NO_TICKET).send()
    }
    backend.started(false)
    if (tickets !== undefined && (snippet === undefined || claimed)) noteUncounted(req)
    return reply.header(UPSTREAM_HEADER, upstream).header(TICKET_HEADER, NO_TICKET).send()
  }

  /** Record the flag directory a relight_fast call names, when the caller is proven Caddy (FAST_DIR_HEADER). */
  function noteFastDir(req: FastifyRequest): void {
    const dir = req.headers[FAST_DIR_HEADER]
    if (typeof dir !== 'string' || dir.length > FAST_DIR_MAX_LENGTH || !overUnixSocket(req.raw.socket)) {
      fastDirsUnproven++
      return
    }
    const now = ++fastDirSeq // an order, not a clock: two calls in one millisecond stay ordered
    if (!fastDirsSeen.has(dir) && fastDirsSeen.size >= FAST_DIRS_KEPT) {
      let oldest: string | undefined
      for (const [d, at] of fastDirsSeen) if (oldest === undefined || at < (fastDirsSeen.get(oldest) as number)) oldest = d
      fastDirsSeen.delete(oldest as string)
    }
    fastDirsSeen.set(dir, now)
  }

  /** Snippet version 2: counted, but its websockets, aborted requests and 502s are not seen ending. */
  function noteV2(req: FastifyRequest): void {
    v2SnippetCalls++
    if (!atPowerOfTwo(v2SnippetCalls)) return // 1st, 2nd, 4th, 8th…
    logger.warn(
      { calls: v2SnippetCalls, host: req.headers.host },
      'Caddy uses relight snippet version 2: websockets, aborted requests and Caddy errors (502, 504) are logged without their ticket, so each keeps its app awake until max_request_duration. Update it: relight-sidecar snippet > relight.caddy, then reload Caddy (see README, "Accounting model")',
    )
  }

  /** An authorised call without the snippet marker: an old snippet (tell the operator) or a direct call. */
  function noteUncounted(req: FastifyRequest): void {
    if (req.headers['x-forwarded-method'] === undefined) return // not forward_auth: a probe or a hand-made call
    oldSnippetCalls++
    if (!atPowerOfTwo(oldSnippetCalls)) return // 1st, 2nd, 4th, 8th…
    logger.warn(
      { calls: oldSnippetCalls, host: req.headers.host },
      'Caddy uses an old relight snippet (forward_auth without X-Relight-Snippet: 3 and X-Relight-Request): its requests are not counted in flight, so open streams do not keep apps awake. Update it: relight-sidecar snippet > relight.caddy, then reload Caddy (see README, "Accounting model")',
    )
  }

  app.get('/_relight/ask', (req, reply) => {
    const domain = (req.query as Record<string, unknown>).domain
    if (typeof domain !== 'string') {
      return sendPublicError(req, reply, new RelightError('RELIGHT_ERR_HOST_INVALID', 'the domain query parameter is missing'), logger, undefined)
    }
    // Only the canonical spelling gets a certificate: every other spelling of an approved name
    // would be another certificate for the same site (unbounded issuance).
    const problem = canonicalHostProblem(domain)
    if (problem !== undefined) return sendPublicError(req, reply, new RelightError('RELIGHT_ERR_HOST_INVALID', `the domain is ${problem}`), logger, undefined)
    const host = domain
    // The answer names no backend: /ask needs no credentials, so any local caller may ask.
    if (deps.stateful?.resolve(host)) return reply.send({ allowed: true, domain: host })
    const hit = registry.index.resolve(host)
    if (hit) return reply.send({ allowed: true, domain: host })
    return registry.resolveAfterMiss(host).then(
      (late) => {
        if (late) return reply.send({ allowed: true, domain: host })
        return sendPublicError(req, reply, new RelightError('RELIGHT_ERR_HOST_UNKNOWN', `no backend serves ${host}`, { host }), logger, host)
      },
      (err: unknown) => sendPublicError(req, reply, err, logger, host),
    )
  })

  app.get('/_relight/healthz', (_req, reply) => {
    const providers: Record<string, unknown> = {}
    // Counted from the registry now, not at the provider's last list: a backend an event added
    // or removed since then is counted at once (backends == sum of providers' backends).
    const counts = new Map<string, number>()
    const awake = new Map<string, number>()
    for (const b of registry.all()) {
      const id = providerId(b.provider)
      counts.set(id, (counts.get(id) ?? 0) + 1)
      if (b.phase === 'running') awake.set(id, (awake.get(id) ?? 0) + 1)
    }
    for (const [id, status] of registry.status) providers[id] = { ...status, backends: counts.get(id) ?? 0, awake: awake.get(id) ?? 0 }
    return reply.send({
      status: registry.degraded() ? 'degraded' : 'ok',
      backends: registry.size,
      providers,
      access_log: options.accessLogState?.() ?? 'not configured',
      // the relight.caddy version Caddy's last forward_auth call came from; null before the first
      snippet: snippetSeen ?? null,
      // the version of the file this sidecar prints (4); its plain `relight` sends 3, also current
      snippet_current: SNIPPET_FAST,
      snippet_outdated: snippetSeen !== undefined && snippetSeen !== SNIPPET_VERSION && snippetSeen !== SNIPPET_FAST,
      // the directories relight_fast was given, as its forward_auth calls over a unix-socket
      // `listen` said (proven Caddy; most recently named first, at most FAST_DIRS_KEPT)
      fast_lane_dirs: [...fastDirsSeen].sort((a, b) => b[1] - a[1]).map(([d]) => d),
      // relight_fast calls whose directory was not recorded (over TCP: any local user can send it; or too long)
      fast_lane_dirs_unproven: fastDirsUnproven,
      version: VERSION,
      uptime_s: Math.round((Date.now() - startedAt) / 1000),
    })
  })

  registerOperations(app, options, registry, logger, outcomes)
  return app
}
