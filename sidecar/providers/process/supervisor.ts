import { type ChildProcess, spawn, type StdioOptions } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import { createInterface } from 'node:readline'
import type { Logger } from 'pino'
import { RelightError } from '../../core/errors.js'
import { Backoff } from './backoff.js'
import { tcpPortHolderAsync } from '../../startup/port-holder.js'
import { portTaken } from './port-holder.js'

export type ReplicaState = 'stopped' | 'starting' | 'running' | 'paused'

export interface ReplicaSpec {
  readonly app: string
  readonly replica: number
  readonly command: string
  readonly args: readonly string[]
  readonly cwd?: string
  readonly env: NodeJS.ProcessEnv
  readonly uid?: number
  readonly gid?: number
  /** `user` was set but does not exist: refuse to start rather than run as the sidecar's user. */
  readonly unknownUser?: string
  readonly restart: 'always' | 'on_failure' | 'never'
  readonly stopSignal: NodeJS.Signals
  readonly gracePeriod: number
  readonly stdout: string
  readonly stderr: string
  /** Where the app listens: checked before every start, so a foreign listener is never routed. */
  readonly listen?: { readonly host: string; readonly port: number }
}

export interface ReplicaEvents {
  /** State changed; `reason` set when the process exited on its own. */
  onState(state: ReplicaState, reason?: string): void
  /** A process was spawned (crash recovery records it). */
  onSpawn?(pid: number): void
  /** The process (and its group) is gone. */
  onGone?(pid: number): void
}

/**
 * Runs one replica of a process app in its own process group and keeps it running according to
 * its restart policy. Signals go to the whole group, so grandchildren never outlive a stop.
 */
export class Supervisor {
  state: ReplicaState = 'stopped'
  private child: ChildProcess | undefined
  private wanted = false
  private startedAt = 0
  private restartTimer: NodeJS.Timeout | undefined
  /** After an exit we did not ask for: no start before this time (Date.now clock). */
  private notBefore = 0
  private spawning: Promise<void> | undefined
  private exited: Promise<void> = Promise.resolve()
  private readonly backoff = new Backoff()

  constructor(
    readonly spec: ReplicaSpec,
    private readonly events: ReplicaEvents,
    private readonly log: Logger,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid
  }

  private set(state: ReplicaState, reason?: string): void {
    if (this.state === state && reason === undefined) return
    this.state = state
    this.events.onState(state, reason)
  }

  /** ms until a crashed process may start again (0: it may start now). */
  backoffRemaining(now = Date.now()): number {
    return Math.max(0, this.notBefore - now)
  }

  /**
   * Start (or resume) the process. Resolves once it is spawned. While a process that exited on
   * its own waits for its next restart, rejects with RELIGHT_ERR_RESTART_BACKOFF (the restart
   * keeps the supervisor's schedule: requests never spawn a crashing app faster).
   */
  async start(): Promise<void> {
    if (this.child) {
      this.wanted = true
      if (this.state === 'paused') this.resume()
      return
    }
    if (this.spawning) return this.spawning
    const wait = this.backoffRemaining()
    if (wait > 0) {
      const seconds = Math.ceil(wait / 1000)
      throw new RelightError('RELIGHT_ERR_RESTART_BACKOFF', `${this.spec.app} keeps exiting; next start in ${seconds} s`, { backend: this.spec.app, retryAfter: seconds })
    }
    this.wanted = true
    this.cancelRestart() // due now: this start is the restart
    await this.spawnGuarded()
  }

  private cancelRestart(): void {
    if (this.restartTimer) clearTimeout(this.restartTimer)
    this.restartTimer = undefined
  }

  /** One spawn at a time (the port check before it is asynchronous). */
  private spawnGuarded(): Promise<void> {
    this.spawning ??= this.checkPort()
      .then(() => {
        if (!this.wanted) throw new RelightError('RELIGHT_ERR_ABORTED', `${this.spec.app} was stopped before it started`, { backend: this.spec.app })
        return this.spawnChild()
      })
      .finally(() => {
        this.spawning = undefined
      })
    return this.spawning
  }

  /** Refuse to start when another program listens on the app's address: it would be routed. */
  private async checkPort(): Promise<void> {
    const listen = this.spec.listen
    if (!listen || !(await portTaken(listen.host, listen.port))) return
    const holder = await tcpPortHolderAsync(listen.port)
    const who = holder ? `pid ${holder.pid}, ${holder.command}` : 'a process the sidecar cannot see'
    const message = `${listen.host}:${listen.port} is held by another program (${who}); not starting ${this.spec.app}`
    this.log.warn({ replica: this.spec.replica, port: listen.port, holder_pid: holder?.pid, holder_command: holder?.command }, message)
    throw new RelightError('RELIGHT_ERR_PORT_IN_USE', message, { backend: this.spec.app, port: listen.port, holderPid: holder?.pid })
  }

