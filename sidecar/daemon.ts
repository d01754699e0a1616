/** Wires config, providers, registry, access log and HTTP server into one running sidecar. */
import type { FastifyInstance } from 'fastify'
import { createServer, type Server } from 'node:http'
import type { Logger } from 'pino'
import type { Config } from './config/schema.js'
import { AccessLogServer, hostOf, REPLY_HEADER, requestKeyOf } from './core/access-log.js'
import { FastLane } from './core/fast-lane.js'
import type { Backend } from './core/backend.js'
import { type Provider, providerId } from './core/provider.js'
import { Registry } from './core/registry.js'
import { RelightError } from './core/errors.js'
import { MAX_OPEN_PER_BACKEND, MAX_OPEN_PER_CLIENT, MAX_OPEN_TICKETS, type TicketBound, TicketLedger } from './core/tickets.js'
import { bindPrivately, claimSocketPath, listenPrivately, secureSocket } from './core/unix-socket.js'
import { Heartbeat } from './heartbeat/heartbeat.js'
import { Webhooks } from './ops/webhooks.js'
import { WaitingPages } from './pages/template.js'
import type { Resolver } from './routing/stateful/resolver.js'
import { StatefulRouter } from './routing/stateful/router.js'
import { createProviders, reconfigureInPlace } from './providers/index.js'
import { buildApp } from './server/app.js'
import { type ReloadResult, Reloader } from './reload.js'
import { describeListenError, parseTcpAddress, unixPath } from './startup/listen-address.js'
import { socketGid } from './startup/preflight.js'
import { atPowerOfTwo, crossedPowerOfTwo } from './core/log-throttle.js'

export interface SidecarOptions {
  readonly logger: Logger
  /** Relative paths in the config resolve against this (the config file's directory). */
  readonly baseDir: string
  /** Providers to use instead of the configured ones (tests, benchmarks). */
  readonly providers?: Provider[]
  readonly now?: () => number
  /** DNS for stateful upstream hosts (tests inject one); default: the system's. */
  readonly resolver?: Resolver
  /** The config file, read again by reload(). */
  readonly configFile?: string
  /** Fast lane: grace after a flag's removal before a sleep (tests; default LANE_GRACE_MS). */
  readonly fastLaneGraceMs?: number
}

export interface Sidecar {
  readonly app: FastifyInstance
  readonly registry: Registry
  readonly accessLog: AccessLogServer | undefined
  /** In-flight tickets (present with `access_log`). */
  readonly tickets: TicketLedger<Backend> | undefined
  /** Present when `heartbeat` is configured. */
  readonly heartbeat: Heartbeat | undefined
  /** Stateful (doors-caddy) routing, when `stateful:` lists any site. */
  readonly stateful: StatefulRouter | undefined
  /** `host:port` or `unix:/path` the HTTP server listens on (real port when configured :0). */
  readonly address: string
  /** Where `ops_listen` listens (real port when configured :0); undefined without it. */
  readonly opsAddress: string | undefined
  /**
   * Read the config file again and apply the difference (sidecar/reload.ts). An invalid file
   * changes nothing and resolves with its problems. Concurrent calls are coalesced.
   */
  reload(): Promise<ReloadResult>
  /** Stop accepting requests, stop timers, stop child processes. Idempotent. */
  close(): Promise<void>
}

