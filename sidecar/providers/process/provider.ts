import { accessSync, constants as fsConstants, readFileSync, statSync } from 'node:fs'
import { delimiter, isAbsolute, join, resolve as resolvePath } from 'node:path'
import type { Logger } from 'pino'
import { isRelightError, RelightError, throwIfAborted } from '../../core/errors.js'
import type { BackendInfo, BackendState, BackendStats, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { CpuRate, round1 } from '../kit/cpu-rate.js'
import type { ProcessAppConfig, ProcessConfig } from './config.js'
import { backendSettingsShape } from '../../config/types.js'
import { groupUsage } from './stats.js'
import { ChildRecords, configHash, groupMembersAsync, recordsDir } from './child-records.js'
import { splitHostPort } from '../../core/readiness.js'
import { listenersForAsync, socketInodes } from '../../core/socket-owner.js'
import { tcpPortHolderAsync } from '../../startup/port-holder.js'
import { settingsFrom } from '../../core/settings.js'
import { type ReplicaState, Supervisor } from './supervisor.js'

/** `{{replica}}`, `{{port}}`, `{{name}}` in command, args, dir and env values. */
export function applyTemplate(text: string, vars: { replica: number; port?: number; name: string }): string {
  return text.replace(/\{\{\s*(replica|port|name)\s*\}\}/g, (_m, key: string) => {
    if (key === 'replica') return String(vars.replica)
    if (key === 'name') return vars.name
    return vars.port === undefined ? '' : String(vars.port)
  })
}

/** `file:relative/path` resolves against the config file's directory, like `dir`. */
function outputTarget(target: string, baseDir: string): string {
  return target.startsWith('file:') ? `file:${resolvePath(baseDir, target.slice('file:'.length))}` : target
}

export interface UserIds {
  uid: number
  gid: number
}

/** Look a user up in /etc/passwd (name or numeric uid). */
export function lookupUser(user: string, passwd = '/etc/passwd'): UserIds | undefined {
  let text: string
  try {
    text = readFileSync(passwd, 'utf8')
  } catch {
    return undefined
  }
  for (const line of text.split('\n')) {
    const [name, , uid, gid] = line.split(':')
    if (name === user || (uid === user && /^\d+$/.test(user))) return { uid: Number(uid), gid: Number(gid) }
  }
  return undefined
}

function findExecutable(command: string, cwd: string, env: NodeJS.ProcessEnv): string | undefined {
  const candidates = command.includes('/')
    ? [isAbsolute(command) ? command : resolvePath(cwd, command)]
    : (env.PATH ?? '').split(delimiter).map((dir) => join(dir, command))
  for (const file of candidates) {
    try {
      accessSync(file, fsConstants.X_OK)
      if (statSync(file).isFile()) return file
    } catch {
      // next
    }
  }
  return undefined
}

/**
 * App keys only the core reads (routing and sleep settings): a reload that changes nothing else
 * applies them to the running process. Any other key needs a new process.
 */
const LIVE_KEYS: ReadonlySet<string> = new Set(['name', 'hosts', 'always_on', ...Object.keys(backendSettingsShape)])

function processKeys(config: ProcessAppConfig): string {
  return JSON.stringify(Object.entries(config).filter(([k]) => !LIVE_KEYS.has(k)))
}

/** What a reload did to the process apps. */
export interface ProcessChanges {
  readonly added: string[]
  readonly removed: string[]
  /** Only hosts or settings changed: applied to the running process. */
  readonly updated: string[]
  /** The process itself changed: replaced at once when asleep, else at its next sleep. */
  readonly replaced: string[]
}

class App {
  readonly replicas: Supervisor[]
  /** A reload changed the process: these apply when the current one next stops. */
  pending: ProcessAppConfig | undefined
  constructor(
    public config: ProcessAppConfig,
    readonly upstreams: readonly string[],
    replicas: Supervisor[],
  ) {
    this.replicas = replicas
  }

  state(): BackendState {
    const states = this.replicas.map((r) => r.state)
    if (states.includes('running')) return 'running'
    if (states.length > 0 && states.every((s) => s === 'paused')) return 'paused'
    if (states.includes('starting')) return 'starting'
    return 'stopped'
  }

  /** Addresses of live replicas while any is live (so a crashed one gets no traffic), else all. */
  liveUpstreams(): readonly string[] {
    const live = this.upstreams.filter((_u, i) => this.replicas[i]?.state === 'running')
    return live.length > 0 ? live : this.upstreams
  }
}

export interface ProcessProviderOptions {
  readonly baseDir?: string
  readonly env?: NodeJS.ProcessEnv
  /**
   * Record started children under `<stateDir>/process` and, before the first start, end what a
   * sidecar that died left running (see child-records.ts). Off when unset.
   */
  readonly stateDir?: string
}

/**
 * Local processes from the config (caddy-supervisor parity), one backend per app, one process
 * group per replica. Sleep modes: stop (signal, grace period, kill) and pause (SIGSTOP/SIGCONT).
 */
export class ProcessProvider implements Provider {
  readonly kind = 'process'
  readonly id: string
  /** Its own resync_interval (a reload may change it). */
  resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = ['stop', 'pause']
  private readonly apps = new Map<string, App>()
  private listener: ((event: ProviderEvent) => void) | undefined
  private closed = false
  private readonly cpu = new CpuRate()
  /** The replica pids behind each app's CPU series: a restart starts a new series. */
  private readonly cpuSeries = new Map<string, string>()
  /** The /proc scan under way for each CPU series: callers meanwhile share it (stats()). */
  private readonly statsInFlight = new Map<string, Promise<BackendStats>>()
  private readonly baseDir: string
  private readonly env: NodeJS.ProcessEnv
  private readonly records: ChildRecords | undefined
  private recovery: Promise<void> | undefined
  /** Per app: wake, sleep and reload replacements run one after another. */
  private readonly chains = new Map<string, Promise<unknown>>()
  /** Apps a reload removed, while they stop. */
  private readonly retiring = new Set<App>()

  constructor(
    config: ProcessConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    options: ProcessProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    this.baseDir = options.baseDir ?? process.cwd()
    this.env = options.env ?? process.env
    this.records = options.stateDir === undefined ? undefined : new ChildRecords(recordsDir(options.stateDir), log.child({ component: 'recovery' }))
    for (const app of config.apps) this.apps.set(app.name, this.makeApp(app))
  }

  private makeApp(config: ProcessAppConfig): App {
    const log = this.log.child({ app: config.name })
    const ids = config.user === undefined ? undefined : lookupUser(config.user)
    const upstreams: string[] = []
    const replicas: Supervisor[] = []
    for (let replica = 0; replica < config.replicas; replica++) {
      const port = config.port === undefined ? undefined : config.port + replica
      const vars = { replica, port, name: config.name }
      if (port !== undefined) upstreams.push(`${config.host.includes(':') ? `[${config.host}]` : config.host}:${port}`)
      const env: NodeJS.ProcessEnv = { ...this.env }
      for (const [k, v] of Object.entries(config.env)) env[k] = applyTemplate(v, vars)
      const [command, ...commandArgs] = config.command.map((part) => applyTemplate(part, vars))
      const cwd = config.dir === undefined ? this.baseDir : resolvePath(this.baseDir, applyTemplate(config.dir, vars))
      replicas.push(
        new Supervisor(
          {
            app: config.name,
            replica,
            command: command as string,
            args: [...commandArgs, ...config.args.map((a) => applyTemplate(a, vars))],
            cwd,
            env,
            ...(ids ? { uid: ids.uid, gid: ids.gid } : {}),
            ...(config.user !== undefined && !ids ? { unknownUser: config.user } : {}),
            restart: config.restart,
            stopSignal: config.stop_signal as NodeJS.Signals,
            gracePeriod: config.grace_period,
            stdout: outputTarget(config.stdout, this.baseDir),
            stderr: outputTarget(config.stderr, this.baseDir),
            ...(port !== undefined ? { listen: { host: config.host, port } } : {}),
          },
          {
            onState: (state, reason) => this.replicaChanged(config.name, state, reason),
            onSpawn: (pid) =>
              this.records?.save({
                app: config.name,
                replica,
                pid,
                ...(port !== undefined ? { host: config.host, port } : {}),
                config_hash: configHash(config),
                stop_signal: config.stop_signal,
                grace_ms: config.grace_period,
              }),
            onGone: (pid) => this.records?.remove(pid),
          },
          log,
        ),
      )
    }
    return new App(config, upstreams, replicas)
  }

  private replicaChanged(name: string, _state: ReplicaState, reason?: string): void {
    const app = this.apps.get(name)
    if (!app || !this.listener) return
    this.listener({ type: 'state', id: name, state: app.state(), ...(reason ? { reason } : {}) })
    if (app.replicas.length > 1) this.listener({ type: 'upsert', backend: this.info(app) })
  }

  private info(app: App): BackendInfo {
    const c = app.pending ?? app.config
    return {
      id: c.name,
      name: c.name,
      hosts: c.hosts,
      state: app.state(),
      upstreams: app.liveUpstreams(),
      settings: { ...settingsFrom(c), always_on: c.always_on },
      details: { replicas: c.replicas, pids: app.replicas.map((r) => r.pid ?? '-').join(',') },
    }
  }

  private app(id: string): App {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'process provider is closed')
    const app = this.apps.get(id)
    if (!app) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no process app named ${id}`, { backend: id, provider: this.kind })
    return app
  }

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    throwIfAborted(signal)
    return [...this.apps.values()].map((app) => this.info(app))
  }

  /**
   * Before the first start: end what a sidecar that died left running (it would hold the ports).
   * Runs when the registry starts watching (serve), never for `check`.
   */
  private recovered(): Promise<void> {
    this.recovery ??= (this.records?.endLeftovers() ?? Promise.resolve(0)).then(
      () => undefined,
      (err: unknown) => this.log.error({ err }, 'crash recovery failed'),
    )
    return this.recovery
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    void this.recovered()
    this.listener = onEvent
    signal.addEventListener('abort', () => {
      if (this.listener === onEvent) this.listener = undefined
    })
  }

  /** Run `op` after every earlier wake, sleep or replacement of app `name`. */
  private serial<T>(name: string, op: () => Promise<T>): Promise<T> {
    const next = (this.chains.get(name) ?? Promise.resolve()).then(op, op)
    const tail = next.then(
      () => undefined,
      () => undefined,
    )
    this.chains.set(name, tail)
    void tail.then(() => {
      if (this.chains.get(name) === tail) this.chains.delete(name)
    })
    return next
  }

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    throwIfAborted(signal)
    this.app(id)
    return this.serial(id, () => this.wakeNow(id))
  }

  private async wakeNow(id: string): Promise<BackendInfo> {
    await this.recovered()
    let app = this.app(id)
    if (app.pending && app.state() !== 'running') app = (await this.replace(id)) ?? this.app(id)
    // The provider may have closed while this wake waited (recovery, a replacement's stop).
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'process provider is closed')
    // Starting a replica resumes it if it is paused; one waiting for its restart backoff refuses.
    const results = await Promise.allSettled(app.replicas.map((r) => r.start()))
    const errors = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []))
    // A replica port held by another program fails the wake: its probe would reach that program.
    const foreign = errors.find((e) => isRelightError(e, 'RELIGHT_ERR_PORT_IN_USE'))
    if (foreign) throw foreign
    if (errors.length < results.length) return { ...this.info(app), state: 'running' }
    const backoffs = errors.filter((e): e is RelightError => isRelightError(e, 'RELIGHT_ERR_RESTART_BACKOFF'))
    if (backoffs.length === errors.length) {
      throw backoffs.reduce((a, b) => ((a.context.retryAfter ?? 0) <= (b.context.retryAfter ?? 0) ? a : b))
    }
    throw errors.find((e) => !isRelightError(e, 'RELIGHT_ERR_RESTART_BACKOFF'))
  }

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    throwIfAborted(signal)
    this.app(id)
    return this.serial(id, () => this.sleepNow(id, mode))
  }

  private async sleepNow(id: string, mode: SleepMode): Promise<void> {
    const app = this.app(id)
    if (app.pending) {
      // A reload changed the process: this sleep stops the old one, the next wake starts the new.
      await this.replace(id)
      return
    }
    if (mode === 'pause') {
      for (const r of app.replicas) r.pause()
      return
    }
    if (mode === 'stop') {
      await Promise.all(app.replicas.map((r) => r.stop()))
      return
    }
    throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `process apps sleep with stop or pause, not ${mode}`, { backend: id })
  }

  /**
   * CPU and resident memory of the app's replicas, process groups included (/proc/<pid>/stat
   * and statm). CPU is the percent of one core since the previous call (the first call: since
   * the replicas started).
   */
  async stats(id: string, signal: AbortSignal): Promise<BackendStats> {
    throwIfAborted(signal)
    const app = this.app(id)
    const leaders = app.replicas.map((r) => r.pid).filter((pid): pid is number => pid !== undefined)
    const series = `${id}:${leaders.join(',')}`
    const previous = this.cpuSeries.get(id)
    if (previous !== series) {
      if (previous !== undefined) this.cpu.forget(previous)
      this.cpuSeries.set(id, series)
    }
    if (leaders.length === 0) return { cpu_pct: 0, mem_mb: 0 }
    // Heartbeat, busy_cpu and its first reading may ask at once: overlapping scans finish in any
    // order, and a later-started one sampled first made CPU seem to go backwards. One scan per
    // series at a time, shared; its time is taken when it starts, as its CPU counters are read.
    const inFlight = this.statsInFlight.get(series)
    if (inFlight !== undefined) return inFlight
    const scan = (async () => {
      const startedNs = Number(process.hrtime.bigint())
      const usage = await groupUsage(leaders)
      const rate = this.cpu.sample(series, usage.cpuNs, startedNs) ?? usage.avgCpuPct
      return { cpu_pct: round1(rate), mem_mb: round1(usage.rssBytes / 1024 / 1024) }
    })().finally(() => this.statsInFlight.delete(series))
    this.statsInFlight.set(series, scan)
    return scan
  }

  /**
   * The listener on `upstream` belongs to the replica's process group: every listening socket
   * that accepts connections to that address is held by a member of the group (/proc, see
   * core/socket-owner.ts). A program that bound the port between the spawn and the app's own
   * listen (the start-time port check cannot see it) gets 503 RELIGHT_ERR_PORT_IN_USE, named in
   * the log, and no traffic.
   */
  async ownsListener(id: string, upstream: string, signal?: AbortSignal): Promise<boolean> {
    const app = this.app(id)
    const index = app.upstreams.indexOf(upstream)
    const pid = app.replicas[index]?.pid
    if (pid === undefined) return false // not started yet
    // The /proc reads below take up to a second under load. Meanwhile the replica may crash and
    // its restart (first backoff 0 s) take the port: that is the app, not "another program".
    const replaced = () => app.replicas[index]?.pid !== pid
    const { host, port } = splitHostPort(upstream)
    const listeners = await listenersForAsync(host, port)
    if (listeners.length === 0) return false // the probe's listener has gone: probe again
    const ours = new Set<string>()
    // the group's members: an asynchronous /proc scan (a wake must not hold the event loop)
    for (const member of await groupMembersAsync(pid)) for (const inode of socketInodes(member)) ours.add(inode)
    if (listeners.every((l) => ours.has(l.inode))) return true
    if (replaced()) return false // probe again, with the new process
    const holder = await tcpPortHolderAsync(port)
    // probe again: the replica was restarted meanwhile, or the holder is its new process group
    if (replaced() || (holder?.pgid !== undefined && holder.pgid === app.replicas[index]?.pid)) return false
    if (signal?.aborted === true) return false // the wake is no longer wanted: no warning (waitReady throws the abort)
    const who = holder ? `pid ${holder.pid}, ${holder.command}` : 'a process the sidecar cannot see'
    const message = `${upstream} is answered by another program (${who}), not by ${id} (pid ${pid}); nothing is routed there`
    this.log.warn({ app: id, replica: index, port, pid, holder_pid: holder?.pid, holder_command: holder?.command }, message)
    throw new RelightError('RELIGHT_ERR_PORT_IN_USE', message, { backend: id, port, ...(holder ? { holderPid: holder.pid } : {}) })
  }

  async check(): Promise<CheckResult[]> {
    const results: CheckResult[] = []
    const root = process.getuid?.() === 0
    for (const app of this.apps.values()) {
      const c = app.config
      const first = app.replicas[0]?.spec
      if (!first) continue
      const cwd = first.cwd ?? this.baseDir
      let dirOk = true
      try {
        dirOk = statSync(cwd).isDirectory()
      } catch {
        dirOk = false
      }
      results.push(dirOk ? { ok: true, message: `${c.name}: working directory ${cwd} exists` } : { ok: false, message: `${c.name}: working directory ${cwd} does not exist (providers.process.apps: dir)` })
      const exe = findExecutable(first.command, cwd, first.env)
      results.push(exe ? { ok: true, message: `${c.name}: runs ${exe}` } : { ok: false, message: `${c.name}: command "${first.command}" not found or not executable (PATH=${first.env.PATH ?? ''})` })
      if (c.user !== undefined) {
        if (!lookupUser(c.user)) results.push({ ok: false, message: `${c.name}: user "${c.user}" does not exist in /etc/passwd` })
        else if (!root) results.push({ ok: false, message: `${c.name}: user "${c.user}" is set but the sidecar is not root, so it cannot switch users` })
        else results.push({ ok: true, message: `${c.name}: runs as ${c.user}` })
      }
      // Ports: sidecar/startup/preflight.ts checks them for check and serve alike.
    }
    if (this.apps.size === 0) results.push({ ok: true, message: 'no process apps configured' })
    return results
  }

  /**
   * A reload: apply the new app list. Added apps are listed at once; removed ones stop
   * (stop_signal, grace_period) and disappear from the list; a change of hosts or settings only
   * applies to the running process; any other change replaces the process — at once when the
   * app is asleep or always_on, else at its next sleep (the old process serves until then).
   * The caller lists the provider again afterwards.
   */
  applyConfig(next: ProcessConfig & { readonly resync_interval?: number }): ProcessChanges {
    const changes: ProcessChanges = { added: [], removed: [], updated: [], replaced: [] }
    this.resyncInterval = next.resync_interval
    const wanted = new Map(next.apps.map((a) => [a.name, a]))
    for (const [name, app] of this.apps) {
      if (wanted.has(name)) continue
      this.apps.delete(name)
      changes.removed.push(name)
      this.retiring.add(app)
      void this.serial(name, () => Promise.all(app.replicas.map((r) => r.stop()))).finally(() => {
        this.retiring.delete(app)
        this.log.info({ app: name }, 'removed app stopped')
      })
    }
    for (const config of next.apps) {
      const app = this.apps.get(config.name)
      if (!app) {
        this.apps.set(config.name, this.makeApp(config))
        changes.added.push(config.name)
        continue
      }
      if (JSON.stringify(app.pending ?? app.config) === JSON.stringify(config)) continue
      if (processKeys(app.config) === processKeys(config)) {
        app.config = config
        app.pending = undefined
        changes.updated.push(config.name)
        continue
      }
      app.pending = config
      changes.replaced.push(config.name)
      if (config.always_on || app.state() !== 'running') {
        void this.serial(config.name, () => this.replace(config.name, config.always_on)).catch((err: unknown) =>
          this.log.warn({ app: config.name, err: (err as Error).message }, 'could not start the reconfigured app'),
        )
      }
    }
    return changes
  }

  /** Stop the app's process (if any) and put one made from its pending config in its place. */
  private async replace(name: string, start = false): Promise<App | undefined> {
    const app = this.app(name)
    if (!app.pending) return app
    await Promise.all(app.replicas.map((r) => r.stop()))
    // While the old process stopped, a reload may have removed the app or close() may have run:
    // a process started now would be in neither `apps` nor `retiring` and nothing would stop it.
    if (this.closed || this.apps.get(name) !== app) return undefined
    const fresh = this.makeApp(app.pending)
    if (this.apps.get(name) === app) this.apps.set(name, fresh)
    this.log.info({ app: name }, 'app replaced with its new configuration')
    this.listener?.({ type: 'upsert', backend: this.info(fresh) })
    if (start) await Promise.all(fresh.replicas.map((r) => r.start()))
    return fresh
  }

  terminateNow(): void {
    this.closed = true
    for (const app of [...this.apps.values(), ...this.retiring]) for (const r of app.replicas) r.killNow()
  }

  /** Stop every child gracefully (stop_signal, grace_period, SIGKILL). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    await Promise.all([...this.apps.values(), ...this.retiring].flatMap((app) => app.replicas.map((r) => r.stop())))
  }
}
