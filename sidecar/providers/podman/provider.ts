import { execFile } from 'node:child_process'
import type { Logger } from 'pino'
import type { Dispatcher } from 'undici'
import { RelightError, isRelightError, toRelightError, throwIfAborted } from '../../core/errors.js'
import { mapLimit } from '../../core/map-limit.js'
import type { BackendInfo, BackendStats, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { settingsFrom } from '../../core/settings.js'
import { CpuRate, round1 } from '../kit/cpu-rate.js'
import type { EngineClient } from '../moby/client.js'
import { containerInfo, stateOf } from '../moby/container-info.js'
import { inspectContainer, listContainers } from '../moby/container-inspect.js'
import { sleepContainer as sleepOne, wakeContainer as wakeOne } from '../moby/container-wake.js'
import { type ContainerApi, type ContainerInspect, containerName, labelsOf } from '../moby/containers.js'
import { checkLabels } from '../moby/check-labels.js'
import { ContainerEvents } from '../moby/container-events.js'
import { followEvents, type MobyEvent } from '../moby/events.js'
import { GroupDependencies } from '../moby/group.js'
import { type ClaimedElsewhere, groupOf } from '../kit/labels.js'
import type { PodmanConfig } from './config.js'
import { PODMAN_SLEEP_MODES } from './descriptor.js'
import { containerStats, info as engineInfo, libpodClient, version } from './libpod.js'

/** Modes a `<prefix>.sleep` label may name on Podman. */

/** Container events after which the provider inspects the container again. */
const REFRESH_ON = new Set(['create', 'start', 'restore', 'pause', 'unpause', 'died', 'stop', 'checkpoint', 'rename', 'cleanup', 'init'])
const REMOVE_ON = new Set(['remove'])
const INSPECT_CONCURRENCY = 8

export interface CriuProbe {
  readonly ok: boolean
  readonly detail: string
}

export interface PodmanProviderOptions {
  /** Values from `defaults` the provider needs: the port when a container has no port label, and the sleep modes in force. */
  readonly defaults: { readonly app_port: number; readonly sleep: SleepMode; readonly fallback_sleep: SleepMode }
  /** Replace the socket agent (tests: undici MockAgent). */
  readonly dispatcher?: Dispatcher
  /** How `check` learns whether CRIU works on this host; default runs `criu check`. */
  readonly probeCriu?: (signal: AbortSignal) => Promise<CriuProbe>
  /** Containers another provider drives (a Swarm task): never a group member, not listed by `check`. Default none. */
  readonly claimedElsewhere?: ClaimedElsewhere
}

/** `criu check` on this host (the Podman socket is local, so this is the host Podman runs on). */
export function probeCriu(signal: AbortSignal): Promise<CriuProbe> {
  return new Promise((resolve) => {
    execFile('criu', ['check'], { signal, timeout: 15_000 }, (err, stdout, stderr) => {
      if (!err) return resolve({ ok: true, detail: 'criu check passed' })
      const code = (err as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return resolve({ ok: false, detail: 'criu is not installed' })
      const first = `${stderr}\n${stdout}`
        .split('\n')
        .map((l) => l.trim())
        .find((l) => l !== '')
      resolve({ ok: false, detail: `criu check failed${first ? `: ${first}` : ''}` })
    })
  })
}



/**
 * Podman containers found by label (caddy-relight-podman compatible), over the libpod API on
 * Podman's unix socket. Sleep modes: checkpoint (CRIU, keep + tcpEstablished), pause, stop.
 * A checkpointed container looks exited; `State.Checkpointed` tells it apart and it is
 * restored rather than started.
 */
export class PodmanProvider implements Provider {
  readonly kind = 'podman'
  readonly id: string
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = PODMAN_SLEEP_MODES

  private readonly engine: EngineClient
  private readonly api: ContainerApi
  private readonly groups: GroupDependencies
  private readonly events: ContainerEvents
  private readonly cpu = new CpuRate()
  private readonly warned = new Set<string>()
  private readonly closer = new AbortController()
  private lastCheckpointFailure: { at: number; backend: string; message: string } | undefined
  private closed = false

  constructor(
    private readonly config: PodmanConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    private readonly options: PodmanProviderOptions,
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    // a stop waits up to stop_timeout, a checkpoint as long as CRIU needs, before the engine answers
    this.engine = libpodClient(config.socket, options.dispatcher, Math.max(120_000, (config.stop_timeout ?? 0) + 30_000))
    this.api = { engine: this.engine, variant: 'libpod' }
    // Group dependencies (`<prefix>.group`, else the compose project), as on Docker.
    this.events = new ContainerEvents({ api: this.api, toInfo: (c) => this.toInfo(c), refreshOn: REFRESH_ON, removeOn: REMOVE_ON })
    this.groups = new GroupDependencies(
      this.api,
      config.label_prefix,
      log,
      {
        wake: async (depId, signal) => {
          await wakeOne(this.api, await inspectContainer(this.api, depId, signal), signal, this.log)
        },
        sleep: (depId, mode, signal) => this.sleepContainer(depId, mode, containerName({ Id: depId, State: {} }), signal),
      },
      options.claimedElsewhere,
    )
  }

  private get labelPrefix(): string {
    return this.config.label_prefix
  }

  private toInfo(inspect: ContainerInspect): BackendInfo | undefined {
    const c = this.config
    return containerInfo(inspect, {
      labelPrefix: c.label_prefix,
      sleepModes: PODMAN_SLEEP_MODES,
      ...(c.app_port !== undefined ? { blockPort: c.app_port } : {}),
      appPort: this.options.defaults.app_port,
      ...(c.network !== undefined ? { network: c.network } : {}),
      settings: settingsFrom(c),
      onProblem: (problem) => {
        const key = `${inspect.Id}:${problem}`
        if (this.warned.has(key)) return
        this.warned.add(key)
        this.log.warn({ container: (inspect.Name ?? inspect.Id).replace(/^\//, '') }, problem)
      },
    })
  }

  private notFound(id: string): RelightError {
    return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no Podman container ${id} with a ${this.labelPrefix}.domain label`, { backend: id, provider: this.kind })
  }

  private ensureOpen(): void {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'podman provider is closed', { provider: this.kind })
  }

  /** Inspect a container this provider manages; anything else is "not found". */
  private async inspectOwned(id: string, signal: AbortSignal): Promise<{ inspect: ContainerInspect; info: BackendInfo }> {
    this.ensureOpen()
    let inspect: ContainerInspect
    try {
      inspect = await inspectContainer(this.api, id, signal)
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) throw this.notFound(id)
      throw err
    }
    const info = this.toInfo(inspect)
    if (!info) throw this.notFound(id)
    return { inspect, info }
  }

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.ensureOpen()
    throwIfAborted(signal)
    const entries = await listContainers(this.api, { label: [`${this.labelPrefix}.domain`] }, signal)
    const infos = await mapLimit(entries, INSPECT_CONCURRENCY, async (entry) => {
      try {
        return this.toInfo(await inspectContainer(this.api, entry.Id, signal))
      } catch (err) {
        if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) return undefined // removed meanwhile
        throw err
      }
    })
    return infos.filter((i): i is BackendInfo => i !== undefined)
  }

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    const { inspect, info } = await this.inspectOwned(id, signal)
    if (stateOf(inspect) === 'running') return info
    const group = groupOf(labelsOf(inspect), this.labelPrefix)
    const state = await this.groups.wakeWith(group, signal, () => wakeOne(this.api, inspect, signal, this.log))
    const after = await this.inspectOwned(id, signal)
    if (after.info.state !== 'running') {
      const exit = after.inspect.State?.ExitCode
      throw new RelightError(
        'RELIGHT_ERR_BACKEND_EXITED',
        `container ${info.name} is ${after.inspect.State?.Status ?? 'not running'} after ${state === 'checkpointed' ? 'restore' : 'start'}${exit ? ` (exit code ${exit})` : ''}`,
        { backend: info.name, provider: this.kind, ...(exit ? { exitCode: exit } : {}) },
      )
    }
    // The fresh facts for the core to probe: a bridge container's IP is known only once it runs.
    return after.info
  }

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    if (!this.sleepModes.includes(mode)) {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `Podman containers sleep with checkpoint, pause or stop, not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const { inspect, info } = await this.inspectOwned(id, signal)
    await this.sleepContainer(id, mode, info.name, signal, inspect)
    await this.groups.afterMemberSlept(groupOf(labelsOf(inspect), this.labelPrefix), mode, signal)
  }

  private async sleepContainer(id: string, mode: SleepMode, name: string, signal: AbortSignal, known?: ContainerInspect): Promise<void> {
    const c = known ?? (await inspectContainer(this.api, id, signal))
    const timeout = this.config.stop_timeout === undefined ? undefined : Math.ceil(this.config.stop_timeout / 1000)
    try {
      await sleepOne(this.api, c, mode, timeout, signal)
    } catch (err) {
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { backend: id, provider: this.kind })
      if (mode === 'checkpoint' && error.code === 'RELIGHT_ERR_PROVIDER_FAILED') this.lastCheckpointFailure = { at: Date.now(), backend: name, message: error.message }
      throw error
    }
  }

  /**
   * One-shot libpod stats. CPU is the percent of one core since the previous call for this
   * container (the first call: averaged since the container started); memory in MiB.
   */
  async stats(id: string, signal: AbortSignal): Promise<BackendStats> {
    this.ensureOpen()
    let s
    try {
      s = await containerStats(this.engine, id, signal)
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) throw this.notFound(id)
      throw err
    }
    if (!s || !s.SystemNano) {
      this.cpu.forget(id)
      return { cpu_pct: 0, mem_mb: 0 }
    }
    const rate = this.cpu.sample(id, s.CPUNano ?? 0, s.SystemNano) ?? s.CPU ?? 0
    return { cpu_pct: round1(rate), mem_mb: round1((s.MemUsage ?? 0) / 1024 / 1024) }
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    const stop = AbortSignal.any([signal, this.closer.signal])
    // Once the stream is up, list again: events before it (or while it was down) are lost.
    void followEvents(
      this.engine,
      {
        query: { stream: true, filters: { type: ['container'] } },
        connected: () => onEvent({ type: 'resync' }),
        onEvent: (e) => this.onEngineEvent(e, onEvent, stop),
        log: this.log,
        engine: 'podman',
      },
      stop,
    )
  }

  private onEngineEvent(e: MobyEvent, onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    // libpod's stream cannot filter by label: ours carry the domain label in the event's attributes.
    if ((e.Type ?? 'container') !== 'container') return
    if (e.Actor?.Attributes?.[`${this.labelPrefix}.domain`] === undefined) return
    this.events.handle(e, onEvent, signal)
  }

  async check(signal: AbortSignal): Promise<CheckResult[]> {
    const results: CheckResult[] = []
    const socket = this.config.socket
    try {
      const v = await version(this.engine, signal)
      const i = await engineInfo(this.engine, signal).catch(() => undefined)
      const runtime = i?.host?.ociRuntime?.name
      results.push({ ok: true, message: `Podman ${v.Version ?? '?'} answers at ${socket}${runtime ? ` (OCI runtime ${runtime})` : ''}` })
    } catch (err) {
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
      results.push({
        ok: false,
        message: `cannot reach Podman at ${socket}: ${error.message.replace(/[.?!]$/, '')}; start it with \`systemctl start podman.socket\` or \`podman system service --time 0 unix://${socket}\``,
      })
      return results
    }
    results.push(...(await checkLabels(this.api, this.labelPrefix, PODMAN_SLEEP_MODES, signal, this.options.claimedElsewhere)))
    const uses = await this.checkpointUsers(signal)
    const probe = await (this.options.probeCriu ?? probeCriu)(signal)
    const fallback = this.config.fallback_sleep ?? this.options.defaults.fallback_sleep
    if (probe.ok) results.push({ ok: true, message: `checkpointing works on this host (${probe.detail})` })
    else if (uses.length > 0) {
      results.push({
        ok: false,
        message: `checkpointing does not work on this host (${probe.detail}); ${uses.join(', ')} sleep with checkpoint and will fall back to ${fallback} each time. Use sleep: pause or stop, or install a CRIU that supports this kernel`,
      })
    } else results.push({ ok: true, message: `checkpointing does not work on this host (${probe.detail}); no backend sleeps with checkpoint` })
    if (this.lastCheckpointFailure) {
      const f = this.lastCheckpointFailure
      results.push({ ok: false, message: `the last checkpoint (${f.backend}, ${new Date(f.at).toISOString()}) failed: ${f.message}` })
    }
    return results
  }

  /** Names of backends whose sleep mode is checkpoint (label, provider block or defaults). */
  private async checkpointUsers(signal: AbortSignal): Promise<string[]> {
    const backends = await this.list(signal).catch(() => [])
    const base = this.config.sleep ?? this.options.defaults.sleep
    return backends.filter((b) => (b.settings.sleep ?? base) === 'checkpoint').map((b) => b.name)
  }

  /** Stop following events and release the socket. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort(new RelightError('RELIGHT_ERR_CLOSED', 'podman provider is closed'))
    await this.engine.close()
  }
}