export async function startSidecar(config: Config, options: SidecarOptions): Promise<Sidecar> {
  const log = options.logger
  // Read before anything starts: a missing template file is a configuration error.
  const waitingPages = WaitingPages.load(config, options.baseDir)
  const startConfig = config
  const providers = options.providers ?? createProviders(config, log, { baseDir: options.baseDir })
  const gid = socketGid(config)
  const registry = new Registry(providers, config, log, options.now)
  // The fast lane's flags (core/fast-lane.ts): the directory is emptied before any backend is
  // listed, so no flag of an earlier sidecar survives into this one.
  let fastLane: FastLane | undefined
  if (config.fast_lane_dir !== undefined) {
    fastLane = new FastLane({ dir: config.fast_lane_dir, sharedPidNamespace: config.fast_lane_shared_pid_namespace, ...(gid !== undefined ? { gid } : {}) })
    try {
      fastLane.reset()
    } catch (err) {
      throw new RelightError('RELIGHT_ERR_CONFIG', `fast_lane_dir ${config.fast_lane_dir} refused: ${(err as Error).message}`)
    }
    registry.useFastLane(fastLane, options.fastLaneGraceMs)
  }
  const makeWebhooks = (c: Config) => (c.webhooks.length > 0 ? new Webhooks(c.webhooks, registry.events, log.child({ component: 'webhooks' })) : undefined)
  // A reload replaces it (read through the closure by metrics and close()).
  let webhooks = makeWebhooks(config)
  // Created after the access-log listener (which may fail to bind): its DNS timers run until close().
  let stateful: StatefulRouter | undefined

  let accessLog: AccessLogServer | undefined
  let tickets: TicketLedger<Backend> | undefined
  let expiryTimer: NodeJS.Timeout | undefined
  let connections = 0
  if (config.access_log) {
    const ledger = new TicketLedger<Backend>({ ...(options.now ? { now: options.now } : {}), onLost: ticketsLost(log), onFull: ticketsRefused(log) })
    // Lines without their ticket end requests by Caddy's identity of them (client ip:port, method,
    // Host, URI), which any local user can read from /proc/net/tcp, and a connection proves itself
    // with any ticket its writer saw (a client sees its own). So they count only where nobody but
    // Caddy can connect: a unix socket (owner, or socket_group). Over TCP every local user could
    // end another client's request with them.
    const unticketedTrusted = config.access_log.startsWith('unix:')
    tickets = ledger
    accessLog = new AccessLogServer(
      config.access_log,
      {
        ticket: (ticket, conn) => {
          ledger.finish(ticket, conn)
        },
        wantUnticketed: () => unticketedTrusted && ledger.keyed,
        unticketed: (line, conn) => {
          const key = requestKeyOf(line)
          if (key !== undefined) ledger.finishUnticketedLater(key, conn)
        },
        // A fast-lane request's end (no ticket: it never passed /auth) is activity for its host.
        // Before the connection is proven too on a unix socket (Caddy opens a new one at every
        // reload; a busy fast-lane app may see no ticketed request for long): activity only.
        wantLaneLines: (conn) => fastLane !== undefined && (conn.proven || unticketedTrusted),
        laneLine: (line) => {
          const target = registry.index.lookupRaw(hostOf(line)).target
          if (target !== undefined && (target.settings.fast_lane || target.laneUsedSinceWake)) target.laneRequestEnded()
        },
        opened: (conn) => {
          connections++
          ledger.connectionOpened(conn)
          registry.countInflight = true
        },
        closed: (conn) => {
          connections--
          ledger.connectionClosed(conn)
          registry.countInflight = ledger.counting
        },
      },
      log.child({ component: 'access-log' }),
      { maxConnections: config.access_log_max_connections, maxLine: config.access_log_max_line },
    )
    await listening('access_log', config.access_log, () => (accessLog as AccessLogServer).listen(), gid)
    expiryTimer = setInterval(() => ledger.expire(), TICKET_EXPIRY_TICK_MS)
    expiryTimer.unref()
    log.info({ address: config.access_log }, 'listening for the Caddy access log')
  } else if (providers.length > 0) {
    log.warn(
      'access_log is not configured: a backend counts as idle idle_timeout after its last request started, so long websocket/SSE streams and downloads may be put to sleep. Add `log { output net ... format json }` to Caddy and `access_log:` here.',
    )
  }

  const makeStateful = (c: Config): StatefulRouter | undefined =>
    c.stateful.length === 0
      ? undefined
      : new StatefulRouter(c.stateful, log.child({ component: 'stateful' }), {
          ...(options.resolver ? { resolver: options.resolver } : {}),
          ...(c.dns.servers ? { servers: c.dns.servers } : {}),
          ...(options.now ? { now: options.now } : {}),
        })
  stateful = makeStateful(config)
  const app = buildApp(
    {
      ...(config.admin ? { adminToken: config.admin.token } : {}),
      ...(accessLog ? { accessLogState: () => (tickets?.proven ? 'connected' : connections > 0 ? 'unproven' : 'disconnected'), accessLogConnections: () => connections } : {}),
      ...(config.heartbeat ? { heartbeatFailures: () => heartbeat?.counters.failed ?? 0 } : {}),
      webhooks: () => webhooks?.stats() ?? [],
      reload: () => reload(),
    },
    {
      registry,
      logger: log,
      waitingPages,
      // read on every request: a reload may replace it
      get stateful() {
        return stateful
      },
      ...(tickets ? { tickets } : {}),
    },
  )

  let heartbeat: Heartbeat | undefined
  let ops: OpsListener | undefined
  let closing: Promise<void> | undefined
  /** Providers a reload removed or replaced, while they close. */
  const retiring = new Set<Promise<void>>()
  const closeProvider = (p: Provider): Promise<void> => p.close?.().catch((err: unknown) => log.error({ err, provider: providerId(p) }, 'provider close failed')) ?? Promise.resolve()
  const close = (): Promise<void> => {
    closing ??= (async () => {
      fastLane?.clear() // the lane closes first: nothing goes around a sidecar that is stopping
      heartbeat?.close()
      clearInterval(expiryTimer)
      registry.close()
      webhooks?.close()
      stateful?.close()
      await ops?.close()
      await app.close().catch(() => undefined)
      await accessLog?.close()
      await Promise.all([...registry.providers.map(closeProvider), ...retiring])
    })()
    return closing
  }
  const startHeartbeat = (c: Config) => {
    if (!c.heartbeat) return
    heartbeat = new Heartbeat(c.heartbeat, () => registry.all(), log.child({ component: 'heartbeat' }))
    heartbeat.start()
    log.info({ every_ms: c.heartbeat.interval, node_ip: c.heartbeat.node_ip }, 'sending heartbeats')
  }
  let running = config
  const reloader = new Reloader({
    file: options.configFile,
    registry,
    logger: log,
    current: () => running,
    createProviders: (c) => createProviders(c, log, { baseDir: options.baseDir }),
    reconfigure: reconfigureInPlace,
    closeProvider: (p) => {
      const done = closeProvider(p).finally(() => retiring.delete(done))
      retiring.add(done)
      return done
    },
    replaceStateful: (c) => {
      const old = stateful
      stateful = makeStateful(c)
      old?.close()
    },
    replaceWebhooks: (c) => {
      webhooks?.close() // pending deliveries of the old list are abandoned
      webhooks = makeWebhooks(c)
    },
    replaceHeartbeat: (c) => {
      heartbeat?.close()
      heartbeat = undefined
      startHeartbeat(c)
    },
    commit: (c) => {
      running = c
    },
  })
  const reload = (): Promise<ReloadResult> => {
    if (closing) return Promise.resolve({ ok: false, errors: ['the sidecar is shutting down'] })
    return reloader.reload().then((result) => {
      if (result.ok && result.changed) registry.events.emit({ type: 'config.applied', providers: registry.providers.map(providerId), backends: registry.size })
      return result
    })
  }

  let address: string
  try {
    await registry.start()
    registry.startIdleWatcher()
    address = await listen(app, config.listen, gid)
    if (config.ops_listen !== undefined) {
      ops = await opsListen(app, config.ops_listen, gid)
      log.info({ address: ops.address }, 'listening for ask, healthz, metrics, the status page and the admin API (not /_relight/auth)')
    }
  } catch (err) {
    await close() // stop always_on children and the log listener: nothing is left running
    throw err
  }
  log.info({ address, backends: registry.size, stateful_sites: stateful?.sites.length ?? 0 }, 'relight-sidecar listening')
  registry.events.emit({ type: 'config.applied', providers: providers.map(providerId), backends: registry.size })
  startHeartbeat(startConfig)

  return {
    app,
    registry,
    accessLog,
    tickets,
    get heartbeat() {
      return heartbeat
    },
    get stateful() {
      return stateful
    },
    address,
    get opsAddress() {
      return ops?.address
    },
    reload,
    close,
  }
}

