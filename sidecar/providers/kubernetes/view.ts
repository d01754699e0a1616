/**
 * One engine view per Kubernetes provider (docs/plans/issue-21-shared-decisions.md §4.2): the
 * informers (namespaces × {deployments, statefulsets, pods}) feed this cache; list() answers from
 * it while it is live, wake and sleep wait on it (`waitFor`) instead of opening a pod list+watch of
 * their own, and the shared-decision port reads its observations from it.
 *
 * Observations: the `<prefix>.activity` annotation is the workload's activity token; when its value
 * changes, `tokenSeenAt` = now on the monotonic clock (core/clock.ts). A reconnect (re-list) resets
 * every `tokenSeenAt` of the collection to now. Own writes (the token is known before the PATCH is
 * sent, the resourceVersion once it answers) update the cache but are reported as `own`, so the
 * provider raises no upsert for them.
 */
import { RelightError } from '../../core/errors.js'
import type { Observation } from '../../core/shared.js'
import {
  isAnnotated,
  ownsPod,
  type Pod,
  podRecord,
  type PodRecord,
  selectorMatches,
  specReplicas,
  type Workload,
  type WorkloadKind,
  workloadId,
} from './workloads.js'

/** How many own tokens and resourceVersions are remembered per workload. */
const OWN_MEMORY = 8

export interface WorkloadEntry {
  readonly kind: WorkloadKind
  workload: Workload
  /** The `<prefix>.activity` annotation, undefined before the first write. */
  token: string | undefined
  /** Monotonic ms when this view first saw `token` (reset on reconnect). */
  tokenSeenAt: number
  /** The token's `ago_ms` (0 when unknown). */
  agoMs: number
  /** resourceVersions our own PATCHes answered with (newest last). */
  readonly ownVersions: string[]
}

/** A write this sidecar is about to send: its MODIFIED may arrive before the PATCH answers. */
export interface OwnWrite {
  readonly token: string
  /** The replica count written; undefined: unchanged (a token-only write). */
  readonly replicas: number | undefined
  /** The count the cache held when the write was sent (for a token-only write). */
  readonly before: number
  /** Set once a MODIFIED matched it. */
  matched: boolean
}

/** What a workload event meant: the provider emits an upsert only for `foreign`. */
export type Change = 'own' | 'foreign' | 'removed' | 'ignored'

interface Waiter {
  readonly id: string
  readonly check: () => boolean
}

/** `v1 <identity> <16 hex random> <ago_ms>`: the last field, or 0. */
export function agoOf(token: string | undefined): number {
  if (token === undefined) return 0
  const last = token.trim().split(/\s+/).pop() ?? ''
  const n = Number(last)
  return /^\d+$/.test(last) && Number.isFinite(n) ? n : 0
}

export class KubernetesView {
  readonly entries = new Map<string, WorkloadEntry>()
  readonly pods = new Map<string, PodRecord>()
  /** Collections (`<kind>@<namespace>`) whose informer is connected and listed. */
  private readonly connectedKeys = new Set<string>()
  private readonly expected = new Map<string, OwnWrite[]>()
  private readonly waiters = new Set<Waiter>()
  private readonly reconnectListeners = new Set<() => void>()
  private readonly distrustListeners = new Set<() => void>()
  private collections = 0
  private everLive = false

  constructor(
    private readonly prefix: string,
    readonly now: () => number,
  ) {}

  get annotation(): string {
    return `${this.prefix}.activity`
  }

  /** Declare the collections the informers will follow (live once every one of them is listed). */
  expect(collections: number): void {
    this.collections = collections
  }

  /** Whether an informer feeds this view at all (else operations use the API directly). */
  get started(): boolean {
    return this.collections > 0
  }

  get live(): boolean {
    return this.collections > 0 && this.connectedKeys.size >= this.collections
  }

  /** An informer (re)connected (true: listed and watching) or failed (false). */
  connected(key: string, live: boolean): void {
    const was = this.live
    if (live) this.connectedKeys.add(key)
    else this.connectedKeys.delete(key)
    if (!was && this.live) {
      // Everything that happened while we were not following is unknown: count from now.
      const now = this.now()
      for (const e of this.entries.values()) e.tokenSeenAt = now
      if (this.everLive) for (const l of this.reconnectListeners) l()
      this.everLive = true
    }
    this.settleWaiters()
  }

