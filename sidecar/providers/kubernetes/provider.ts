import { hostname } from 'node:os'
import type { Logger } from 'pino'
import { RelightError, isRelightError, throwIfAborted } from '../../core/errors.js'
import type { BackendInfo, BackendSettings, CheckResult, Provider, ProviderEvent, SleepContext, SleepMode } from '../../core/provider.js'
import { settingsFrom } from '../../core/settings.js'
import { mapLimit } from '../../core/map-limit.js'
import { WarnOnce, problemTopic } from '../../core/warn-once.js'
import { KubeClient } from './client.js'
import type { KubernetesConfig } from './config.js'
import { KUBERNETES_SLEEP_MODES } from './descriptor.js'
import { type Credentials, loadCredentials } from './credentials.js'
import { type InformerCounters, runInformer } from './informer.js'
import { type LeaseOwner, SharedActivity } from './leases.js'
import { checkPermissions } from './rbac.js'
import {
  type BackendOptions,
  collectionPath,
  isAnnotated,
  ownsPod,
  parseWorkloadId,
  type Pod,
  type PodList,
  podRecord,
  type PodRecord,
  podsPath,
  readFacts,
  selectorMatches,
  selectorString,
  specReplicas,
  toBackend,
  type Workload,
  type WorkloadKind,
  workloadId,
  type WorkloadList,
  workloadPath,
  type WorkloadRef,
  WORKLOAD_KINDS,
} from './workloads.js'

const POD_LIST_CONCURRENCY = 8

/** How long sleep() waits for the pods of a workload scaled to 0 to be gone or terminating. */
const PODS_GONE_TIMEOUT_MS = 30_000

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
}

interface Known {
  readonly kind: WorkloadKind
  readonly workload: Workload
}

/**
 * Deployments and StatefulSets annotated `<prefix>.domain`, scaled between 0 and their awake
 * count (`<prefix>.replicas`, default 1) through the `scale` subresource. Upstreams are the
 * ready pods (condition Ready, with an IP), or the workload's Service by its cluster DNS name.
 *
 * Discovery: list() lists the workloads (and the pods of those scaled up) afresh: the truth.
 * watch() follows workloads and pods (list, then watch from that resourceVersion; resume on a
 * normal end; list again on 410 Gone) and reports each change.
 *
 * Several sidecars: each one writes the traffic it sees into a Lease per workload
 * (shareActivity), and scales a workload down only after checking that Lease with a
 * resourceVersion precondition (leases.ts).
 */