/** How often tickets past their max_request_duration are dropped (a scan only when one is due). */
const TICKET_EXPIRY_TICK_MS = 1000

/** Logs tickets that stopped counting without their line: each reason at 1, 2, 4, 8… occurrences. */
/** Requests refused a ticket (a bound reached): logged at 1, 2, 4, 8… refusals, not per request. */
function ticketsRefused(log: Logger): (bound: TicketBound, total: number) => void {
  const why: Record<TicketBound, string> = {
    ledger: `in-flight ledger full (${MAX_OPEN_TICKETS} open tickets)`,
    backend: `one backend holds ${MAX_OPEN_PER_BACKEND} open tickets (a flood of requests to one app?)`,
    client: `one client address holds ${MAX_OPEN_PER_CLIENT} open tickets (a flood from one client?)`,
  }
  return (bound, total) => {
    if (!atPowerOfTwo(total)) return
    log.warn({ bound, total }, `${why[bound]}: its new requests count as activity only, open ones keep counting`)
  }
}

function ticketsLost(log: Logger): (reason: 'expired' | 'connection', count: number) => void {
  const seen = { expired: 0, connection: 0 }
  return (reason, count) => {
    const before = seen[reason]
    seen[reason] += count
    if (!crossedPowerOfTwo(before, seen[reason])) return
    const why = {
      expired: 'requests stopped counting in flight: no access-log line within max_request_duration (lost line, or an /auth call Caddy did not make)',
      connection: 'requests stopped counting in flight: the access-log connection that would report their end closed',
    }[reason]
    log.warn({ reason, count, total: seen[reason] }, why)
  }
}