  /**
   * The view is not to be trusted (a fresh read failed or was slow: a frozen engine keeps its
   * watches open and silent): not live, which blocks sleeps, until the informers listed again
   * (the listener restarts them).
   */
  distrust(): void {
    if (this.connectedKeys.size === 0) return
    this.connectedKeys.clear()
    for (const l of this.distrustListeners) l()
  }

  onDistrust(listener: () => void): void {
    this.distrustListeners.add(listener)
  }

  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener)
    return () => this.reconnectListeners.delete(listener)
  }

  /** A full list of one workload collection: the truth for it. Entries keep their token times when the token did not change. */
  relistWorkloads(kind: WorkloadKind, inScope: (namespace: string | undefined) => boolean, items: readonly Workload[]): void {
    const fresh = new Set<string>()
    for (const w of items) {
      if (!isAnnotated(w, this.prefix)) continue
      const id = workloadId({ kind, namespace: w.metadata.namespace ?? 'default', name: w.metadata.name })
      fresh.add(id)
      this.put(kind, id, w)
    }
    for (const [id, e] of this.entries) if (e.kind === kind && inScope(e.workload.metadata.namespace) && !fresh.has(id)) this.entries.delete(id)
    this.settleWaiters()
  }

  relistPods(inScope: (namespace: string | undefined) => boolean, items: readonly Pod[]): void {
    for (const [key, p] of this.pods) if (inScope(p.namespace)) this.pods.delete(key)
    for (const pod of items) this.pods.set(podKey(pod), podRecord(pod))
    this.settleWaiters()
  }

  /** Pods read by a fresh list (refresh): the cache follows them until the informer says more. */
  putPods(records: readonly PodRecord[]): void {
    for (const p of records) this.pods.set(`${p.namespace}/${p.name}`, p)
    this.settleWaiters()
  }

  /** One workload event from an informer. */
  workloadEvent(kind: WorkloadKind, type: 'ADDED' | 'MODIFIED' | 'DELETED', w: Workload): { id: string; change: Change } {
    const id = workloadId({ kind, namespace: w.metadata.namespace ?? 'default', name: w.metadata.name })
    if (type === 'DELETED' || !isAnnotated(w, this.prefix)) {
      const had = this.entries.delete(id)
      this.expected.delete(id)
      this.settleWaiters([id])
      return { id, change: had || type === 'DELETED' ? 'removed' : 'ignored' }
    }
    const own = this.isOwn(id, w)
    this.put(kind, id, w)
    this.settleWaiters([id])
    return { id, change: own ? 'own' : 'foreign' }
  }

  /** One pod event; answers the workloads whose routing it changed (ready/address), for upserts. */
  podEvent(type: 'ADDED' | 'MODIFIED' | 'DELETED', pod: Pod): string[] {
    const key = podKey(pod)
    const before = this.pods.get(key)
    const record = podRecord(pod)
    if (type === 'DELETED') this.pods.delete(key)
    else this.pods.set(key, record)
    // The workloads that made this pod: only their waiters are asked again (a pod event on a big
    // cluster must not cost waiters × pods).
    const ids: string[] = []
    for (const [id, e] of this.entries) {
      const w = e.workload
      if ((w.metadata.namespace ?? 'default') !== record.namespace) continue
      if (!selectorMatches(w.spec?.selector, record.labels)) continue
      if (!ownsPod(e.kind, w, record) && !(before && ownsPod(e.kind, w, before))) continue
      ids.push(id)
    }
    this.settleWaiters(ids)
    if (type !== 'DELETED' && before && before.ready === record.ready && before.ip === record.ip && before.terminating === record.terminating) return []
    return ids
  }

  /** The cached pods the workload made. */
  podsOf(e: WorkloadEntry): PodRecord[] {
    const w = e.workload
    const ns = w.metadata.namespace ?? 'default'
    const out: PodRecord[] = []
    for (const p of this.pods.values()) if (p.namespace === ns && selectorMatches(w.spec?.selector, p.labels) && ownsPod(e.kind, w, p)) out.push(p)
    return out
  }

  observe(id: string): Observation | undefined {
    const e = this.entries.get(id)
    if (!e) return undefined
    return { version: e.token ?? 'none', seenAt: e.tokenSeenAt, agoMs: e.agoMs, live: this.live }
  }

  /** Before a PATCH is sent: its MODIFIED is ours even if it arrives before the answer. */
  ownWrite(id: string, token: string, replicas: number | undefined): OwnWrite {
    const e = this.entries.get(id)
    const write: OwnWrite = { token, replicas, before: e ? specReplicas(e.workload) : -1, matched: false }
    const list = this.expected.get(id) ?? []
    list.push(write)
    this.expected.set(id, list)
    return write
  }

  /**
   * The PATCH answered (`answer`) or failed (undefined). The answer updates the cache only when
   * no event of the write came first (an event after it may be newer than the answer).
   */
  settle(kind: WorkloadKind, id: string, write: OwnWrite, answer: Workload | undefined): void {
    const list = this.expected.get(id)
    if (list) {
      const i = list.indexOf(write)
      if (i >= 0) list.splice(i, 1)
      if (list.length === 0) this.expected.delete(id)
    }
    if (!answer) return
    const rv = answer.metadata.resourceVersion
    const e = this.entries.get(id)
    if (rv !== undefined && e) remember(e.ownVersions, rv)
    if (!write.matched && (e || !this.started)) this.put(kind, id, answer, rv)
    this.settleWaiters([id])
  }

  /** A fresh read (sleepIf, refresh): the cache follows it; a token change counts as seen now. */
  read(kind: WorkloadKind, id: string, w: Workload): WorkloadEntry {
    return this.put(kind, id, w)
  }

  /**
   * Resolve with `pick`'s first defined answer, evaluated now and after every change of the
   * cache; rejects when `signal` aborts (its reason).
   */
  waitFor<T>(id: string, pick: (entry: WorkloadEntry | undefined, pods: readonly PodRecord[]) => T | undefined, signal: AbortSignal): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const evaluate = (): T | undefined => {
        const e = this.entries.get(id)
        return pick(e, e ? this.podsOf(e) : [])
      }
      const first = evaluate()
      if (first !== undefined) return resolve(first)
      if (signal.aborted) return reject(abortReason(signal))
      const waiter: Waiter = {
        id,
        check: () => {
          const value = evaluate()
          if (value === undefined) return false
          done()
          resolve(value)
          return true
        },
      }
      const onAbort = () => {
        done()
        reject(abortReason(signal))
      }
      const done = () => {
        this.waiters.delete(waiter)
        signal.removeEventListener('abort', onAbort)
      }
      this.waiters.add(waiter)
      signal.addEventListener('abort', onAbort, { once: true })
    })
  }

  /** Waiters waiting now (tests). */
  get waiting(): number {
    return this.waiters.size
  }

  /** Ask the waiters again: those of `ids`, or all (a list, a reconnect). */
  private settleWaiters(ids?: readonly string[]): void {
    for (const w of [...this.waiters]) if (ids === undefined || ids.includes(w.id)) w.check()
  }

  private isOwn(id: string, w: Workload): boolean {
    const e = this.entries.get(id)
    const rv = w.metadata.resourceVersion
    if (e && rv !== undefined && e.ownVersions.includes(rv)) return true
    const token = w.metadata.annotations?.[this.annotation]
    const list = this.expected.get(id)
    if (!list) return false
    const replicas = specReplicas(w)
    for (const write of list) {
      if (write.matched || write.token !== token) continue
      if ((write.replicas === undefined ? write.before : write.replicas) !== replicas) continue
      write.matched = true
      if (rv !== undefined && e) remember(e.ownVersions, rv)
      return true
    }
    return false
  }

  private put(kind: WorkloadKind, id: string, w: Workload, ownRv?: string): WorkloadEntry {
    const token = w.metadata.annotations?.[this.annotation]
    const e = this.entries.get(id)
    if (!e) {
      const entry: WorkloadEntry = { kind, workload: w, token, tokenSeenAt: this.now(), agoMs: agoOf(token), ownVersions: ownRv ? [ownRv] : [] }
      this.entries.set(id, entry)
      return entry
    }
    e.workload = w
    if (e.token !== token) {
      e.token = token
      e.tokenSeenAt = this.now()
      e.agoMs = agoOf(token)
    }
    return e
  }
}

function remember(list: string[], value: string): void {
  if (list.includes(value)) return
  list.push(value)
  if (list.length > OWN_MEMORY) list.shift()
}

function podKey(pod: Pod): string {
  return `${pod.metadata.namespace ?? ''}/${pod.metadata.name}`
}

function abortReason(signal: AbortSignal): unknown {
  const reason: unknown = signal.reason
  return reason instanceof Error ? reason : new RelightError('RELIGHT_ERR_ABORTED', 'kubernetes wait aborted', { provider: 'kubernetes' })
}
