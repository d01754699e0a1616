import { hostname } from 'node:os'
import type { Logger } from 'pino'
import { monotonicNow } from '../../core/clock.js'
import { RelightError } from '../../core/errors.js'
import type { BackendInfo, BackendSettings, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { settingsFrom } from '../../core/settings.js'
import type { SharedEngine } from '../../core/shared.js'
import { WarnOnce, problemTopic } from '../../core/warn-once.js'
import { KubeClient } from './client.js'
import type { KubernetesConfig } from './config.js'
import { KUBERNETES_SLEEP_MODES } from './descriptor.js'
import { type Credentials, loadCredentials } from './credentials.js'
import { type InformerCounters, runInformer } from './informer.js'
import { failureKeys, startFailure } from './start-failure.js'
import { KubernetesView } from './view.js'
import { recordActivity } from './workload-activity.js'
import { checkKubernetes } from './workload-check.js'
import { listFromApi, listFromView } from './workload-list.js'
import { getWorkload, notFound, type WorkloadOps } from './workload-patch.js'
import { refreshWorkload } from './workload-refresh.js'
import { sleepIf } from './workload-sleep.js'
import { wakeWorkload } from './workload-wake.js'
import {
  type BackendOptions,
  collectionPath,
  isAnnotated,
  parseWorkloadId,
  type Pod,
  type PodRecord,
  podsPath,
  readFacts,
  specReplicas,
  toBackend,
  type Workload,
  type WorkloadKind,
  workloadId,
  type WorkloadRef,
  WORKLOAD_KINDS,
} from './workloads.js'

export interface KubernetesProviderOptions {
  /** Directory a relative `kubeconfig` path resolves against (the config file's). */
  readonly baseDir?: string
  /** Port when neither an annotation, the config nor a single container port says it (defaults.app_port). */
  readonly appPort?: number
  /** Use these credentials instead of loading them (tests). */
  readonly credentials?: Credentials
  /** Use this client instead of building one (tests: recorded answers). */
  readonly client?: KubeClient
  readonly env?: NodeJS.ProcessEnv
  /** The in-cluster service account folder (default /var/run/secrets/kubernetes.io/serviceaccount; tests). */
  readonly serviceAccountDir?: string
  /** The monotonic clock observations are timed on (default core/clock.ts; tests). */
  readonly now?: () => number
}

interface Known {
  readonly kind: WorkloadKind
  readonly workload: Workload
}

/**
 * Deployments and StatefulSets annotated `<prefix>.domain`, scaled between 0 and their awake
 * count (`<prefix>.replicas`, default 1) by a merge PATCH of the workload. Upstreams are the
 * ready pods (condition Ready, with an IP), or the workload's Service by its cluster DNS name.
 *
 * Thin wiring: the informers (watch()) feed one view (view.ts); each operation is its own file
 * (workload-list, -wake, -activity, -sleep, -refresh, -check). Several sidecars share their
 * decisions through `shared` (core/shared.ts): the activity token lives in the workload's
 * `<prefix>.activity` annotation, and a scale-down is a PATCH conditional on the resourceVersion
 * of a fresh read (docs/plans/issue-21-shared-decisions.md §4.2, §4.6).
 */
export class KubernetesProvider implements Provider {
  readonly kind: string = 'kubernetes'
  readonly id: string
  readonly sleepModes: readonly SleepMode[] = KUBERNETES_SLEEP_MODES
  /** Informer statistics (tests and status). */
  readonly watchCounters: InformerCounters = { lists: 0, watches: 0, gone: 0, failures: 0 }
  readonly identity: string
  /** What the informers know (tests and the shared-decision port). */
  readonly view: KubernetesView
  readonly shared: SharedEngine
  private readonly client: KubeClient | undefined
  private readonly setupError: RelightError | undefined
  private readonly credentials: Credentials | undefined
  /** `undefined` = all namespaces (one cluster-wide list/watch). */
  private readonly namespaces: readonly (string | undefined)[]
  private readonly prefix: string
  private readonly baseSettings: BackendSettings
  private readonly listeners = new Set<(event: ProviderEvent) => void>()
  /** The last BackendInfo the registry learnt of each workload (an upsert, a list, or an own write's answer), as JSON. */
  private readonly told = new Map<string, string>()
  /** auto_sleep_on_start: false — workloads running at the first list stay up until scaled to 0. */
  private readonly pinned = new Set<string>()
  /** Per workload: the pod failures the view held when its last wake began (start-failure.ts). */
  private readonly failedBeforeWake = new Map<string, Set<string>>()
  private listedOnce = false
  private watching = false
  private readonly warned = new WarnOnce()
  private readonly closer = new AbortController()
  /** Aborts the running informers (restarted when the view is distrusted). */
  private informers = new AbortController()
  private closed = false

  constructor(
    private readonly config: KubernetesConfig & { readonly id?: string },
    private readonly log: Logger,
    private readonly options: KubernetesProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    const env = options.env ?? process.env
    this.prefix = config.annotation_prefix
    this.identity = config.identity ?? env.POD_NAME ?? `${hostname()}/${process.pid}`
    // A config block that asks for none of them still sleeps with `scale`, the only mode here.
    this.baseSettings = { sleep: 'scale', fallback_sleep: 'scale', ...settingsFrom(config) }
    let credentials = options.credentials
    let setupError: RelightError | undefined
    if (!credentials && !options.client) {
      try {
        credentials = loadCredentials({
          kubeconfig: config.kubeconfig,
          context: config.context,
          baseDir: options.baseDir ?? process.cwd(),
          env,
          ...(options.serviceAccountDir ? { serviceAccountDir: options.serviceAccountDir } : {}),
        })
      } catch (err) {
        // Every operation rejects with it (list() first, so `check` shows it); other providers keep working.
        setupError = new RelightError('RELIGHT_ERR_PROVIDER_AUTH', (err as Error).message, { provider: 'kubernetes' })
        log.error({ err: setupError.message }, 'kubernetes credentials unusable')
      }
    }
    this.credentials = credentials
    this.setupError = setupError
    this.client = options.client ?? (credentials ? new KubeClient(credentials) : undefined)
    const defaultNamespace = credentials?.namespace ?? 'default'
    this.namespaces = config.namespaces === 'all' ? [undefined] : (config.namespaces ?? [defaultNamespace])
    this.view = new KubernetesView(this.prefix, options.now ?? monotonicNow)
    this.shared = {
      observe: (id) => this.view.observe(id),
      recordActivity: async (id, agoMs, signal) => recordActivity(this.ops(), this.ref(id), agoMs, signal),
      refresh: async (id, signal) => refreshWorkload(this.ops(), this.ref(id), this.config.route === 'pods', signal),
      sleepIf: async (id, unchangedSince, signal) => {
        const answer = await sleepIf(this.ops(), this.ref(id), unchangedSince, signal)
        if (answer.result === 'slept') this.pinned.delete(id)
        return answer
      },
      onReconnect: (listener) => this.view.onReconnect(listener),
    }
    this.view.onDistrust(() => {
      this.log.warn({ provider: this.id }, 'kubernetes view distrusted (the API server did not answer a fresh read in time): listing again; no scale-down until then')
      this.emit({ type: 'connection', up: false, reason: 'the API server did not answer a fresh read within 1 s' })
      if (this.watching && this.client && !this.closed) this.startInformers(this.client)
    })
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    const ops = this.ops()
    const known = this.view.live ? listFromView(this.view) : await listFromApi(ops, this.namespaces, signal)
    if (!this.listedOnce) {
      this.listedOnce = true
      if (!this.config.auto_sleep_on_start) {
        for (const k of known) if (specReplicas(k.workload) > 0) this.pinned.add(this.idOf(k))
        if (this.pinned.size > 0) this.log.info({ workloads: this.pinned.size }, 'auto_sleep_on_start is off: workloads scaled up now stay up until scaled to 0')
      }
    }
    const present = new Set(known.map((k) => this.idOf(k)))
    for (const id of this.pinned) if (!present.has(id)) this.pinned.delete(id)
    this.warned.prune((id) => present.has(id))
    const infos = known.map((k) => this.backendOf(k, k.pods))
    for (const info of infos) this.told.set(info.id, JSON.stringify(info))
    return infos
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed || !this.client) return
    const stop = AbortSignal.any([signal, this.closer.signal])
    this.listeners.add(onEvent)
    stop.addEventListener('abort', () => this.listeners.delete(onEvent), { once: true })
    // One set of informers per provider, however many listeners.
    if (this.watching) return
    this.watching = true
    this.startInformers(this.client)
  }

  /** The informers, afresh (first watch, and after the view was distrusted: they list again). */
  private startInformers(client: KubeClient): void {
    this.informers.abort()
    this.informers = new AbortController()
    const stop = AbortSignal.any([this.closer.signal, this.informers.signal])
    this.view.expect(this.namespaces.length * (WORKLOAD_KINDS.length + 1))
    for (const ns of this.namespaces) {
      const inScope = (namespace: string | undefined) => ns === undefined || namespace === ns
      for (const kind of WORKLOAD_KINDS) {
        const key = `${kind}@${ns ?? '*'}`
        void runInformer<Workload>(
          client,
          collectionPath(kind, ns),
          {},
          {
            relisted: (items) => {
              this.view.relistWorkloads(kind, inScope, items)
              this.warned.prune((id) => this.view.entries.has(id))
              this.emit({ type: 'resync' })
            },
            changed: (type, w) => this.workloadChanged(kind, type, w),
            connected: (live) => this.connected(key, live),
          },
          this.log,
          stop,
          this.watchCounters,
        )
      }
      const key = `pods@${ns ?? '*'}`
      void runInformer<Pod>(
        client,
        podsPath(ns),
        {},
        {
          relisted: (items) => {
            this.view.relistPods(inScope, items)
            for (const e of this.view.entries.values()) if (inScope(e.workload.metadata.namespace)) this.upsert(this.backendOf(e, this.view.podsOf(e)))
          },
          changed: (type, pod) => {
            for (const id of this.view.podEvent(type, pod)) {
              const e = this.view.entries.get(id)
              if (e) this.upsert(this.backendOf(e, this.view.podsOf(e)))
            }
          },
          connected: (live) => this.connected(key, live),
        },
        this.log,
        stop,
        this.watchCounters,
      )
    }
  }

  private connected(key: string, live: boolean): void {
    const was = this.view.live
    this.view.connected(key, live)
    if (was === this.view.live) return
    if (this.view.live) {
      this.log.info({ provider: this.id }, 'kubernetes view live (listed and watching)')
      this.emit({ type: 'connection', up: true })
    } else {
      this.log.warn({ provider: this.id, collection: key }, 'kubernetes view disconnected: no scale-down until it is listed again')
      this.emit({ type: 'connection', up: false, reason: `the watch of ${key} failed` })
    }
  }

  private workloadChanged(kind: WorkloadKind, type: 'ADDED' | 'MODIFIED' | 'DELETED', w: Workload): void {
    const { id, change } = this.view.workloadEvent(kind, type, w)
    if (change === 'removed' || change === 'ignored') {
      this.pinned.delete(id)
      this.warned.forget(id)
      this.failedBeforeWake.delete(id)
      if (change === 'removed') this.emit({ type: 'remove', id })
      return
    }
    if (specReplicas(w) === 0) this.pinned.delete(id)
    const e = this.view.entries.get(id)
    if (!e) return
    const info = this.backendOf(e, this.view.podsOf(e))
    // Own writes (our wake, token or scale-down) raise nothing: the core learns of them from the
    // call's answer. What they changed counts as told, so a later foreign change is compared with it.
    if (change === 'own') this.told.set(id, JSON.stringify(info))
    else this.upsert(info)
  }

  /**
   * An upsert, unless the registry was already told exactly this: a token write on a Deployment
   * bumps its generation, and the controller's status write that follows (observedGeneration)
   * changes nothing the registry keeps, on every sidecar.
   */
  private upsert(info: BackendInfo): void {
    const text = JSON.stringify(info)
    if (this.told.get(info.id) === text) return
    this.told.set(info.id, text)
    this.emit({ type: 'upsert', backend: info })
  }

  private emit(event: ProviderEvent): void {
    if (event.type === 'remove') this.told.delete(event.id)
    for (const listener of this.listeners) listener(event)
  }

  // ── wake, sleep, shared activity ───────────────────────────────────────────────────────────

  /**
   * One merge PATCH (a fresh activity token, and the awake count when at 0), then resolve once a
   * pod is Ready with an IP, with the workload's fresh BackendInfo. Emits nothing (contract 2).
   */
  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    const ops = this.ops()
    const ref = this.ref(id)
    const cached = this.view.live ? this.view.entries.get(id)?.workload : undefined
    const w = cached ?? (await this.get(ref, signal))
    const { awakeReplicas } = this.facts({ kind: ref.kind, workload: w })
    const entry = this.view.started ? this.view.entries.get(id) : undefined
    const failedBefore = this.view.started ? failureKeys(entry ? this.view.podsOf(entry) : []) : undefined
    if (failedBefore) this.failedBeforeWake.set(id, failedBefore)
    const woken = await wakeWorkload(ops, ref, w, awakeReplicas, signal, failedBefore)
    const info = this.backendOf({ kind: ref.kind, workload: woken.workload }, woken.pods)
    this.told.set(id, JSON.stringify(info))
    return info
  }

  /**
   * While the core probes the woken workload: resolves when one of its pods fails to start after
   * the wake began (start-failure.ts); from the view's pod cache, no request of its own.
   */
  startFailure(id: string, signal: AbortSignal): Promise<string> {
    let before = this.failedBeforeWake.get(id)
    if (before === undefined) {
      const entry = this.view.entries.get(id)
      before = failureKeys(entry ? this.view.podsOf(entry) : [])
    }
    return startFailure(this.view, this.log, id, before, signal)
  }

  /**
   * Scale to 0 (the admin API; the core's idle sleeps call `shared.sleepIf` itself):
   * `sleepIf(observe(id).version)`, refused (RELIGHT_ERR_SLEEP_REFUSED) when the activity changed
   * since. Without an informer (a one-shot use) it judges on a fresh read.
   */
  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    const ops = this.ops()
    if (mode !== 'scale') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `kubernetes workloads sleep with scale (to 0 replicas), not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const ref = this.ref(id)
    const observed = this.view.started ? this.view.observe(id)?.version : undefined
    const version = observed ?? (await this.get(ref, signal)).metadata.annotations?.[this.view.annotation] ?? 'none'
    const answer = await sleepIf(ops, ref, version, signal)
    if (answer.result === 'changed') throw refused(id, answer.observation.live ? 'another sidecar wrote activity since (version changed)' : 'engine view disconnected')
    this.pinned.delete(id)
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  private usable(): KubeClient {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the kubernetes provider is closed', { provider: this.kind })
    if (this.setupError) throw this.setupError
    return this.client as KubeClient
  }

  private ops(): WorkloadOps {
    return { client: this.usable(), view: this.view, identity: this.identity, prefix: this.prefix, log: this.log, kind: this.kind }
  }

  private idOf(k: Known): string {
    return workloadId({ kind: k.kind, namespace: k.workload.metadata.namespace ?? 'default', name: k.workload.metadata.name })
  }

  private ref(id: string): WorkloadRef {
    const ref = parseWorkloadId(id)
    const inScope = ref !== undefined && this.namespaces.some((ns) => ns === undefined || ns === ref.namespace)
    if (!ref || !inScope) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `no workload ${id} in the watched namespaces`, { backend: id, provider: this.kind })
    return ref
  }

  /** The workload, fresh; BACKEND_NOT_FOUND when it is gone or no longer annotated. */
  private async get(ref: WorkloadRef, signal: AbortSignal): Promise<Workload> {
    const w = await getWorkload(this.ops(), ref, signal)
    if (!isAnnotated(w, this.prefix)) throw notFound(this, ref, `has no ${this.prefix}.domain annotation`)
    return w
  }

  private backendOptions(k: Known): BackendOptions {
    return {
      kind: k.kind,
      prefix: this.prefix,
      fallbackPort: this.config.port ?? this.options.appPort ?? 8080,
      route: this.config.route,
      clusterDomain: this.config.cluster_domain,
      baseSettings: this.baseSettings,
      alwaysOn: this.pinned.has(this.idOf(k)),
    }
  }

  private facts(k: Known) {
    return readFacts(k.workload, this.backendOptions(k))
  }

  private backendOf(k: Known, pods: readonly PodRecord[]): BackendInfo {
    const options = this.backendOptions(k)
    const facts = readFacts(k.workload, options)
    const id = this.idOf(k)
    for (const problem of facts.problems) this.warnOnce(id, problem)
    return toBackend(k.workload, pods, options, facts)
  }

  /** Warn once per workload and annotation name: keys never hold annotation values (they could grow without bound). */
  private warnOnce(id: string, problem: string): void {
    if (!this.warned.first(id, problemTopic(problem))) return
    this.log.warn({ workload: id }, `annotation ignored: ${problem}`)
  }

  // ── check and lifecycle ────────────────────────────────────────────────────────────────────

  async check(signal: AbortSignal): Promise<CheckResult[]> {
    if (this.setupError) return [] // list() already failed with the reason
    return checkKubernetes(
      {
        client: this.client as KubeClient,
        source: this.credentials?.source,
        namespaces: this.namespaces,
        prefix: this.prefix,
        identity: this.identity,
        problems: (k) => this.facts(k).problems.map((p) => `${this.idOf(k)}: ${p}`),
      },
      signal,
    )
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    this.listeners.clear()
    if (!this.options.client) await this.client?.close()
  }
}

function refused(id: string, why: string): RelightError {
  return new RelightError('RELIGHT_ERR_SLEEP_REFUSED', `${id} stays up: ${why}`, { backend: id, provider: 'kubernetes' })
}
