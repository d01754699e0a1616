import type { Logger } from 'pino'
import { RelightError, isRelightError } from '../../core/errors.js'
import { mapLimit } from '../../core/map-limit.js'
import type { BackendInfo, BackendSettings, BackendState, BackendStats, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { settingsFrom } from '../../core/settings.js'
import { CpuRate } from '../kit/cpu-rate.js'
import { EngineClient, engineStatus } from '../moby/client.js'
import { containerInfo, stateOf } from '../moby/container-info.js'
import { inspectContainer, listContainers } from '../moby/container-inspect.js'
import { sleepContainer as sleepOne, wakeContainer as wakeOne } from '../moby/container-wake.js'
import { type ContainerApi, type ContainerInspect, containerName, hasHealthcheck, labelsOf } from '../moby/containers.js'
import { checkLabels } from '../moby/check-labels.js'
import { ContainerEvents } from '../moby/container-events.js'
import { followEvents } from '../moby/events.js'
import { assertNotExited, waitHealthy } from '../moby/container-health.js'
import { GroupDependencies } from '../moby/group.js'
import { KeyedLock } from '../moby/keyed-lock.js'
import { type ClaimedElsewhere, claimedByNone, domainLabel, groupOf, isRouted } from '../kit/labels.js'
import type { DockerConfig } from './config.js'
import { dockerFigures, fetchContainerStats } from './container-stats.js'


/** Container actions that can change what the registry knows (issue 3). */
export const WATCHED_ACTIONS = ['create', 'start', 'die', 'pause', 'unpause', 'destroy', 'rename'] as const

const INSPECT_CONCURRENCY = 8

export interface DockerProviderOptions {
  /** Container port when neither a label, the config nor a single exposed port says it (defaults.app_port). */
  readonly appPort?: number
  /** Use this engine client instead of one built from `config.socket` (tests, Podman's compat API). */
  readonly engine?: EngineClient
  /**
   * Containers another provider drives (a Swarm task: Swarm replaces it when it stops, so it is
   * the service's to scale): never listed, woken or put to sleep here. The composition root
   * passes the other kinds' claims; default none.
   */
  readonly claimedElsewhere?: ClaimedElsewhere
}

/** The registry's state of a Docker `State.Status` (see moby/container-info.ts). */
export function backendState(status: string | undefined): BackendState {
  return stateOf({ State: { Status: status ?? '' } })
}

/**
 * Docker containers labelled `<prefix>.domain`, through the Engine API (undici, unix socket or
 * TCP). Discovery: list at start and on every resync (the truth), `/events` in between.
 * Sleep: pause or stop. Groups (`<prefix>.group`, else the compose project) wake and sleep
 * together: the core wakes and sleeps the routed members; this provider starts the group's
 * non-routed containers (databases, workers) before a routed member, and puts them to sleep
 * after the last routed member went to sleep.
 */
export class DockerProvider implements Provider {
  readonly kind: string = 'docker'
  readonly id: string
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = ['stop', 'pause']
  /** The Engine API (Docker variant) the kit's container operations use. */
  readonly api: ContainerApi
  private readonly engine: EngineClient
  private readonly prefix: string
  private readonly configSettings: BackendSettings
  private readonly containerLock = new KeyedLock()
  private readonly groups: GroupDependencies
  private readonly claimedElsewhere: ClaimedElsewhere
  private readonly events: ContainerEvents
  /** Containers we are stopping: their `die` is a sleep, not a crash. */
  private readonly expectedDie = new Set<string>()
  /** auto_sleep_on_start: false — containers running at the first list stay on until they leave running. */
  private readonly pinned = new Set<string>()
  private listedOnce = false
  private readonly warned = new Set<string>()
  private readonly closer = new AbortController()
  private readonly cpu = new CpuRate()
  private closed = false

  constructor(
    private readonly config: DockerConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    private readonly options: DockerProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    this.prefix = config.label_prefix
    this.engine =
      options.engine ??
      new EngineClient({
        address: config.socket,
        name: 'docker',
        // a stop waits up to stop_timeout before the engine answers
        requestTimeout: Math.max(60_000, config.stop_timeout + 30_000),
        ...(config.api_version ? { apiPrefix: `/v${config.api_version}` } : {}),
      })
    this.api = { engine: this.engine, variant: 'docker' }
    this.events = new ContainerEvents({
      api: this.api,
      toInfo: (c) => this.toBackend(c),
      refreshOn: new Set(WATCHED_ACTIONS.filter((a) => a !== 'destroy')),
      removeOn: new Set(['destroy']),
      inspected: (c, info, actions, emit) => this.inspected(c, info, actions, emit),
      removed: (id) => {
        this.pinned.delete(id)
        this.expectedDie.delete(id)
      },
    })
    this.claimedElsewhere = options.claimedElsewhere ?? claimedByNone
    this.groups = new GroupDependencies(
      this.api,
      this.prefix,
      log,
      {
        wake: async (depId, signal) => {
          const started = await this.startContainer(depId, signal)
          // Compose's `depends_on: service_healthy` parity: dependencies with a health check must be healthy.
          if (hasHealthcheck(started) && started.State?.Status === 'running') await waitHealthy(this.api, depId, signal, this.log)
        },
        sleep: (depId, mode, signal) => this.sleepContainer(depId, mode === 'pause' ? 'pause' : 'stop', signal),
      },
      this.claimedElsewhere,
    )
    this.configSettings = settingsFrom(config)
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.assertOpen()
    const summaries = await listContainers(this.api, { label: [domainLabel(this.prefix)] }, signal)
    const inspected = await mapLimit(summaries, INSPECT_CONCURRENCY, (s) =>
      inspectContainer(this.api, s.Id, signal).catch((err: unknown) => {
        if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) return undefined // removed since the list
        throw err
      }),
    )
    const containers = inspected.filter((c): c is ContainerInspect => c !== undefined)
    if (!this.listedOnce) {
      this.listedOnce = true
      if (!this.config.auto_sleep_on_start) {
        for (const c of containers) if (c.State?.Status === 'running') this.pinned.add(c.Id)
        if (this.pinned.size > 0) this.log.info({ containers: this.pinned.size }, 'auto_sleep_on_start is off: containers running now stay on until they stop or pause')
      }
    }
    const present = new Set(containers.map((c) => c.Id))
    for (const id of this.pinned) if (!present.has(id)) this.pinned.delete(id)
    for (const id of this.expectedDie) if (!present.has(id)) this.expectedDie.delete(id)
    const out: BackendInfo[] = []
    for (const c of containers) {
      const info = this.toBackend(c)
      if (info) out.push(info)
    }
    return out
  }

  /** What the registry knows about a container; undefined when it carries no domain label. */
  toBackend(c: ContainerInspect): BackendInfo | undefined {
    // Another provider's container (a Swarm task's: the service's to scale), never ours to stop or pause.
    if (this.claimedElsewhere(labelsOf(c)) !== undefined) return undefined
    const info = containerInfo(c, {
      labelPrefix: this.prefix,
      sleepModes: this.sleepModes,
      ...(this.config.app_port !== undefined ? { blockPort: this.config.app_port } : {}),
      appPort: this.options.appPort ?? 80,
      ...(this.config.network !== undefined ? { network: this.config.network } : {}),
      settings: this.configSettings,
      onProblem: (problem, what) => this.warnOnce(c.Id, problem, { container: containerName(c) }, what),
    })
    if (!info) return undefined
    if (c.State?.Status !== 'running') this.pinned.delete(c.Id)
    return this.pinned.has(c.Id) ? { ...info, settings: { ...info.settings, always_on: true } } : info
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed) return
    const stop = AbortSignal.any([signal, this.closer.signal])
    void followEvents(
      this.engine,
      {
        query: { filters: { type: ['container'], label: [domainLabel(this.prefix)], event: [...WATCHED_ACTIONS] } },
        connected: () => onEvent({ type: 'resync' }),
        onEvent: (event) => this.events.handle(event, onEvent, stop),
        log: this.log,
        engine: 'docker',
      },
      stop,
    )
  }

  /** After a fresh inspect: a `die` this provider did not cause (not a sleep) is a crash, reported as such. */
  private inspected(c: ContainerInspect, info: BackendInfo, actions: ReadonlySet<string>, emit: (event: ProviderEvent) => void): void {
    if (!actions.has('die') || c.State.Status === 'running' || c.State.Status === 'restarting') return
    if (this.expectedDie.delete(c.Id)) return // our own stop
    const code = c.State.ExitCode ?? -1
    this.log.warn({ container: info.name, exit_code: code, ...(c.State.Error ? { error: c.State.Error } : {}) }, 'container exited')
    emit({ type: 'state', id: c.Id, state: 'stopped', reason: `exited with code ${code}` })
  }

  // ── wake ───────────────────────────────────────────────────────────────────────────────────

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    this.assertOpen()
    const c = await this.routed(id, signal)
    const started = await this.groups.wakeWith(groupOf(labelsOf(c), this.prefix), signal, () => this.startContainer(c.Id, signal))
    const running = hasHealthcheck(started) ? await waitHealthy(this.api, c.Id, signal, this.log) : assertNotExited(started, this.kind, this.log)
    // Fresh facts for the core to probe (a bridge IP changes on every start).
    const info = this.toBackend(running)
    if (!info) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${containerName(running)} lost its domain label`, { backend: id, provider: this.kind })
    return info
  }

  /** Start or unpause one container (idempotent); answers its state afterwards. */
  private startContainer(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    return this.containerLock.run(id, async () => {
      const c = await inspectContainer(this.api, id, signal)
      if (stateOf(c) === 'stopped') this.expectedDie.delete(id)
      const from = await wakeOne(this.api, c, signal, this.log)
      if (from === 'running' || from === 'starting') return c
      return inspectContainer(this.api, id, signal)
    })
  }

  // ── sleep ──────────────────────────────────────────────────────────────────────────────────

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    this.assertOpen()
    if (mode !== 'pause' && mode !== 'stop') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `docker containers sleep with pause or stop, not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const c = await this.routed(id, signal)
    await this.sleepContainer(c.Id, mode, signal)
    await this.groups.afterMemberSlept(groupOf(labelsOf(c), this.prefix), mode, signal)
  }

  private sleepContainer(id: string, mode: 'pause' | 'stop', signal: AbortSignal): Promise<void> {
    return this.containerLock.run(id, async () => {
      const c = await inspectContainer(this.api, id, signal)
      const dies = mode === 'stop' && stateOf(c) !== 'stopped'
      if (dies) this.expectedDie.add(id)
      try {
        await sleepOne(this.api, c, mode, Math.ceil(this.config.stop_timeout / 1000), signal)
      } catch (err) {
        if (dies) this.expectedDie.delete(id)
        throw err
      }
    })
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  /** Inspect a container this provider manages (it carries a domain label). */
  private async routed(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    const c = await inspectContainer(this.api, id, signal)
    const labels = labelsOf(c)
    const claimed = this.claimedElsewhere(labels)
    if (!isRouted(labels, this.prefix) || claimed !== undefined) {
      const why = claimed ?? `has no ${domainLabel(this.prefix)} label`
      throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${containerName(c)} ${why}`, { backend: id, provider: this.kind })
    }
    return c
  }

  private warnOnce(id: string, message: string, fields: object, what: string): void {
    const key = `${id}:${message}`
    if (this.warned.has(key)) return
    this.warned.add(key)
    this.log.warn({ ...fields }, `${what}: ${message}`)
  }

  private assertOpen(): void {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the docker provider is closed', { provider: this.kind })
  }

  // ── check and lifecycle ────────────────────────────────────────────────────────────────────

  /** One-shot engine stats for the heartbeat: CPU percent of one core since the previous call, memory in MiB. */
  async stats(id: string, signal: AbortSignal): Promise<BackendStats> {
    return dockerFigures(await fetchContainerStats(this.engine, id, signal), this.cpu, id)
  }

  async check(signal: AbortSignal): Promise<CheckResult[]> {
    const results: CheckResult[] = []
    const where = this.engine.address.display
    try {
      const v = await this.engine.json<{ Version?: string; ApiVersion?: string }>('GET', '/version', { signal })
      results.push({ ok: true, message: `Docker Engine ${v.Version ?? '?'} (API ${v.ApiVersion ?? '?'}) answers at ${where}` })
    } catch (err) {
      const message = isRelightError(err) ? err.message : String(err)
      return [{ ok: false, message: `cannot use the Docker engine: ${message}` }]
    }
    if (this.config.network !== undefined) {
      try {
        await this.engine.request('GET', `/networks/${encodeURIComponent(this.config.network)}`, { signal })
        results.push({ ok: true, message: `network "${this.config.network}" exists` })
      } catch (err) {
        results.push({
          ok: false,
          message: engineStatus(err) === 404 ? `network "${this.config.network}" (providers.docker.network) does not exist` : `cannot read network "${this.config.network}": ${(err as Error).message}`,
        })
      }
    }
    results.push(...(await checkLabels(this.api, this.prefix, this.sleepModes, signal, this.claimedElsewhere)))
    return results
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    if (!this.options.engine) await this.engine.close()
  }
}
