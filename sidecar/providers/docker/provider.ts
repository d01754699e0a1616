import { mapLimit } from '../../core/map-limit.js'
import { settingsFrom } from '../../core/settings.js'
import type { Logger } from 'pino'
import { RelightError, isRelightError, toRelightError } from '../../core/errors.js'
import type { BackendInfo, BackendSettings, BackendState, BackendStats, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { CpuRate } from '../cpu-rate.js'
import { EngineClient, engineStatus } from '../moby/client.js'
import type { DockerConfig } from './config.js'
import { dockerFigures, fetchContainerStats } from './container-stats.js'
import {
  type ContainerInspect,
  type ContainerStatus,
  type ContainerSummary,
  DockerContainers,
  containerName,
  hasHealthcheck,
  labelsOf,
  singleExposedPort,
} from './containers.js'
import { followEvents, type MobyEvent } from '../moby/events.js'
import { KeyedLock } from './keyed-lock.js'
import { COMPOSE_PROJECT_LABEL, domainLabel, groupOf, isRouted, readLabels } from '../moby/labels.js'
import { chooseUpstream } from '../moby/upstream.js'

/** Set by Swarm on every task container. */
export const SWARM_SERVICE_LABEL = 'com.docker.swarm.service.id'

/** Container actions that can change what the registry knows (issue 3). */
export const WATCHED_ACTIONS = ['create', 'start', 'die', 'pause', 'unpause', 'destroy', 'rename'] as const

const INSPECT_CONCURRENCY = 8

export interface DockerProviderOptions {
  /** Container port when neither a label, the config nor a single exposed port says it (defaults.app_port). */
  readonly appPort?: number
  /** Use this engine client instead of one built from `config.socket` (tests, Podman's compat API). */
  readonly engine?: EngineClient
}

export function backendState(status: ContainerStatus | undefined): BackendState {
  switch (status) {
    case 'running':
      return 'running'
    case 'paused':
      return 'paused'
    case 'restarting':
      return 'starting'
    case 'created':
    case 'exited':
    case 'dead':
    case 'removing':
      return 'stopped'
    default:
      return 'unknown'
  }
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
  readonly api: DockerContainers
  private readonly engine: EngineClient
  private readonly prefix: string
  private readonly configSettings: BackendSettings
  private readonly containerLock = new KeyedLock()
  private readonly groupLock = new KeyedLock()
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
    this.api = new DockerContainers(this.engine)
    this.configSettings = settingsFrom(config)
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.assertOpen()
    const summaries = await this.api.list({ label: [domainLabel(this.prefix)] }, signal)
    const inspected = await mapLimit(summaries, INSPECT_CONCURRENCY, (s) =>
      this.api.inspect(s.Id, signal).catch((err: unknown) => {
        if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) return undefined // removed since the list
        throw err
      }),
    )
    const containers = inspected.filter((c): c is ContainerInspect => c !== undefined)
    if (!this.listedOnce) {
      this.listedOnce = true
      if (!this.config.auto_sleep_on_start) {
        for (const c of containers) if (c.State.Status === 'running') this.pinned.add(c.Id)
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
    const labels = labelsOf(c)
    // A Swarm task's container: Swarm replaces it when it stops, so it is the service's to
    // scale (providers.swarm), never ours to stop or pause.
    if (labels[SWARM_SERVICE_LABEL] !== undefined) return undefined
    const facts = readLabels(labels, this.prefix)
    if (facts.hosts.length === 0) return undefined
    const name = containerName(c)
    for (const problem of facts.problems) this.warnOnce(c.Id, problem, { container: name }, 'label ignored')
    const port = facts.port ?? this.config.port ?? singleExposedPort(c) ?? this.options.appPort ?? 80
    const choice = chooseUpstream(c, port, this.config.network)
    if (choice.warning) this.warnOnce(c.Id, choice.warning, { container: name }, 'upstream')
    if (c.State.Status !== 'running') this.pinned.delete(c.Id)
    const settings: BackendSettings = { ...this.configSettings, ...facts.settings }
    if (this.pinned.has(c.Id)) settings.always_on = true
    const health = c.State.Health?.Status
    return {
      id: c.Id,
      name,
      hosts: facts.hosts,
      state: backendState(c.State.Status),
      upstreams: choice.upstream ? [choice.upstream] : [],
      ...(facts.group !== undefined ? { group: facts.group } : {}),
      settings,
      details: {
        container: name,
        image: c.Config?.Image ?? '',
        status: c.State.Status,
        port,
        upstream_rule: choice.rule,
        ...(c.State.Status === 'exited' ? { exit_code: c.State.ExitCode ?? -1 } : {}),
        ...(health ? { health } : {}),
      },
    }
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed) return
    const stop = AbortSignal.any([signal, this.closer.signal])
    void followEvents(
      this.engine,
      {
        query: { filters: { type: ['container'], label: [domainLabel(this.prefix)], event: [...WATCHED_ACTIONS] } },
        connected: () => onEvent({ type: 'resync' }),
        onEvent: (event) => this.handleEvent(event, onEvent, stop),
        log: this.log,
        engine: 'docker',
      },
      stop,
    )
  }

  private async handleEvent(event: MobyEvent, emit: (event: ProviderEvent) => void, signal: AbortSignal): Promise<void> {
    const id = event.Actor?.ID ?? event.id
    if (!id) return
    if (event.Action === 'destroy') {
      this.pinned.delete(id)
      this.expectedDie.delete(id)
      emit({ type: 'remove', id })
      return
    }
    let c: ContainerInspect
    try {
      // The current state, not the event's: a late event never rolls the registry back.
      c = await this.api.inspect(id, signal)
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND')) {
        emit({ type: 'remove', id })
        return
      }
      throw err
    }
    const info = this.toBackend(c)
    if (!info) {
      emit({ type: 'remove', id })
      return
    }
    if (event.Action === 'die' && c.State.Status !== 'running' && c.State.Status !== 'restarting') {
      if (this.expectedDie.delete(id)) {
        // our own stop
      } else {
        const code = c.State.ExitCode ?? -1
        this.log.warn({ container: info.name, exit_code: code, ...(c.State.Error ? { error: c.State.Error } : {}) }, 'container exited')
        emit({ type: 'state', id, state: 'stopped', reason: `exited with code ${code}` })
      }
    }
    emit({ type: 'upsert', backend: info })
  }

  // ── wake ───────────────────────────────────────────────────────────────────────────────────

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    this.assertOpen()
    const c = await this.routed(id, signal)
    const group = groupOf(labelsOf(c), this.prefix)
    let started: ContainerInspect
    if (group !== undefined) {
      // Under the group lock, so a sleep of the group's last routed member cannot put the
      // dependencies back to sleep between their start and ours.
      started = await this.groupLock.run(group, async () => {
        await this.wakeDependencies(group, signal)
        return this.startContainer(c.Id, signal)
      })
    } else {
      started = await this.startContainer(c.Id, signal)
    }
    const running = hasHealthcheck(started) ? await this.waitHealthy(c.Id, signal) : this.assertRunning(started)
    // Fresh facts for the core to probe (a bridge IP changes on every start).
    const info = this.toBackend(running)
    if (!info) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${containerName(running)} lost its domain label`, { backend: id, provider: this.kind })
    return info
  }

  /** Start or unpause one container (idempotent); answers its state afterwards. */
  private startContainer(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    return this.containerLock.run(id, async () => {
      const c = await this.api.inspect(id, signal)
      const name = containerName(c)
      switch (c.State.Status) {
        case 'running':
        case 'restarting':
          return c
        case 'paused':
          await this.api.unpause(id, signal)
          this.log.debug({ container: name }, 'unpaused')
          break
        case 'created':
        case 'exited':
          this.expectedDie.delete(id)
          await this.api.start(id, signal)
          this.log.debug({ container: name }, 'started')
          break
        case 'removing':
        case 'dead':
          throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `container ${name} is ${c.State.Status} and cannot be started`, {
            backend: name,
            provider: this.kind,
          })
      }
      return this.api.inspect(id, signal)
    })
  }

  private exitedError(c: ContainerInspect): RelightError {
    const name = containerName(c)
    const code = c.State.ExitCode ?? -1
    this.log.warn({ container: name, exit_code: code, ...(c.State.Error ? { error: c.State.Error } : {}) }, 'container exited while waking')
    return new RelightError('RELIGHT_ERR_BACKEND_EXITED', `container ${name} exited with code ${code}${c.State.Error ? `: ${c.State.Error}` : ''}`, {
      backend: name,
      provider: this.kind,
      exitCode: code,
    })
  }

  private assertRunning(c: ContainerInspect): ContainerInspect {
    if (c.State.Status === 'exited' || c.State.Status === 'dead') throw this.exitedError(c)
    return c
  }

  /**
   * Wait for Docker's health status to be healthy. The event stream is opened before the state
   * is read, so no transition falls between the two. Bounded by the caller's signal (wake_timeout).
   */
  private async waitHealthy(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    const done = new AbortController()
    const stop = AbortSignal.any([signal, done.signal])
    try {
      const stream = await this.api.events({ type: ['container'], container: [id] }, stop)
      const now = await this.api.inspect(id, signal)
      this.assertRunning(now)
      if (now.State.Health?.Status === 'healthy' || !hasHealthcheck(now)) return now
      this.log.debug({ container: containerName(now) }, 'waiting for the health check')
      for await (const event of stream) {
        const action = event.Action ?? ''
        if (action === 'health_status: healthy') return await this.api.inspect(id, signal)
        if (action === 'die') this.assertRunning(await this.api.inspect(id, signal))
        if (action === 'destroy') throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `container ${id} was removed`, { backend: id, provider: this.kind })
      }
      throw new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'the docker event stream ended while waiting for a health check', { backend: id, provider: this.kind })
    } catch (err) {
      if (signal.aborted && !isRelightError(err, 'RELIGHT_ERR_BACKEND_EXITED')) {
        throw toRelightError(signal.reason ?? err, 'RELIGHT_ERR_ABORTED', { backend: id, provider: this.kind })
      }
      throw err
    } finally {
      done.abort()
    }
  }

  /** The group's containers without a domain label (databases, workers), in any state. */
  private async groupMembers(group: string, signal: AbortSignal): Promise<ContainerSummary[]> {
    const [explicit, compose] = await Promise.all([
      this.api.list({ label: [`${this.prefix}.group=${group}`] }, signal),
      this.api.list({ label: [`${COMPOSE_PROJECT_LABEL}=${group}`] }, signal),
    ])
    const byId = new Map<string, ContainerSummary>()
    for (const c of [...explicit, ...compose]) {
      const labels = labelsOf(c)
      if (groupOf(labels, this.prefix) === group && labels[SWARM_SERVICE_LABEL] === undefined) byId.set(c.Id, c)
    }
    return [...byId.values()]
  }

  private async wakeDependencies(group: string, signal: AbortSignal): Promise<void> {
    const deps = (await this.groupMembers(group, signal)).filter((c) => !isRouted(labelsOf(c), this.prefix))
    const asleep = deps.filter((c) => c.State !== 'running')
    if (asleep.length === 0) return
    this.log.info({ group, containers: asleep.map((c) => (c.Names?.[0] ?? c.Id).replace(/^\//, '')) }, 'waking group dependencies')
    const started = await Promise.all(asleep.map((c) => this.startContainer(c.Id, signal)))
    // Compose's `depends_on: service_healthy` parity: dependencies with a health check must be healthy.
    await Promise.all(started.filter((c) => hasHealthcheck(c) && c.State.Status === 'running').map((c) => this.waitHealthy(c.Id, signal)))
  }

  // ── sleep ──────────────────────────────────────────────────────────────────────────────────

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    this.assertOpen()
    if (mode !== 'pause' && mode !== 'stop') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `docker containers sleep with pause or stop, not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const c = await this.routed(id, signal)
    await this.sleepContainer(c.Id, mode, signal)
    const group = groupOf(labelsOf(c), this.prefix)
    if (group === undefined) return
    // The member itself is asleep now: a dependency that fails to sleep is logged, not this
    // member's failure (else the core would try fallback_sleep on a container already asleep).
    await this.groupLock.run(group, () => this.sleepDependenciesIfGroupAsleep(group, mode, signal)).catch((err: unknown) => {
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED', { provider: this.kind })
      this.log.warn({ group, code: error.code, err: error.message }, 'could not put the group\'s dependencies to sleep; they stay up until the next time the group sleeps')
    })
  }

  private sleepContainer(id: string, mode: 'pause' | 'stop', signal: AbortSignal): Promise<void> {
    return this.containerLock.run(id, async () => {
      const c = await this.api.inspect(id, signal)
      const status = c.State.Status
      if (mode === 'pause') {
        if (status === 'running' || status === 'restarting') await this.api.pause(id, signal)
        return // paused already, or stopped (deeper asleep)
      }
      if (status === 'running' || status === 'paused' || status === 'restarting') {
        this.expectedDie.add(id)
        try {
          await this.api.stop(id, Math.ceil(this.config.stop_timeout / 1000), signal)
        } catch (err) {
          this.expectedDie.delete(id)
          throw err
        }
      }
    })
  }

  /** After a routed member slept: when no routed member of the group runs, sleep the others too. */
  private async sleepDependenciesIfGroupAsleep(group: string, mode: 'pause' | 'stop', signal: AbortSignal): Promise<void> {
    const members = await this.groupMembers(group, signal)
    const routed = members.filter((c) => isRouted(labelsOf(c), this.prefix))
    if (routed.some((c) => c.State === 'running' || c.State === 'restarting')) return
    const awake = members.filter((c) => !isRouted(labelsOf(c), this.prefix) && (c.State === 'running' || c.State === 'restarting' || (mode === 'stop' && c.State === 'paused')))
    if (awake.length === 0) return
    this.log.info({ group, mode, containers: awake.map((c) => (c.Names?.[0] ?? c.Id).replace(/^\//, '')) }, 'group asleep; sleeping its dependencies')
    await Promise.all(awake.map((c) => this.sleepContainer(c.Id, mode, signal)))
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  /** Inspect a container this provider manages (it carries a domain label). */
  private async routed(id: string, signal: AbortSignal): Promise<ContainerInspect> {
    const c = await this.api.inspect(id, signal)
    const labels = labelsOf(c)
    if (!isRouted(labels, this.prefix) || labels[SWARM_SERVICE_LABEL] !== undefined) {
      const why = labels[SWARM_SERVICE_LABEL] !== undefined ? 'belongs to a Swarm service (providers.swarm drives it)' : `has no ${domainLabel(this.prefix)} label`
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
      const v = await this.api.version(signal)
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
    try {
      const summaries = await this.api.list({ label: [domainLabel(this.prefix)] }, signal)
      const names = summaries.map((s) => (s.Names?.[0] ?? s.Id).replace(/^\//, ''))
      results.push({
        ok: true,
        message:
          summaries.length === 0
            ? `no container carries the ${domainLabel(this.prefix)} label yet (label your containers to route them)`
            : `${summaries.length} container(s) labelled ${domainLabel(this.prefix)}: ${names.join(', ')}`,
      })
      for (const s of summaries) {
        const problems = readLabels(labelsOf(s), this.prefix).problems
        for (const p of problems) results.push({ ok: false, message: `container ${(s.Names?.[0] ?? s.Id).replace(/^\//, '')}: ${p}` })
      }
    } catch (err) {
      results.push({ ok: false, message: `cannot list containers: ${(err as Error).message}` })
    }
    return results
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    if (!this.options.engine) await this.engine.close()
  }
}
