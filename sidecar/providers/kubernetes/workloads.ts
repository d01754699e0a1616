/**
 * Deployments, StatefulSets and Pods as the API server returns them, and what the registry
 * knows about them: pure functions, no I/O (provider.ts does the calls).
 */
import type { BackendInfo, BackendSettings, BackendState } from '../../core/provider.js'
import { readLabels } from '../kit/labels.js'

export type WorkloadKind = 'deployment' | 'statefulset'
export const WORKLOAD_KINDS: readonly WorkloadKind[] = ['deployment', 'statefulset']

/** The plural resource name in API paths. */
export const RESOURCE: Record<WorkloadKind, string> = { deployment: 'deployments', statefulset: 'statefulsets' }

export interface ObjectMeta {
  name: string
  namespace?: string
  uid?: string
  resourceVersion?: string
  labels?: Record<string, string>
  annotations?: Record<string, string>
  deletionTimestamp?: string
  ownerReferences?: OwnerReference[]
}

export interface OwnerReference {
  apiVersion?: string
  kind: string
  name: string
  uid?: string
  controller?: boolean
}

export interface LabelSelectorRequirement {
  key: string
  operator: 'In' | 'NotIn' | 'Exists' | 'DoesNotExist'
  values?: string[]
}

export interface LabelSelector {
  matchLabels?: Record<string, string>
  matchExpressions?: LabelSelectorRequirement[]
}

export interface Workload {
  apiVersion?: string
  kind?: string
  metadata: ObjectMeta
  spec?: {
    replicas?: number
    selector?: LabelSelector
    serviceName?: string
    template?: { spec?: { containers?: { name?: string; ports?: { containerPort?: number; protocol?: string }[] }[] } }
  }
  status?: { replicas?: number; readyReplicas?: number }
}

export interface WorkloadList {
  metadata: { resourceVersion?: string }
  items: Workload[]
}

export interface Pod {
  metadata: ObjectMeta
  status?: {
    phase?: string
    podIP?: string
    conditions?: { type: string; status: string }[]
    initContainerStatuses?: ContainerStatus[]
    containerStatuses?: ContainerStatus[]
  }
}

/** The parts of a pod's container status that say it failed to start. */
export interface ContainerStatus {
  name: string
  restartCount?: number
  state?: {
    waiting?: { reason?: string; message?: string }
    terminated?: { exitCode?: number; reason?: string }
  }
  lastState?: { terminated?: { exitCode?: number; reason?: string } }
}

/** Waiting reasons that mean the container will not start by itself soon. */
const START_FAILURES = new Set(['CrashLoopBackOff', 'ErrImagePull', 'ImagePullBackOff', 'CreateContainerConfigError'])

/** A container of the pod that failed to start: `key` names this failure (pod, container, restart), `reason` says it. */
export interface PodFailure {
  readonly key: string
  readonly reason: string
}

export interface PodList {
  metadata: { resourceVersion?: string }
  items: Pod[]
}

/** What is kept of a pod: enough to route to it. */
export interface PodRecord {
  readonly namespace: string
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly ip: string | undefined
  readonly ready: boolean
  /** Marked for deletion (deletionTimestamp): never routed. */
  readonly terminating: boolean
  /** The controller ownerReference (the ReplicaSet or StatefulSet that made the pod), if any. */
  readonly controller: { readonly kind: string; readonly name: string; readonly uid: string | undefined } | undefined
  /** A container that failed to start (exited non-zero, crash-looping, image or config unusable), if any. */
  readonly failure: PodFailure | undefined
}

export interface WorkloadRef {
  readonly kind: WorkloadKind
  readonly namespace: string
  readonly name: string
}

/** Backend ids: `deployment/<namespace>/<name>`, `statefulset/<namespace>/<name>`. */
export function workloadId(ref: WorkloadRef): string {
  return `${ref.kind}/${ref.namespace}/${ref.name}`
}