export class KubernetesProvider implements Provider {
  readonly kind: string = 'kubernetes'
  readonly id: string
  readonly sleepModes: readonly SleepMode[] = KUBERNETES_SLEEP_MODES
  /** Informer statistics (tests and status). */
  readonly watchCounters: InformerCounters = { lists: 0, watches: 0, gone: 0, failures: 0 }
  readonly identity: string
  private readonly client: KubeClient | undefined
  private readonly setupError: RelightError | undefined
  private readonly credentials: Credentials | undefined
  /** `undefined` = all namespaces (one cluster-wide list/watch). */
  private readonly namespaces: readonly (string | undefined)[]
  private readonly prefix: string
  private readonly baseSettings: BackendSettings
  private readonly leases: SharedActivity | undefined
  private readonly listeners = new Set<(event: ProviderEvent) => void>()
  /** What the watches know: annotated workloads by id, and pods by namespace/name. */
  private readonly workloads = new Map<string, Known>()
  private readonly pods = new Map<string, PodRecord>()
  /** auto_sleep_on_start: false — workloads running at the first list stay up until scaled to 0. */
  private readonly pinned = new Set<string>()
  private listedOnce = false
  private readonly warned = new WarnOnce()
  private readonly closer = new AbortController()
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
    this.leases = this.client ? new SharedActivity(this.client, this.identity) : undefined
    const defaultNamespace = credentials?.namespace ?? 'default'
    this.namespaces = config.namespaces === 'all' ? [undefined] : (config.namespaces ?? [defaultNamespace])
  }

  // ── discovery ──────────────────────────────────────────────────────────────────────────────

  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    const client = this.usable()
    const lists = await Promise.all(
      this.namespaces.flatMap((ns) =>
        WORKLOAD_KINDS.map(async (kind) => {
          const list = await client.json<WorkloadList>('GET', collectionPath(kind, ns), { signal })
          return list.items.filter((w) => isAnnotated(w, this.prefix)).map((workload) => ({ kind, workload }))
        }),
      ),
    )
    const known = lists.flat()
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
    // Pods only for workloads scaled up: the others have none to route to.
    return mapLimit(known, POD_LIST_CONCURRENCY, async (k) => {
      const pods = specReplicas(k.workload) > 0 ? await this.listPods(k.kind, k.workload, signal).then((r) => r.pods) : []
      return this.backendOf(k, pods)
    })
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (this.closed || !this.client) return
    const client = this.client
    const stop = AbortSignal.any([signal, this.closer.signal])
    this.listeners.add(onEvent)
    stop.addEventListener('abort', () => this.listeners.delete(onEvent), { once: true })
    for (const ns of this.namespaces) {
      const inScope = (namespace: string | undefined) => ns === undefined || namespace === ns
      for (const kind of WORKLOAD_KINDS) {
        void runInformer<Workload>(
          client,
          collectionPath(kind, ns),
          {},
          {
            relisted: (items) => {
              for (const [id, k] of this.workloads) if (k.kind === kind && inScope(k.workload.metadata.namespace)) this.workloads.delete(id)
              for (const w of items) if (isAnnotated(w, this.prefix)) this.workloads.set(this.idOf({ kind, workload: w }), { kind, workload: w })
              this.warned.prune((id) => this.workloads.has(id))
              onEvent({ type: 'resync' })
            },
            changed: (type, w) => this.workloadChanged(kind, type, w),
          },
          this.log,
          stop,
          this.watchCounters,
        )
      }
      void runInformer<Pod>(
        client,
        podsPath(ns),
        {},
        {
          relisted: (items) => {
            for (const [key, p] of this.pods) if (inScope(p.namespace)) this.pods.delete(key)
            for (const pod of items) this.pods.set(podKey(pod), podRecord(pod))
            for (const k of this.workloads.values()) if (inScope(k.workload.metadata.namespace)) this.emit({ type: 'upsert', backend: this.backendOf(k, this.cachedPods(k)) })
          },
          changed: (type, pod) => this.podChanged(type, pod),
        },
        this.log,
        stop,
        this.watchCounters,
      )
    }
  }

  private workloadChanged(kind: WorkloadKind, type: 'ADDED' | 'MODIFIED' | 'DELETED', w: Workload): void {
    const k: Known = { kind, workload: w }
    const id = this.idOf(k)
    if (type === 'DELETED' || !isAnnotated(w, this.prefix)) {
      const had = this.workloads.delete(id)
      this.pinned.delete(id)
      this.warned.forget(id)
      if (type === 'DELETED') this.leases?.forget({ kind, namespace: w.metadata.namespace ?? 'default', name: w.metadata.name })
      if (had || type === 'DELETED') this.emit({ type: 'remove', id })
      return
    }
    this.workloads.set(id, k)
    if (specReplicas(w) === 0) this.pinned.delete(id)
    this.emit({ type: 'upsert', backend: this.backendOf(k, this.cachedPods(k)) })
  }

  private podChanged(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: Pod): void {
    const key = podKey(pod)
    const before = this.pods.get(key)
    const record = podRecord(pod)
    if (type === 'DELETED') this.pods.delete(key)
    else this.pods.set(key, record)
    // Only what routing sees matters: readiness and address.
    if (type !== 'DELETED' && before && before.ready === record.ready && before.ip === record.ip) return
    for (const k of this.workloads.values()) {
      if ((k.workload.metadata.namespace ?? 'default') !== record.namespace) continue
      if (!selectorMatches(k.workload.spec?.selector, record.labels)) continue
      if (!ownsPod(k.kind, k.workload, record) && !(before && ownsPod(k.kind, k.workload, before))) continue
      this.emit({ type: 'upsert', backend: this.backendOf(k, this.cachedPods(k)) })
    }
  }

  /** The cached pods the workload made (selector and controller ownerReference). */
  private cachedPods(k: Known): PodRecord[] {
    const w = k.workload
    const ns = w.metadata.namespace ?? 'default'
    const out: PodRecord[] = []
    for (const p of this.pods.values()) if (p.namespace === ns && selectorMatches(w.spec?.selector, p.labels) && ownsPod(k.kind, w, p)) out.push(p)
    return out
  }

  private emit(event: ProviderEvent): void {
    for (const listener of this.listeners) listener(event)
  }

  // ── wake ───────────────────────────────────────────────────────────────────────────────────

  /**
   * Scale to the awake count (when at 0) and resolve once a pod is Ready with an IP, with the
   * workload's fresh BackendInfo (also emitted, for other listeners). The wake is recorded in the
   * Lease first, as activity (like Swarm's scale-up writes last_activity): another sidecar
   * whose view is stale (it still sees the workload up and idle) then cannot claim a scale-down
   * of it for idle_timeout, and a claim it read before loses its compare-and-swap.
   */
  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    const client = this.usable()
    const ref = this.ref(id)
    let w = await this.get(ref, signal)
    const k = { kind: ref.kind, workload: w }
    if (specReplicas(w) === 0) {
      const { awakeReplicas, settings } = this.facts(k)
      await (this.leases as SharedActivity).renew(ref, Date.now(), signal, ownerOf(ref, w), settings.idle_timeout ?? this.baseSettings.idle_timeout).catch((err: unknown) => {
        if (signal.aborted) throw err
        // The wake goes on (availability first); this sidecar refuses its own scale-downs of the
        // workload until a later write succeeds (leases.ts).
        this.log.warn({ workload: id, err: (err as Error).message }, 'could not record the wake in the Lease')
      })
      await this.scale(client, ref, awakeReplicas, signal)
      w = { ...w, spec: { ...w.spec, replicas: awakeReplicas } }
      this.log.debug({ workload: id, replicas: awakeReplicas }, 'scaled up')
    }
    const pods = await this.waitForReadyPod(ref.kind, w, signal)
    const info = this.backendOf({ kind: ref.kind, workload: w }, pods)
    this.emit({ type: 'upsert', backend: info })
    return info
  }

  /** The workload's pods once one is Ready with an IP; bounded by the caller's signal (wake_timeout). */
  private waitForReadyPod(kind: WorkloadKind, w: Workload, signal: AbortSignal): Promise<PodRecord[]> {
    return this.waitForPods(kind, w, signal, (pods) => pods.some((p) => p.ready && p.ip !== undefined))
  }

  /**
   * The workload's pods once `done` holds for them: list (by the workload's selector), then
   * watch from that list's resourceVersion, listing again when the watch ends. Pods of another
   * workload that the selector also matches are left out (ownsPod).
   */
  private async waitForPods(kind: WorkloadKind, w: Workload, signal: AbortSignal, done: (pods: PodRecord[]) => boolean): Promise<PodRecord[]> {
    const client = this.usable()
    const selector = selectorString(w.spec?.selector)
    const ns = w.metadata.namespace ?? 'default'
    if (selector === '') throw new RelightError('RELIGHT_ERR_PROVIDER_FAILED', `${ns}/${w.metadata.name} has no pod selector`, { backend: w.metadata.name, provider: this.kind })
    for (;;) {
      const { pods, resourceVersion } = await this.listPods(kind, w, signal)
      const byName = new Map(pods.map((p) => [p.name, p]))
      if (done([...byName.values()])) return [...byName.values()]
      const stream = await client.watch<Pod>(podsPath(ns), { labelSelector: selector, resourceVersion }, signal)
      try {
        for await (const event of stream) {
          if (event.type === 'ERROR') break // list again
          if (event.type === 'BOOKMARK') continue
          const record = podRecord(event.object)
          if (event.type === 'DELETED' || !ownsPod(kind, w, record)) byName.delete(record.name)
          else byName.set(record.name, record)
          if (done([...byName.values()])) return [...byName.values()]
        }
      } catch (err) {
        if (signal.aborted) throw err
        if (!isRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')) throw err
        // a dropped watch: list again
      }
      throwIfAborted(signal)
    }
  }

  private async listPods(kind: WorkloadKind, w: Workload, signal: AbortSignal): Promise<{ pods: PodRecord[]; resourceVersion: string }> {
    const client = this.usable()
    const selector = selectorString(w.spec?.selector)
    if (selector === '') return { pods: [], resourceVersion: '0' }
    const list = await client.json<PodList>('GET', podsPath(w.metadata.namespace ?? 'default'), { query: { labelSelector: selector }, signal })
    return { pods: list.items.map(podRecord).filter((p) => ownsPod(kind, w, p)), resourceVersion: list.metadata.resourceVersion ?? '0' }
  }

  // ── sleep and shared activity ──────────────────────────────────────────────────────────────

  /** Scale to 0, after the shared Lease says no other sidecar saw traffic (leases.ts). */
  async sleep(id: string, mode: SleepMode, signal: AbortSignal, context?: SleepContext): Promise<void> {
    const client = this.usable()
    if (mode !== 'scale') {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `kubernetes workloads sleep with scale (to 0 replicas), not ${mode}`, { backend: id, provider: this.kind, mode })
    }
    const ref = this.ref(id)
    const w = await this.get(ref, signal)
    const k = { kind: ref.kind, workload: w }
    if (specReplicas(w) > 0) {
      await (this.leases as SharedActivity).claimScaleDown(ref, context?.idleTimeout ?? 0, signal, ownerOf(ref, w))
      await this.scale(client, ref, 0, signal)
      this.log.debug({ workload: id }, 'scaled to 0')
      // Asleep once no pod is left or every one is terminating: a wake right after must not
      // route to a pod the controller is about to delete. Bounded, in case another sidecar
      // scaled it up again meanwhile (its pods then stay).
      const bound = AbortSignal.any([signal, AbortSignal.timeout(PODS_GONE_TIMEOUT_MS)])
      await this.waitForPods(ref.kind, w, bound, (pods) => pods.every((p) => p.terminating)).catch((err: unknown) => {
        if (signal.aborted) throw err
        this.log.debug({ workload: id, err: (err as Error).message }, 'pods still there after the scale-down')
      })
    }
    this.pinned.delete(id)
    this.emit({ type: 'upsert', backend: this.backendOf({ ...k, workload: { ...w, spec: { ...w.spec, replicas: 0 } } }, []) })
  }

  async shareActivity(id: string, at: number, signal: AbortSignal, context?: SleepContext): Promise<void> {
    this.usable()
    const ref = this.ref(id)
    const known = this.workloads.get(id)?.workload
    await (this.leases as SharedActivity).renew(ref, at, signal, known ? ownerOf(ref, known) : undefined, context?.idleTimeout)
  }

  // ── helpers ────────────────────────────────────────────────────────────────────────────────

  private usable(): KubeClient {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'the kubernetes provider is closed', { provider: this.kind })
    if (this.setupError) throw this.setupError
    return this.client as KubeClient
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
    const client = this.usable()
    let w: Workload
    try {
      w = await client.json<Workload>('GET', workloadPath(ref), { signal })
    } catch (err) {
      if (client.statusOf(err) === 404) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `${workloadId(ref)} does not exist`, { backend: workloadId(ref), provider: this.kind })
      throw err
    }
    if (!isAnnotated(w, this.prefix)) {
      throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `${workloadId(ref)} has no ${this.prefix}.domain annotation`, { backend: workloadId(ref), provider: this.kind })
    }
    return w
  }

  /** PATCH the scale subresource (merge patch). */
  private async scale(client: KubeClient, ref: WorkloadRef, replicas: number, signal: AbortSignal): Promise<void> {
    try {
      await client.json('PATCH', workloadPath(ref, 'scale'), { body: { spec: { replicas } }, contentType: 'application/merge-patch+json', signal })
    } catch (err) {
      if (client.statusOf(err) === 404) throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `${workloadId(ref)} does not exist`, { backend: workloadId(ref), provider: this.kind })
      throw err
    }
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
    const client = this.client as KubeClient
    const results: CheckResult[] = []
    try {
      const v = await client.json<{ gitVersion?: string }>('GET', '/version', { signal })
      results.push({ ok: true, message: `Kubernetes ${v.gitVersion ?? '?'} answers at ${client.server}${this.credentials ? ` (${this.credentials.source})` : ''}` })
    } catch (err) {
      return [{ ok: false, message: `cannot use the Kubernetes API: ${(err as Error).message}` }]
    }
    try {
      results.push(...(await checkPermissions(client, this.namespaces, signal)))
    } catch (err) {
      results.push({ ok: false, message: `cannot ask the API server which permissions the sidecar has: ${(err as Error).message}` })
    }
    results.push({ ok: true, message: `shared activity: this sidecar writes Leases as "${this.identity}" (give each replica its own identity; keep clocks in sync)` })
    try {
      for (const ns of this.namespaces) {
        for (const kind of WORKLOAD_KINDS) {
          const list = await client.json<WorkloadList>('GET', collectionPath(kind, ns), { signal })
          for (const w of list.items.filter((x) => isAnnotated(x, this.prefix))) {
            const k = { kind, workload: w }
            for (const p of this.facts(k).problems) results.push({ ok: false, message: `${this.idOf(k)}: ${p}` })
          }
        }
      }
    } catch {
      // list() already reported it
    }
    return results
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closer.abort()
    this.listeners.clear()
    if (!this.options.client) await this.client?.close()
  }
}

/** The workload as the owner of its Lease (so deleting the workload deletes the Lease). */
function ownerOf(ref: WorkloadRef, w: Workload): LeaseOwner | undefined {
  const uid = w.metadata.uid
  return uid ? { apiVersion: 'apps/v1', kind: ref.kind === 'deployment' ? 'Deployment' : 'StatefulSet', name: w.metadata.name, uid } : undefined
}

function podKey(pod: Pod): string {
  return `${pod.metadata.namespace ?? ''}/${pod.metadata.name}`
}