/**
 * Run `bind` for a listener named `what`; a bind error becomes a RelightError with the sentence
 * `check` prints for the same cause, and a unix socket gets its mode and group.
 */
async function listening<T>(what: string, address: string, bind: () => Promise<T>, gid: number | undefined): Promise<T> {
  let result: T
  try {
    result = await bind()
  } catch (err) {
    if (err instanceof RelightError || typeof (err as NodeJS.ErrnoException).code !== 'string') throw err
    throw new RelightError('RELIGHT_ERR_CONFIG', describeListenError(what, address, err), {}, { cause: err })
  }
  const path = unixPath(address)
  if (path !== undefined) secureSocket(path, what, gid)
  return result
}

async function listen(app: FastifyInstance, listenAddress: string, gid: number | undefined): Promise<string> {
  const path = unixPath(listenAddress)
  if (path !== undefined) {
    await claimSocketPath(path, 'listen')
    listenPrivately(app.server) // bound 0700 until secureSocket
    await listening('listen', listenAddress, () => app.listen({ path }), gid)
    return listenAddress
  }
  const colon = listenAddress.lastIndexOf(':')
  const host = listenAddress.slice(0, colon).replace(/^\[|\]$/g, '') || '127.0.0.1'
  await listening('listen', listenAddress, () => app.listen({ host, port: Number(listenAddress.slice(colon + 1)) }), gid)
  const bound = app.server.address()
  if (!bound || typeof bound !== 'object') return listenAddress
  return `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`
}

interface OpsListener {
  readonly address: string
  close(): Promise<void>
}

/** Paths `ops_listen` never serves: /auth decides routing and counts activity, it is Caddy's alone. */
const AUTH_PATH = /^\/_relight\/auth(?:[/?]|$)/

/**
 * `ops_listen`: a second HTTP listener that hands every request to the same app (one admin
 * session store, one metrics registry, one events buffer), except /_relight/auth, which gets 404.
 */
async function opsListen(app: FastifyInstance, address: string, gid: number | undefined): Promise<OpsListener> {
  const server: Server = createServer((req, res) => {
    if (AUTH_PATH.test(req.url ?? '')) {
      // the body sendError (server/responses.ts) gives RELIGHT_ERR_NOT_FOUND
      res.writeHead(404, { 'content-type': 'application/problem+json', [REPLY_HEADER]: 'RELIGHT_ERR_NOT_FOUND', 'cache-control': 'no-store' })
      const detail = '/_relight/auth is served on listen only, never on ops_listen'
      res.end(JSON.stringify({ type: 'urn:relight:error:RELIGHT_ERR_NOT_FOUND', title: 'Not found', status: 404, detail, code: 'RELIGHT_ERR_NOT_FOUND' }))
      return
    }
    app.server.emit('request', req, res)
  })
  // Event streams stay open; close() must not wait for them.
  const close = () =>
    new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  const path = unixPath(address)
  if (path !== undefined) await claimSocketPath(path, 'ops_listen')
  const bindTo = path !== undefined ? { path } : parseTcpAddress(address)
  await listening('ops_listen', address, () => new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    const bind = () => server.listen(bindTo, () => {
      server.off('error', reject)
      resolve()
    })
    if (path !== undefined) bindPrivately(bind) // 0700 until secureSocket
    else bind()
  }), gid)
  const bound = server.address()
  const actual = path !== undefined || !bound || typeof bound !== 'object' ? address : `${bound.address.includes(':') ? `[${bound.address}]` : bound.address}:${bound.port}`
  return { address: actual, close }
}