export function parseWorkloadId(id: string): WorkloadRef | undefined {
  const m = /^(deployment|statefulset)\/([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(id)
  return m ? { kind: m[1] as WorkloadKind, namespace: m[2] as string, name: m[3] as string } : undefined
}

export function workloadPath(ref: WorkloadRef, sub?: 'scale'): string {
  return `/apis/apps/v1/namespaces/${ref.namespace}/${RESOURCE[ref.kind]}/${encodeURIComponent(ref.name)}${sub ? `/${sub}` : ''}`
}

/** The collection path for a kind, in one namespace or all (`undefined`). */
export function collectionPath(kind: WorkloadKind, namespace: string | undefined): string {
  return namespace === undefined ? `/apis/apps/v1/${RESOURCE[kind]}` : `/apis/apps/v1/namespaces/${namespace}/${RESOURCE[kind]}`
}

export function podsPath(namespace: string | undefined): string {
  return namespace === undefined ? '/api/v1/pods' : `/api/v1/namespaces/${namespace}/pods`
}


/** A label selector in the API's query syntax (`app=web,tier in (a,b),!legacy`). */
export function selectorString(selector: LabelSelector | undefined): string {
  const parts: string[] = []
  for (const [k, v] of Object.entries(selector?.matchLabels ?? {})) parts.push(`${k}=${v}`)
  for (const e of selector?.matchExpressions ?? []) {
    switch (e.operator) {
      case 'In':
        parts.push(`${e.key} in (${(e.values ?? []).join(',')})`)
        break
      case 'NotIn':
        parts.push(`${e.key} notin (${(e.values ?? []).join(',')})`)
        break
      case 'Exists':
        parts.push(e.key)
        break
      case 'DoesNotExist':
        parts.push(`!${e.key}`)
        break
    }
  }
  return parts.join(',')
}

/** Whether `labels` match the selector. An empty selector matches nothing here (a workload always has one). */
export function selectorMatches(selector: LabelSelector | undefined, labels: Readonly<Record<string, string>>): boolean {
  const match = selector?.matchLabels ?? {}
  const exprs = selector?.matchExpressions ?? []
  if (Object.keys(match).length === 0 && exprs.length === 0) return false
  for (const [k, v] of Object.entries(match)) if (labels[k] !== v) return false
  for (const e of exprs) {
    const has = Object.hasOwn(labels, e.key)
    const value = labels[e.key]
    switch (e.operator) {
      case 'In':
        if (!has || !(e.values ?? []).includes(value as string)) return false
        break
      case 'NotIn':
        if (has && (e.values ?? []).includes(value as string)) return false
        break
      case 'Exists':
        if (!has) return false
        break
      case 'DoesNotExist':
        if (has) return false
        break
    }
  }
  return true
}

export function podRecord(pod: Pod): PodRecord {
  const terminating = pod.metadata.deletionTimestamp !== undefined
  const ready = !terminating && (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True')
  return {
    namespace: pod.metadata.namespace ?? '',
    name: pod.metadata.name,
    labels: pod.metadata.labels ?? {},
    ip: pod.status?.podIP || undefined,
    ready,
    terminating,
    controller: controllerOf(pod),
    failure: terminating ? undefined : failureOf(pod),
  }
}

/**
 * The first container (init containers first) that failed to start. The key changes with every
 * restart (restartCount) and every new pod (uid), so a failure already there when a wake began is
 * told apart from one after it.
 */
function failureOf(pod: Pod): PodFailure | undefined {
  const statuses = [...(pod.status?.initContainerStatuses ?? []), ...(pod.status?.containerStatuses ?? [])]
  for (const c of statuses) {
    const waiting = c.state?.waiting
    const terminated = c.state?.terminated
    let reason: string | undefined
    if (waiting?.reason !== undefined && START_FAILURES.has(waiting.reason)) {
      const last = c.lastState?.terminated
      const exit = last?.exitCode !== undefined && last.exitCode !== 0 ? ` (last exit code ${last.exitCode})` : ''
      reason = `${waiting.reason}${exit}${waiting.message ? `: ${waiting.message}` : ''}`
    } else if (terminated?.exitCode !== undefined && terminated.exitCode !== 0) {
      reason = `exited with code ${terminated.exitCode}${terminated.reason ? ` (${terminated.reason})` : ''}`
    }
    if (reason !== undefined) return { key: `${pod.metadata.uid ?? pod.metadata.name}/${c.name}/${c.restartCount ?? 0}`, reason: `pod ${pod.metadata.name} container ${c.name}: ${reason}` }
  }
  return undefined
}

function controllerOf(pod: Pod): PodRecord['controller'] {
  const ref = pod.metadata.ownerReferences?.find((o) => o.controller === true)
  return ref ? { kind: ref.kind, name: ref.name, uid: ref.uid } : undefined
}

/**
 * Whether the workload made this pod: a selector alone also matches the pods of another workload
 * whose labels are a superset (a canary Deployment, a hand-made pod). A StatefulSet's pods name
 * it as their controller (same uid); a Deployment's pods are controlled by one of its
 * ReplicaSets, named `<deployment>-<pod-template-hash>` (the label the deployment controller puts
 * on the ReplicaSet and its pods).
 */
export function ownsPod(kind: WorkloadKind, w: Workload, pod: PodRecord): boolean {
  const owner = pod.controller
  if (!owner) return false
  if (kind === 'statefulset') {
    if (owner.kind !== 'StatefulSet') return false
    return w.metadata.uid !== undefined && owner.uid !== undefined ? owner.uid === w.metadata.uid : owner.name === w.metadata.name
  }
  const hash = pod.labels['pod-template-hash']
  return owner.kind === 'ReplicaSet' && hash !== undefined && owner.name === `${w.metadata.name}-${hash}`
}

export function isAnnotated(w: Workload, prefix: string): boolean {
  return (w.metadata.annotations?.[`${prefix}.domain`] ?? '').split(',').some((h) => h.trim() !== '')
}

export interface Facts {
  readonly hosts: string[]
  readonly port: number
  readonly awakeReplicas: number
  readonly service: string
  readonly group?: string
  readonly settings: BackendSettings
  /** Annotations present but unusable, in words. */
  readonly problems: string[]
}

export interface FactOptions {
  readonly prefix: string
  /** Port when neither an annotation nor a single container port says it. */
  readonly fallbackPort: number
}

/** The only container port the pod template declares, if exactly one. */
function singleContainerPort(w: Workload): number | undefined {
  const ports = (w.spec?.template?.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => p.containerPort))
  const distinct = [...new Set(ports.filter((p): p is number => typeof p === 'number'))]
  return distinct.length === 1 ? distinct[0] : undefined
}

/** Read a workload's `<prefix>.*` annotations (same syntax and bounds as Docker labels). */
export function readFacts(w: Workload, options: FactOptions): Facts {
  const annotations = w.metadata.annotations ?? {}
  const facts = readLabels(annotations, options.prefix, ['scale'])
  const problems = [...facts.problems]
  let awakeReplicas = 1
  const replicasText = annotations[`${options.prefix}.replicas`]?.trim()
  if (replicasText !== undefined) {
    const n = Number(replicasText)
    if (/^\d+$/.test(replicasText) && n >= 1 && n <= 1000) awakeReplicas = n
    else problems.push(`${options.prefix}.replicas="${replicasText}" is not a replica count (1-1000); using 1`)
  }
  const serviceText = annotations[`${options.prefix}.service`]?.trim()
  let service = w.spec?.serviceName || w.metadata.name
  if (serviceText !== undefined) {
    if (/^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$/.test(serviceText)) service = serviceText
    else problems.push(`${options.prefix}.service="${serviceText}" is not a Service name`)
  }
  return {
    hosts: facts.hosts,
    port: facts.port ?? singleContainerPort(w) ?? options.fallbackPort,
    awakeReplicas,
    service,
    ...(facts.group !== undefined ? { group: facts.group } : {}),
    settings: facts.settings,
    problems,
  }
}

export interface BackendOptions extends FactOptions {
  readonly kind: WorkloadKind
  readonly route: 'pods' | 'service'
  readonly clusterDomain: string
  /** Provider-level settings (the config block); annotations override them. */
  readonly baseSettings: BackendSettings
  /** Keep it running (auto_sleep_on_start: false and running at the first list). */
  readonly alwaysOn?: boolean
}

/** `10.1.2.3:8080`, `[fd00::1]:8080`. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`
}

export function specReplicas(w: Workload): number {
  return w.spec?.replicas ?? 0
}

/** What the registry knows about an annotated workload and its pods (those its selector matches). */
export function toBackend(w: Workload, pods: readonly PodRecord[], options: BackendOptions, facts: Facts = readFacts(w, options)): BackendInfo {
  const namespace = w.metadata.namespace ?? 'default'
  const ref: WorkloadRef = { kind: options.kind, namespace, name: w.metadata.name }
  const ready = pods.filter((p) => p.ready && p.ip !== undefined)
  const replicas = specReplicas(w)
  const state: BackendState = replicas === 0 ? 'scaled_to_zero' : ready.length > 0 ? 'running' : 'starting'
  const upstreams =
    options.route === 'service'
      ? [`${facts.service}.${namespace}.svc.${options.clusterDomain}:${facts.port}`]
      : ready.map((p) => hostPort(p.ip as string, facts.port)).sort()
  const settings: BackendSettings = { ...options.baseSettings, ...facts.settings, ...(options.alwaysOn ? { always_on: true } : {}) }
  return {
    id: workloadId(ref),
    name: workloadId(ref),
    hosts: facts.hosts,
    state,
    upstreams: replicas === 0 && options.route === 'pods' ? [] : upstreams,
    ...(facts.group !== undefined ? { group: facts.group } : {}),
    settings,
    details: {
      kind: options.kind,
      namespace,
      replicas,
      awake_replicas: facts.awakeReplicas,
      ready_pods: ready.length,
      port: facts.port,
      route: options.route,
    },
  }
}
