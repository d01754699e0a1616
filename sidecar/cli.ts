/**
 * relight-sidecar command line: serve, check, reload, health, snippet. Loaded by main.ts (the
 * package bin) once serve's signal handlers are in place.
 */
import { takeSignals } from './startup/early-signals.js'
import { WaitingPages } from './pages/template.js'
import { readFileSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { fastLaneDirIn, loadConfig, type ParseOptions, parseConfig, readConfigText } from './config/load.js'
import type { Config } from './config/schema.js'
import { isRelightError } from './core/errors.js'
import { type BackendInfo, type Provider, providerId } from './core/provider.js'
import type { IgnoreRule } from './core/ignore.js'
import { type Sidecar, startSidecar } from './daemon.js'
import { createLogger, type LogFormat } from './logger.js'
import { createProviders, preflight } from './providers/index.js'
import { SystemResolver } from './routing/stateful/resolver.js'
import { requestReload, writePidFile } from './reload-client.js'
import { checkHealth } from './health-client.js'
import { parseDuration } from './core/duration.js'
import { stateDir } from './config/state-dir.js'
import { FAST_DIR_MAX_LENGTH, SNIPPET_FAST, SNIPPET_VERSION } from './server/app.js'
import { unixPath } from './startup/listen-address.js'
import { laneHostProblem, pidMaxProblem, pidNamespaceProblem, removeStaleFlags } from './core/fast-lane.js'
import { parseHostPattern } from './core/hosts.js'
import { findRunningSidecar, type Live } from './ops/live-sidecar.js'
import { capsOf, Registry } from './core/registry.js'
import type { Schedule } from './core/schedule.js'

const SNIPPET_FILE = new URL('../../caddy/relight.caddy', import.meta.url)

const HELP: Record<string, string> = {
  main: `relight-sidecar — scale-to-zero for stock Caddy

Usage:
  relight-sidecar serve --config FILE    run the sidecar
  relight-sidecar check --config FILE    validate the config and probe every provider
  relight-sidecar reload --config FILE   make the running sidecar read its config again
  relight-sidecar health --config FILE   ask the running sidecar whether it is healthy (probes)
  relight-sidecar snippet                print the Caddy snippet to import
  relight-sidecar <command> --help       help for one command

Docs: README.md (configuration reference, Caddy set-up, error codes).`,
  serve: `relight-sidecar serve --config FILE [--log-format json|pretty]

Runs the sidecar: answers Caddy's forward_auth (/_relight/auth) and on-demand TLS ask
(/_relight/ask), wakes sleeping backends, puts idle ones to sleep. SIGTERM or SIGINT stop it
gracefully (child processes get their stop_signal and grace_period).

  --config, -c FILE     YAML configuration (required)
  --log-format FORMAT   json (default when stdout is not a terminal) or pretty`,
  check: `relight-sidecar check --config FILE

Validates the configuration, runs the start-up checks serve runs (listen and access_log free,
socket directories, socket_group, every process app's port free), then asks each provider
whether it can work (engine reachable, permissions, commands present) and explains each problem
in words. serve refuses to start on any start-up problem, with the same sentence.
With this config's sidecar running, its own sockets and apps are not problems, and check shows
its live view (healthz, Caddy's access log, the snippet version Caddy sends) without disturbing it.
Exits 0 when everything is fine, 1 on any problem, 2 on a usage error.

  --config, -c FILE     YAML configuration (required)`,
  reload: `relight-sidecar reload --config FILE

Asks the running sidecar to read its configuration file again (the same as sending it SIGHUP).
An invalid file changes nothing: the problems are printed (admin API) or logged (SIGHUP).
A valid one is applied as a difference: unchanged apps are not touched.

Reaches the sidecar through the admin API when admin.token is set (prints what changed), else
by sending SIGHUP to the pid in <state_dir>/sidecar.pid. The token is sent only to the process
that pid file names (its listening socket, checked in /proc: run reload as root or the
sidecar's user) or to a unix socket in a directory only root or this user can write.
Exits 0 when the reload was applied (or the signal sent), 1 otherwise.

  --config, -c FILE     the sidecar's YAML configuration (required)`,
  health: `relight-sidecar health --config FILE [--timeout 5s] [--degraded-ok] [--wait]

Asks the running sidecar's GET /_relight/healthz on the configured listen address (unix:/path,
or host:port with 0.0.0.0 / :: asked on loopback) and prints one line. Sends no token (and
does not read admin.token_file: it may run as Caddy's user, who cannot). Made for
a Docker HEALTHCHECK or a Kubernetes exec probe (the sidecar listens on loopback or a socket,
where an httpGet probe cannot reach it, and the image has no curl).
Exits 0 when the sidecar answers "ok", 1 when it does not answer, answers "degraded" (a
provider cannot be listed) or does not answer within the timeout, 2 on a usage error.

  --config, -c FILE     the sidecar's YAML configuration (required)
  --timeout DURATION    how long to wait for the answer (default 5s)
  --degraded-ok         exit 0 on "degraded" too: the process answers (for liveness probes,
                        so an engine or API server outage does not restart the sidecar)
  --wait                ask again every 250 ms until healthy or --timeout has passed (for a
                        start-up hook that holds Caddy back until the sidecar answers)`,
  snippet: `relight-sidecar snippet

Prints caddy/relight.caddy, the Caddyfile snippet to import. Use it in a site block as
  import relight 127.0.0.1:9123          (or unix//run/relight/sidecar.sock)`,
}

function usage(command: string, message?: string): never {
  if (message) process.stderr.write(`relight-sidecar: ${message}\n\n`)
  ;(message ? process.stderr : process.stdout).write(`${HELP[command] ?? HELP.main}\n`)
  process.exit(message ? 2 : 0)
}

/**
 * The configuration, or exit 1 with the problems; `text` when the file was read already.
 * `options.readTokenFile: false` for a command that sends no token (config/load.ts).
 */
function readConfig(file: string, text?: string, options: ParseOptions = {}): Config {
  try {
    return text === undefined ? loadConfig(file, process.env, options) : parseConfig(text, file, process.env, options)
  } catch (err) {
    if (isRelightError(err, 'RELIGHT_ERR_CONFIG')) {
      process.stderr.write(`relight-sidecar: invalid configuration\n${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
}

async function serve(file: string, format: LogFormat): Promise<void> {
  // Signals are caught from the first line (startup/early-signals.ts): a stop before anything
  // runs exits at once; a SIGHUP before the sidecar is ready is applied once it is.
  let onSignal = (signal: string): void => {
    if (signal === 'SIGHUP') reloadWhenReady = true
    else process.exit(0) // nothing is running yet
  }
  let reloadWhenReady = false
  takeSignals((signal) => onSignal(signal))
  // The fast lane's stale flags go first, before anything that can refuse this start (a config
  // error, a port taken, a provider's preflight), and again on every way out: a dead sidecar's
  // flags open again for whoever takes its pid (README, "Fast lane"), so a refused restart must
  // not leave them. Flags of another live sidecar of this user are kept (core/fast-lane.ts).
  // Read once: the file may be a FIFO or /dev/stdin.
  let text: string
  try {
    text = readConfigText(file)
  } catch (err) {
    if (!isRelightError(err, 'RELIGHT_ERR_CONFIG')) throw err
    process.stderr.write(`relight-sidecar: invalid configuration\n${err.message}\n`)
    process.exit(1)
  }
  const laneDir = fastLaneDirIn(text)
  if (laneDir !== undefined) {
    removeStaleFlags(laneDir)
    process.on('exit', () => removeStaleFlags(laneDir))
  }
  const config = readConfig(file, text)
  if (config.fast_lane_dir !== undefined && config.fast_lane_dir !== laneDir) {
    const dir = config.fast_lane_dir // written through an environment variable
    removeStaleFlags(dir)
    process.on('exit', () => removeStaleFlags(dir))
  }
  const baseDir = dirname(resolve(file))
  // The same checks `check` runs first: a refusal is one line, with no stack trace.
  const problems = await preflight(config, { stateDir: stateDir(config, baseDir) })
  try {
    WaitingPages.load(config, dirname(resolve(file)))
  } catch (err) {
    problems.push((err as Error).message)
  }
  if (problems.length > 0) cannotStart(problems)
  const logger = createLogger(config.log_level, format)
  const providers = createProviders(config, logger, { baseDir })
  // Whatever ends this process, supervised children do not outlive it (a no-op after a
  // graceful shutdown, which already stopped them).
  process.on('exit', () => {
    for (const p of providers) p.terminateNow?.()
  })
  const fatal = (what: string) => (err: unknown) => {
    logger.fatal({ err }, what)
    logger.flush()
    process.exit(1)
  }
  process.on('uncaughtException', fatal('uncaught exception'))
  process.on('unhandledRejection', fatal('unhandled rejection'))

  let sidecar: Sidecar | undefined
  let stopping = false
  const stop = (signal: string) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now')
      process.exit(1)
    }
    stopping = true
    logger.info({ signal }, 'stopping: closing the server and stopping child processes')
    setTimeout(() => {
      logger.error({ timeout_ms: config.shutdown_timeout }, 'shutdown took too long; killing child processes and exiting')
      process.exit(1)
    }, config.shutdown_timeout).unref()
    const closing = sidecar ? sidecar.close() : Promise.all(providers.map((p) => p.close?.())).then(() => undefined)
    closing.then(
      () => {
        logger.info('stopped')
        logger.flush()
        setImmediate(() => process.exit(0))
      },
      (err: unknown) => {
        logger.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  // SIGHUP: read the config file again and apply the difference (sidecar/reload.ts logs the outcome).
  const reload = () => {
    if (stopping) {
      logger.warn('SIGHUP ignored: the sidecar is stopping')
      return
    }
    if (!sidecar) {
      if (!reloadWhenReady) logger.info({ file }, 'SIGHUP while starting: the configuration is read again once the sidecar is ready')
      reloadWhenReady = true
      return
    }
    logger.info({ file }, 'SIGHUP: reloading the configuration')
    void sidecar.reload()
  }
  onSignal = (signal) => (signal === 'SIGHUP' ? reload() : stop(signal))
  if (reloadWhenReady) logger.info({ file }, 'SIGHUP while starting: the configuration is read again once the sidecar is ready')

  try {
    sidecar = await startSidecar(config, { logger, baseDir, providers, configFile: resolve(file) })
  } catch (err) {
    if (!isRelightError(err, 'RELIGHT_ERR_CONFIG')) {
      logger.fatal({ err }, 'could not start')
      process.exitCode = 1
      return
    }
    logger.fatal({ reason: err.message }, 'could not start')
    logger.flush()
    cannotStart([err.message])
  }
  if (stopping) {
    await sidecar.close() // a signal came during start-up
    return
  }
  const pidFile = writePidFile(config, baseDir)
  if ('error' in pidFile) logger.warn({ path: pidFile.path, err: pidFile.error }, 'cannot write the pid file: `relight-sidecar reload` needs admin.token or a signal (kill -HUP)')
  else process.on('exit', () => pidFile.remove())
  if (reloadWhenReady) {
    logger.info({ file }, 'SIGHUP (received while starting): reloading the configuration')
    void sidecar.reload()
  }
}

/** Print why serve does not start (the sentences `check` prints) and exit 1. */
function cannotStart(reasons: readonly string[]): never {
  for (const reason of reasons) process.stderr.write(`relight-sidecar: cannot start: ${reason}\n`)
  process.exit(1)
}

/** Resolve every stateful upstream host once, as the sidecar will, and print what it finds. */
async function checkStateful(config: Config, out: (ok: boolean, message: string) => void): Promise<void> {
  if (config.stateful.length === 0) return
  const resolver = new SystemResolver(config.dns.servers)
  for (const [i, site] of config.stateful.entries()) {
    for (const upstream of site.upstreams) {
      try {
        const answer = await resolver.resolve(upstream.host)
        const ttl = Math.min(...answer.map((a) => a.ttl))
        out(true, `stateful[${i}] ${site.hosts.join(', ')}: ${upstream.host} → ${answer.map((a) => a.address).join(', ')}${Number.isFinite(ttl) ? ` (ttl ${ttl}s)` : ''}, pods in ${upstream.cidr} on port ${upstream.port}`)
      } catch (err) {
        out(false, `stateful[${i}] ${site.hosts.join(', ')}: ${upstream.host} does not resolve (${(err as Error).message}); requests other than /~/{token}/… would get 502`)
      }
    }
  }
}

async function check(file: string): Promise<void> {
  const config = readConfig(file)
  const printed = new Set<string>()
  const write = (tag: string, message: string) => {
    const line = `${tag}  ${message}\n`
    if (printed.has(line)) return // one provider or replica may report the same thing twice
    printed.add(line)
    process.stdout.write(line)
  }
  const out = (ok: boolean, message: string) => write(ok ? 'ok     ' : 'PROBLEM', message)
  out(true, `${file}: configuration is valid`)
  const baseDir = dirname(resolve(file))
  const live = await findRunningSidecar(config, baseDir)
  const runningSidecar = live.running ? live.pid : undefined
  for (const problem of await preflight(config, { stateDir: stateDir(config, baseDir), ...(runningSidecar !== undefined ? { runningSidecar } : {}) })) out(false, problem)
  if (live.running) liveView(live, write, config.listen, config.fast_lane_dir !== undefined, config.fast_lane_dir)
  // The live view compared the flag directory Caddy passes with fast_lane_dir (ok or PROBLEM).
  const laneDirSeen = live.running && (live.health?.fast_lane_dirs?.length ?? 0) > 0
  try {
    WaitingPages.load(config, dirname(resolve(file)))
  } catch (err) {
    out(false, (err as Error).message)
  }
  if (config.access_log) {
    out(true, `access_log: listening at ${config.access_log}; Caddy's site blocks need  log { output net ${caddyNetAddress(config.access_log)}  format json }`)
    const liveSnippet = live.running ? live.health?.snippet : undefined
    if (liveSnippet === SNIPPET_VERSION || liveSnippet === SNIPPET_FAST) out(true, `access_log: requests count in flight through the live snippet (version ${liveSnippet}, current${liveSnippet === SNIPPET_VERSION ? `: snippet file ${SNIPPET_FAST}'s relight reports as ${SNIPPET_VERSION}` : ''})`)
    else out(true, `access_log: requests count in flight through snippet version 3 or later (the current snippet file is version 4: its relight sends X-Relight-Snippet: 3, its relight_fast 4; both send X-Relight-Client and X-Relight-Request, and have Caddy log X-Relight-Ticket for every end of a request). Version 2 still counts, but Caddy logs its websocket closes, aborted requests, HTTP/2 stream resets and its own 502/504s without the ticket: each of those keeps its app awake until max_request_duration (serve logs "relight snippet version 2"). Version 1 must be replaced: nothing counts in flight, and it forwards the client's own X-Relight-* headers to the sidecar, so a client can claim to be snippet 2 or 3 through it and keep an app awake until max_request_duration (serve logs "old relight snippet"). Compare: relight-sidecar snippet | diff - /etc/caddy/relight.caddy`)
  }
  if (config.fast_lane_dir !== undefined) {
    // Which snippet each feature needs: the fast lane is version 4's relight_fast.
    out(true, `fast_lane: needs snippet version 4 (relight-sidecar snippet): in each site block  import relight_fast ${caddyNetAddress(config.listen)} ${config.fast_lane_dir}  (relight_fast sends X-Relight-Snippet: 4)`)
    // README "Fast lane": without socket_group any local user reads the sidecar's pid in a flag, to aim at when it dies.
    if (config.socket_group === undefined) write('WARNING', `fast_lane: flags in ${config.fast_lane_dir} are world-readable (0755): every local user can read the sidecar's pid in them, to take it when the sidecar dies; set socket_group (Caddy's group) to make them 0750`)
    else out(true, `fast_lane: flags in ${config.fast_lane_dir} are readable by group ${config.socket_group} (0750)`)
    // Checked here, in the process running `check` (run it where the sidecar runs).
    const ns = pidNamespaceProblem()
    if (ns === undefined) out(true, 'fast_lane: this process runs in the initial (host) pid namespace, which every Caddy resolves the flags in')
    else if (config.fast_lane_shared_pid_namespace) write('WARNING', `fast_lane: ${ns}; fast_lane_shared_pid_namespace: true says Caddy shares it (not checkable from here: if it does not, the lane does not close when the sidecar dies)`)
    else out(false, `fast_lane: ${ns}: serve refuses fast_lane_dir here (Caddy resolves the flags' /proc links in its own pid namespace). Run with the host pid namespace, or set fast_lane_shared_pid_namespace: true if Caddy shares this one`)
    const pidMax = pidMaxProblem()
    if (pidMax !== undefined) write('WARNING', `fast_lane: ${pidMax}`)
    // The directory relight_fast is given is compared with fast_lane_dir by the live check above, when it has seen one.
    if (laneDirSeen) write('UNCHECKED', 'fast_lane: that Caddy shares this network namespace (the connection check reads this /proc/net/tcp) cannot be checked from here')
    else write('UNCHECKED', 'fast_lane: that Caddy shares this network namespace (the connection check reads this /proc/net/tcp) and passes this fast_lane_dir to relight_fast cannot be checked from here')
    if (!config.access_log) write('WARNING', 'fast_lane without access_log: a fast-lane request is seen only while its connection to the upstream is open')
    else if (!config.access_log.startsWith('unix:')) write('WARNING', 'fast_lane with a TCP access_log: fast-lane log lines count only once a ticketed request proved the log connection (after each Caddy reload); a unix socket counts them at once')
  } else if (config.defaults.fast_lane) {
    out(false, 'defaults.fast_lane is on but fast_lane_dir is not set')
  }
  const sockets = [config.listen, config.access_log].filter((a) => a?.startsWith('unix:'))
  if (sockets.length > 0) {
    out(true, config.socket_group === undefined ? `unix sockets are owner-only (0600): Caddy must run as uid ${process.getuid?.()} or set socket_group` : `unix sockets get group ${config.socket_group}, mode 0660`)
  } else if (config.socket_group !== undefined) {
    write('WARNING', 'socket_group is set but neither listen nor access_log is a unix socket: it has no effect')
  }
  const logger = createLogger('silent', 'json')
  const providers = createProviders(config, logger, { baseDir: dirname(resolve(file)) })
  if (!config.access_log && providers.length > 0) {
    // serve logs the same warning at start-up
    write('WARNING', 'access_log is not configured: idle means "no request started for idle_timeout"; open websocket/SSE streams are not seen (configure it to fix)')
  }
  if (providers.length === 0 && config.stateful.length === 0) {
    out(false, 'no provider is configured (providers.process, providers.docker, …): nothing can be routed')
  }
  await checkStateful(config, out)
  // Where `client` ignore rules are set: they match only through snippet version 3.
  const clientRules = hasClientRule(config.defaults.ignore) ? ['defaults.ignore'] : []
  ignoreRuleCheck('defaults.ignore', config.defaults.ignore, write)
  // `fast_lane: on` on a backend needs the top-level fast_lane_dir (serve only logs it per backend)
  const fastLaneWithoutDir: string[] = []
  // Backends with fast_lane on: how many can take the lane, and why the others never do.
  let laneCanOpen = 0
  const laneInactive = new Map<string, string>()
  // Each backend's settings as serve resolves them (defaults, provider block, labels), for its policy line.
  const resolver = new Registry(providers, config, logger)
  const caps = capsOf(config)
  for (const provider of providers) {
    const signal = AbortSignal.timeout(15_000)
    try {
      const backends = await provider.list(signal)
      // With a sidecar running, the states are its (the live view above): this list is check's own
      // look, which for process apps sees none of the running sidecar's children.
      const state = (b: { state: string }) => (live.running ? '' : ` ${b.state}`)
      out(true, `${providerId(provider)}: ${backends.length} backend(s): ${backends.map((b) => `${b.name} [${b.hosts.join(', ') || 'no hosts'}]${state(b)}`).join('; ') || 'none'}`)
      busyCpuCheck(provider, backends, config.defaults.busy_cpu, write)
      for (const b of backends) write('ok     ', `${providerId(provider)}: ${b.name}: ${policyLine(resolver, config, caps, provider, b)}`)
      for (const b of backends) {
        const s = resolver.resolveSettings(provider, b)
        if (!s.fast_lane) continue
        const why = fastLaneInactive(config, s, provider, b)
        if (why === undefined) laneCanOpen++
        else laneInactive.set(`${providerId(provider)}: ${b.name}`, why)
      }
      for (const b of backends) {
        if (hasClientRule(b.settings.ignore)) clientRules.push(`${providerId(provider)}: ${b.name}`)
        ignoreRuleCheck(`${providerId(provider)}: ${b.name}: ignore`, b.settings.ignore, write)
        if (b.settings.fast_lane === true && config.fast_lane_dir === undefined) fastLaneWithoutDir.push(`${providerId(provider)}: ${b.name}`)
      }
    } catch (err) {
      out(false, `${providerId(provider)}: cannot list backends: ${(err as Error).message}`)
      busyCpuCheck(provider, [], config.defaults.busy_cpu, write)
    }
    for (const result of (await provider.check?.(signal).catch((err: unknown) => [{ ok: false, message: (err as Error).message }])) ?? []) {
      out(result.ok, `${providerId(provider)}: ${result.message}`)
    }
    await provider.close?.()
  }
  clientRuleCheck(clientRules, live.running ? live.health?.snippet : undefined, write)
  if (fastLaneWithoutDir.length > 0) {
    out(false, `fast_lane: on for ${fastLaneWithoutDir.join(', ')}, but fast_lane_dir (top level) is not set: they stay in the forward_auth lane. Set fast_lane_dir (e.g. /run/relight/awake) and import relight_fast with it`)
  }
  if (config.fast_lane_dir !== undefined && laneCanOpen === 0 && laneInactive.size > 0) {
    // e.g. defaults.ignore with defaults.fast_lane: every app silently stays in forward_auth
    const reasons = [...new Set(laneInactive.values())]
    write('WARNING', `fast_lane: on for ${laneInactive.size} backend(s), but none of them can take the fast lane (${reasons.join('; ')}): every request goes through forward_auth`)
  }
  // Counted from what was printed: a repeated line is one problem.
  const found = [...printed].filter((line) => line.startsWith('PROBLEM')).length
  process.stdout.write(found === 0 ? '\nall checks passed\n' : `\n${found} problem(s) found\n`)
  process.exitCode = found === 0 ? 0 : 1
}

/** A duration as the config writes it: 10m, 90s, 1h, 250ms. */
function duration(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`
  if (ms % 1000 === 0) return `${ms / 1000}s`
  return `${ms}ms`
}

/** A schedule with every window's zone named (a window written without one is in the local zone). */
function scheduleText(s: Schedule): string {
  const zones = s.zoneNames()
  return zones.every((z) => s.text.includes(z)) ? `"${s.text}"` : `"${s.text}" (${zones.join(', ')})`
}

/**
 * One line of the policies that decide when a backend sleeps (README "When does a backend
 * sleep?"), resolved as serve resolves them: idle_timeout, ignore rules, busy_cpu, startup_grace,
 * the schedules, the max_awake caps it counts in and fast_lane.
 */
function policyLine(resolver: Registry, config: Config, caps: ReturnType<typeof capsOf>, provider: Provider, b: BackendInfo): string {
  const s = resolver.resolveSettings(provider, b)
  const lane = fastLaneInactive(config, s, provider, b)
  const rules = b.settings.ignore ?? config.defaults.ignore
  const cap = [...(caps.perProvider.has(providerId(provider)) ? [`${providerId(provider)} (${caps.perProvider.get(providerId(provider))})`] : []), ...(caps.global !== undefined ? [`global (${caps.global})`] : [])]
  return [
    s.always_on ? 'always_on (never put to sleep)' : `idle_timeout ${duration(s.idle_timeout)}`,
    rules.length === 0 ? 'ignore: none' : `ignore: ${rules.length} rule${rules.length === 1 ? '' : 's'} (${s.ignore_status} while asleep)`,
    `busy_cpu ${s.busy_cpu === undefined ? 'off' : `${s.busy_cpu}%`}`,
    `startup_grace ${duration(s.startup_grace)}`,
    `awake_during ${s.awake_during ? scheduleText(s.awake_during) : 'none'}`,
    `asleep_during ${s.asleep_during ? scheduleText(s.asleep_during) : 'none'}`,
    `max_awake ${cap.length === 0 ? 'none' : cap.join(', ')}`,
    `fast_lane ${!s.fast_lane ? 'off' : lane === undefined ? 'on' : `on (inactive: ${lane})`}`,
  ].join('; ')
}

/**
 * Why a backend with `fast_lane: on` can never take the fast lane, as far as its configuration
 * and its listing say (the standing conditions of Backend.fastLaneOff, core/backend.ts; the admin
 * API names them as `fast_lane_off` while it is awake); undefined when the lane can open.
 */
function fastLaneInactive(config: Config, s: ReturnType<Registry['resolveSettings']>, provider: Provider, b: BackendInfo): string | undefined {
  if (!s.fast_lane) return undefined
  if (config.fast_lane_dir === undefined) return 'fast_lane_dir is not set'
  if (!s.ignore.empty) return 'it has ignore rules (decided per request by the sidecar)'
  if (provider.shared !== undefined) return 'several sidecars decide its sleep (Swarm, Kubernetes): its requests must be seen, and shared, from their start'
  if (b.upstreams.length > 1) return `${b.upstreams.length} upstreams (replicas keep the forward_auth lane, which balances them)`
  // The names registry.ts laneHosts flags: exact hosts and one-label hosts under base_domains, not a stateful site's.
  const stateful = new Set(config.stateful.flatMap((site) => site.hosts))
  const names = b.hosts.flatMap((declared) => {
    const pattern = parseHostPattern(declared)
    if (pattern?.kind === 'exact') return [pattern.name]
    if (pattern?.kind === 'label') return config.base_domains.map((base) => `${pattern.label}.${base}`)
    return []
  })
  if (!names.some((n) => laneHostProblem(n) === undefined && !stateful.has(n))) return 'no exact host (a wildcard, non-canonical or stateful host cannot be flagged)'
  return undefined
}

/**
 * busy_cpu needs the provider's CPU reading (`stats`): where there is none, say so, and warn when
 * defaults or a backend's labels set it (the block itself cannot: its schema refuses the key).
 */
function busyCpuCheck(provider: Provider, backends: readonly BackendInfo[], fromDefaults: number | undefined, write: (tag: string, message: string) => void): void {
  if (provider.stats) return
  const setBy = backends.filter((b) => b.settings.busy_cpu !== undefined).map((b) => b.name)
  const what = `${providerId(provider)}: ${provider.kind} cannot measure a backend's CPU, so busy_cpu does not apply to its backends`
  if (fromDefaults === undefined && setBy.length === 0) write('ok     ', what)
  else write('WARNING', `${what}; set by ${[...(fromDefaults !== undefined ? ['defaults.busy_cpu'] : []), ...setBy].join(', ')} and ignored there`)
}

/** Everything an IPv4 or IPv6 `client` condition can match. */
const ANY_CLIENT = new Set(['0.0.0.0/0', '::/0'])

/**
 * The two `ignore` foot-guns README "Ignored traffic" warns about: a rule with only `client`
 * ignores every real user behind that address (an office, a proxy, a CDN), and a rule whose
 * conditions are all as wide as they go (`path: /`, any client) ignores every request: either
 * way a sleeping app is never woken by them.
 */
function ignoreRuleCheck(where: string, rules: readonly IgnoreRule[] | undefined, write: (tag: string, message: string) => void): void {
  for (const rule of rules ?? []) {
    const shown = `{ ${Object.entries(rule).map(([k, v]) => `${k}: ${String(v)}`).join(', ')} }`
    const wide = rule.user_agent === undefined && rule.method === undefined && (rule.path === undefined || rule.path === '/') && (rule.client === undefined || ANY_CLIENT.has(rule.client))
    if (wide) write('WARNING', `${where}: the rule ${shown} matches every request: no request counts as activity or wakes the app (narrow it with path, user_agent or method)`)
    else if (rule.client !== undefined && rule.user_agent === undefined && rule.path === undefined && rule.method === undefined) {
      write('WARNING', `${where}: the rule ${shown} has only client: every request from ${rule.client} is ignored, real users behind it (an office, a proxy, a CDN) included, and never wakes the app; add path, user_agent or method (README "Ignored traffic")`)
    }
  }
}

function hasClientRule(rules: readonly IgnoreRule[] | undefined): boolean {
  return rules?.some((r) => r.client !== undefined) === true
}

/**
 * `ignore` rules naming `client` read X-Relight-Client, which only snippet version 3 sends (older
 * ones pass the client's own header on, so it is not read): under them such a rule matches nothing.
 */
function clientRuleCheck(setBy: readonly string[], snippet: string | null | undefined, write: (tag: string, message: string) => void): void {
  if (setBy.length === 0) return
  const what = `ignore: client rules (${setBy.join(', ')}) match only requests from snippet version ${SNIPPET_VERSION} (or ${SNIPPET_FAST})`
  if (snippet === SNIPPET_VERSION || snippet === SNIPPET_FAST) write('ok     ', what)
  else if (snippet === undefined || snippet === null) write('ok     ', `${what}; no live snippet seen to compare with`)
  else write('WARNING', `${what}, and Caddy uses version ${snippet}: they match nothing until it is replaced (relight-sidecar snippet > /etc/caddy/relight.caddy, then reload Caddy)`)
}

/** What `check` says about the sidecar that runs with this config: its healthz, read once. */
function liveView(live: Extract<Live, { running: true }>, write: (tag: string, message: string) => void, listen: string, fastLane = false, fastDir?: string): void {
  const { health } = live
  if (health === undefined) {
    write('PROBLEM', `a sidecar runs with this config (pid ${live.pid}) but its healthz does not answer (${live.error})`)
    return
  }
  write('ok     ', `running sidecar: pid ${live.pid}${health.version ? `, version ${health.version}` : ''}${health.uptime_s !== undefined ? `, up ${health.uptime_s} s` : ''}; healthz on ${live.via}: ${health.status}, ${health.backends} backend(s)`)
  for (const [id, p] of Object.entries(health.providers)) {
    write(p.ok ? 'ok     ' : 'PROBLEM', `live ${id}: ${p.ok ? 'up' : `down${p.reason ? ` (${p.reason})` : ''}`}, ${p.backends} backend(s)${p.awake !== undefined ? `, ${p.awake} awake` : ''}`)
  }
  if (health.access_log === 'connected') write('ok     ', "live access_log: Caddy's access log is connected")
  else if (health.access_log === 'unproven') write('ok     ', "live access_log: a connection is open; it proves to be Caddy's with the first request it logs")
  else if (health.access_log === 'disconnected') write('WARNING', 'live access_log: no access-log connection: Caddy is not running, or its site blocks lack  log { output net … }  (in-flight counting is off until it connects)')
  if (health.snippet === SNIPPET_FAST) write('ok     ', `live snippet: Caddy's forward_auth calls come from snippet version ${SNIPPET_FAST} (relight_fast: the fast lane)`)
  if (fastDir !== undefined) {
    // relight_fast's forward_auth names the directory it was given (X-Relight-Fast-Dir); the
    // sidecar records it only from calls through a unix-socket `listen` (proven Caddy).
    const dirs = health.fast_lane_dirs ?? []
    const unproven = health.fast_lane_dirs_unproven ?? 0
    const socket = unixPath(listen)
    const from = `as relight_fast's forward_auth calls through the unix socket listen ${socket ?? listen} said (only the sidecar's user and socket_group can open it)`
    const wrong = dirs.filter((d) => d !== fastDir)
    if (wrong.length > 0) write('PROBLEM', `live relight_fast: Caddy passes ${wrong.join(', ')} as the flag directory, not fast_lane_dir ${fastDir}, ${from}: those sites never take the fast lane (import relight_fast … ${fastDir})`)
    else if (dirs.length > 0) write('ok     ', `live relight_fast: Caddy passes fast_lane_dir ${fastDir} as the flag directory, ${from}`)
    else if (socket === undefined && unproven > 0) write('UNCHECKED', `live relight_fast: ${unproven} relight_fast call(s) named a flag directory over the TCP listen ${listen}, where any local user can send that header, so the sidecar did not record it: the directory Caddy passes cannot be compared with fast_lane_dir ${fastDir} (listen on a unix socket with socket_group to have it checked)`)
    else if (socket === undefined) write('UNCHECKED', `live relight_fast: no relight_fast call seen, and over the TCP listen ${listen} the directory Caddy passes is not recorded (any local user could send it): it cannot be compared with fast_lane_dir ${fastDir} (listen on a unix socket with socket_group to have it checked)`)
    else if (unproven > 0) write('UNCHECKED', `live relight_fast: ${unproven} relight_fast call(s) named a flag directory too long to record (over ${FAST_DIR_MAX_LENGTH} characters), not fast_lane_dir ${fastDir}`)
    else write('UNCHECKED', `live relight_fast: no forward_auth call from relight_fast seen yet (or a relight_fast older than this sidecar's): the directory Caddy passes cannot be compared with fast_lane_dir ${fastDir}`)
  }
  else if (health.snippet === SNIPPET_VERSION && fastLane) write('WARNING', `live snippet: Caddy uses snippet version ${SNIPPET_VERSION}; the fast lane needs version ${SNIPPET_FAST}'s relight_fast (nothing takes the fast lane until it is imported)`)
  else if (health.snippet === SNIPPET_VERSION) write('ok     ', `live snippet: Caddy's forward_auth calls come from snippet version ${SNIPPET_VERSION} (plain import relight: the current snippet file, version ${SNIPPET_FAST}, still reports its relight as ${SNIPPET_VERSION}; only relight_fast reports ${SNIPPET_FAST}), up to date`)
  else if (health.snippet === null) write('ok     ', 'live snippet: no forward_auth call from Caddy seen yet')
  else if (health.snippet !== undefined) write('WARNING', `live snippet: Caddy uses snippet version ${health.snippet}, not ${SNIPPET_VERSION}: in-flight counting is ${health.snippet === '2' ? 'partial' : 'off'} until it is replaced (relight-sidecar snippet > /etc/caddy/relight.caddy, then reload Caddy)`)
}

/** `unix:/run/x.sock` → `unix//run/x.sock` (Caddy's network address form). */
function caddyNetAddress(address: string): string {
  return address.startsWith('unix:') ? `unix/${address.slice('unix:'.length)}` : address
}

async function main(argv: string[]): Promise<void> {
  const [command, ...rest] = argv
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') usage('main')
  if (!Object.hasOwn(HELP, command) || command === 'main') usage('main', `unknown command "${command}"`)
  let values: { config?: string; help?: boolean; 'log-format'?: string; timeout?: string; 'degraded-ok'?: boolean; wait?: boolean }
  try {
    ;({ values } = parseArgs({
      args: rest,
      options: {
        config: { type: 'string', short: 'c' },
        help: { type: 'boolean', short: 'h' },
        'log-format': { type: 'string' },
        timeout: { type: 'string' },
        'degraded-ok': { type: 'boolean' },
        wait: { type: 'boolean' },
      },
      strict: true,
    }))
  } catch (err) {
    usage(command, (err as Error).message)
  }
  if (values.help) usage(command)
  if (command !== 'health' && (values.timeout !== undefined || values['degraded-ok'] !== undefined || values.wait !== undefined)) usage(command, `--timeout, --degraded-ok and --wait are options of health, not of ${command}`)
  if (command === 'snippet') {
    process.stdout.write(readFileSync(SNIPPET_FILE, 'utf8'))
    return
  }
  if (!values.config) usage(command, '--config FILE is required')
  if (command === 'check') return check(values.config)
  if (command === 'reload') {
    const config = readConfig(values.config)
    const outcome = await requestReload(config, dirname(resolve(values.config)))
    ;(outcome.exitCode === 0 ? process.stdout : process.stderr).write(outcome.text)
    process.exitCode = outcome.exitCode
    return
  }
  if (command === 'health') {
    const timeoutMs = parseDuration(values.timeout ?? '5s')
    if (timeoutMs === undefined || timeoutMs <= 0) usage(command, `--timeout: "${values.timeout}" is not a duration like 500ms, 5s or 1m`)
    // health sends no token: it runs as users that cannot read admin.token_file (Caddy's, a probe's)
    const config = readConfig(values.config, undefined, { readTokenFile: false })
    const outcome = await checkHealth(config.listen, { timeoutMs, degradedOk: values['degraded-ok'] === true, wait: values.wait === true })
    ;(outcome.exitCode === 0 ? process.stdout : process.stderr).write(`${outcome.line}\n`)
    process.exitCode = outcome.exitCode
    return
  }
  const format = values['log-format'] ?? (process.stdout.isTTY ? 'pretty' : 'json')
  if (format !== 'json' && format !== 'pretty') usage(command, '--log-format is json or pretty')
  return serve(values.config, format)
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`relight-sidecar: ${(err as Error).stack ?? String(err)}\n`)
  process.exit(1)
})