  private spawnChild(): Promise<void> {
    const { spec } = this
    if (spec.unknownUser !== undefined) {
      const reason = `user "${spec.unknownUser}" does not exist; not starting ${spec.app} as ${process.getuid?.() === 0 ? 'root' : 'the sidecar user'} instead`
      this.set('stopped', reason)
      return Promise.reject(new RelightError('RELIGHT_ERR_PROVIDER_FAILED', reason, { backend: spec.app }))
    }
    const files: number[] = []
    const stream = (target: string): 'inherit' | 'ignore' | 'pipe' | number => {
      if (target === 'inherit') return 'inherit'
      if (target === 'null') return 'ignore'
      if (target === 'log') return 'pipe'
      const fd = openSync(target.slice('file:'.length), 'a')
      files.push(fd)
      return fd
    }
    let stdio: StdioOptions
    try {
      stdio = ['ignore', stream(spec.stdout), stream(spec.stderr)]
    } catch (err) {
      for (const fd of files) closeSync(fd)
      return Promise.reject(new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `cannot open output file: ${(err as Error).message}`, { backend: spec.app }))
    }
    this.set('starting')
    return new Promise<void>((resolve, reject) => {
      const child = spawn(spec.command, spec.args, {
        cwd: spec.cwd,
        env: spec.env,
        detached: true, // own process group: we signal the group, and Ctrl-C in a terminal is ours to forward
        stdio,
        ...(spec.uid !== undefined ? { uid: spec.uid } : {}),
        ...(spec.gid !== undefined ? { gid: spec.gid } : {}),
      })
      for (const fd of files) closeSync(fd)
      this.child = child
      let resolveExit!: () => void
      this.exited = new Promise<void>((r) => (resolveExit = r))
      if (spec.stdout === 'log' && child.stdout) this.pipeToLog(child.stdout, 'stdout')
      if (spec.stderr === 'log' && child.stderr) this.pipeToLog(child.stderr, 'stderr')
      child.once('spawn', () => {
        this.startedAt = Date.now()
        this.log.info({ pid: child.pid, replica: spec.replica }, 'process started')
        if (child.pid !== undefined) this.events.onSpawn?.(child.pid)
        this.set('running')
        resolve()
      })
      child.once('error', (err) => {
        // spawn failure (ENOENT, EACCES, EPERM for uid): no 'exit' follows
        if (this.child === child) this.child = undefined
        this.wanted = false
        resolveExit()
        this.set('stopped', `cannot start ${spec.command}: ${err.message}`)
        reject(new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `cannot start ${spec.command}: ${err.message}`, { backend: spec.app }, { cause: err }))
      })
      child.once('exit', (code, signal) => {
        this.onExit(child, code, signal)
        resolveExit()
      })
    })
  }

  private pipeToLog(stream: NodeJS.ReadableStream, name: string): void {
    const lines = createInterface({ input: stream, crlfDelay: Infinity })
    lines.on('line', (line) => this.log.info({ stream: name, replica: this.spec.replica }, line))
  }

  private onExit(child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (this.child !== child) return
    this.child = undefined
    killGroup(child.pid, 'SIGKILL') // leftovers of the group (grandchildren) go with their leader
    if (child.pid !== undefined) this.events.onGone?.(child.pid)
    const reason = signal ? `killed by ${signal}` : `exited with code ${code}`
    if (!this.wanted) {
      this.set('stopped')
      return
    }
    // An exit we did not ask for: whatever the policy, the next start (restart or request)
    // waits for the backoff, so a crashing app is not spawned by every request.
    const delay = this.backoff.next(Date.now() - this.startedAt)
    this.notBefore = Date.now() + delay
    const policy = this.spec.restart
    const restart = policy === 'always' || (policy === 'on_failure' && code !== 0)
    if (!restart) {
      this.wanted = false
      this.log.warn({ replica: this.spec.replica, code, signal }, `process ${reason}; restart policy ${policy}: not restarting`)
      this.set('stopped', reason)
      return
    }
    this.log.warn({ replica: this.spec.replica, code, signal, restart_in_ms: delay }, `process ${reason}; restarting`)
    this.set('stopped', reason)
    this.set('starting')
    this.scheduleRestart(delay)
  }

  private scheduleRestart(delay: number): void {
    this.cancelRestart()
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined
      if (!this.wanted || this.child) return
      this.spawnGuarded().catch((err: unknown) => {
        if (!(err instanceof RelightError) || err.code !== 'RELIGHT_ERR_PORT_IN_USE' || !this.wanted) return // reported as a state
        // The port is still taken: try again on the backoff schedule.
        const next = this.backoff.next(0)
        this.notBefore = Date.now() + next
        this.scheduleRestart(next)
      })
    }, delay)
  }

  /** SIGKILL the process group now (synchronous; for an abnormal exit of the sidecar). */
  killNow(): void {
    this.wanted = false
    if (this.restartTimer) clearTimeout(this.restartTimer)
    killGroup(this.child?.pid, 'SIGKILL')
  }

  pause(): void {
    if (!this.child || this.state !== 'running') return
    killGroup(this.child.pid, 'SIGSTOP')
    this.set('paused')
  }

  resume(): void {
    if (!this.child || this.state !== 'paused') return
    killGroup(this.child.pid, 'SIGCONT')
    this.set('running')
  }

  /** stop_signal to the group, grace_period, then SIGKILL. Resolves when the process is gone. */
  async stop(): Promise<void> {
    this.wanted = false
    if (this.restartTimer) {
      clearTimeout(this.restartTimer)
      this.restartTimer = undefined
      this.set('stopped')
    }
    const child = this.child
    if (!child) return
    const exited = this.exited
    killGroup(child.pid, this.spec.stopSignal)
    killGroup(child.pid, 'SIGCONT') // a paused group must run to handle the signal
    let timer: NodeJS.Timeout | undefined
    const graceOver = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.spec.gracePeriod)
    })
    const outcome = await Promise.race([exited.then(() => 'exited' as const), graceOver])
    clearTimeout(timer)
    if (outcome === 'timeout') {
      this.log.warn({ replica: this.spec.replica, grace_ms: this.spec.gracePeriod }, 'process ignored stop signal; killing')
      killGroup(child.pid, 'SIGKILL')
      await exited
    }
  }
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return
  try {
    process.kill(-pid, signal)
  } catch {
    // ESRCH: the group is already gone
  }
}
