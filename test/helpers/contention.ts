/**
 * The contention harness of issue 21 (docs/plans/issue-21-shared-decisions.md §6): several
 * sidecar processes, each behind its own real Caddy and its own counting, pausable engine proxy
 * (engine-proxy.ts), driving one workload on one real engine — the local swarm (a busybox service
 * published on a 127.0.0.1 host port) or the test control plane with the stand-in kubelet (a
 * Deployment whose pod listens on a 127.0.0.x address). Loopback only.
 *
 * Truth comes from the engine, through the test's own stream (not the proxies): Swarm `/events`
 * (`replicas.new == "0"` is a scale-down, at the event's `timeNano`), Kubernetes a watch on the
 * Deployment (a MODIFIED whose spec.replicas went to 0 is a scale-down, at arrival) and on the
 * namespace's Leases (old protocol's activity). Every other write of the workload (labels,
 * annotations, leases) is noted as an activity write.
 *
 * Definitions (used by every scenario):
 * - needless sleep: a scale-down at s such that some request completed successfully at f ≤ s with
 *   s − f < idle (a request answered after a wake that completes after s does not count). The
 *   margin of a scale-down is s − (the last successful completion before it) − idle.
 * - failed request: any answer ≠ 200 or a transport error, except at a sidecar while it is dead
 *   (counted apart as the dead edge).
 * - engine requests: what each proxy saw, by window.
 */
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { request } from 'undici'
import type { MobyEvent } from '../../sidecar/providers/moby/events.js'
import { type RunningCaddy, startCaddy } from './caddy.js'
import { DOCKER_SOCKET } from './docker.js'
import { type EngineProxy, engineProxy } from './engine-proxy.js'
import { type ControlPlane, replicasOf, workload, workloadUrl } from './k8s.js'
import { freePort, tempDir } from './net.js'
import { type SidecarProcess, startSidecarProcess, stopSidecarProcess } from './sidecar-process.js'
import { TestSwarm, type TestService } from './swarm.js'
import { until } from './wait.js'

export type Engine = 'swarm' | 'kubernetes'

export interface Outcome {
  readonly edge: number
  readonly start: number
  readonly end: number
  readonly status: number | string
  readonly ok: boolean
  /** At a sidecar that was dead at some moment during the request. */
  readonly deadEdge: boolean
}

export interface Edge {
  readonly index: number
  readonly name: string
  readonly proxy: EngineProxy
  readonly caddy: RunningCaddy
  readonly config: string
  proc: SidecarProcess | undefined
  /** Date.now() while dead (killed, not restarted yet). */
  deadSince: number | undefined
  /** Wall-clock offset of the running process (s), for the report. */
  skew: number
}

export interface ClusterOptions {
  readonly engine: Engine
  readonly sidecars: number
  readonly idleMs: number
  /** Kubernetes: the control plane (the stand-in kubelet must run in `namespace`). */
  readonly cp?: ControlPlane
  readonly namespace?: string
}

export interface ScaleDown {
  /** Test-clock ms (Docker event time; Kubernetes watch arrival). */
  readonly at: number
}

export class Cluster {
  readonly edges: Edge[] = []
  readonly outcomes: Outcome[] = []
  readonly downs: ScaleDown[] = []
  readonly ups: number[] = []
  /** Activity writes seen (labels/annotations/leases), test clock. */
  readonly writes: number[] = []
  readonly host: string
  private readonly ended = new AbortController()
  private readonly tmp = tempDir('relight-ct-')
  private swarm: TestSwarm | undefined
  private service: TestService | undefined
  private readonly name: string
  private readonly waiters = new Set<() => void>()

  private constructor(readonly options: ClusterOptions) {
    const run = randomBytes(3).toString('hex')
    this.name = `contention-${run}`
    this.host = `${this.name}.localhost`
  }

  static async start(options: ClusterOptions): Promise<Cluster> {
    const c = new Cluster(options)
    try {
      await c.workload()
      for (let i = 0; i < options.sidecars; i++) await c.addEdge(i)
    } catch (err) {
      await c.close()
      throw err
    }
    return c
  }

  get idle(): number {
    return this.options.idleMs
  }

  private notify(): void {
    for (const w of this.waiters) w()
  }

  private async workload(): Promise<void> {
    if (this.options.engine === 'swarm') {
      const swarm = (this.swarm = new TestSwarm())
      await swarm.importImage('<h1>contention</h1>\n')
      this.service = await swarm.service({ labels: { [`${swarm.run}.domain`]: this.host, [`${swarm.run}.port`]: '8080' }, replicas: 0 })
      const events = await swarm.client.stream<MobyEvent>('/events', { query: { filters: { type: ['service'], service: [this.service.id] } }, signal: this.ended.signal })
      void (async () => {
        try {
          for await (const e of events) {
            if (e.Action !== 'update') continue
            const at = Math.floor((e.timeNano ?? Date.now() * 1e6) / 1e6)
            const to = e.Actor?.Attributes?.['replicas.new']
            if (to === '0') this.downs.push({ at })
            else if (to !== undefined) this.ups.push(at)
            else this.writes.push(at)
            this.notify()
          }
        } catch {
          // closed at the end
        }
      })()
      return
    }
    const cp = this.cp
    const ns = this.ns
    const port = await freePort()
    await cp.ok('POST', workloadUrl('Deployment', ns), workload('Deployment', this.name, ns, port, { 'relight.domain': this.host }))
    const follow = async (path: string, onEvent: (type: string, obj: any) => void) => {
      const body = await cp.stream(path, this.ended.signal)
      let buffer = ''
      try {
        for await (const chunk of body) {
          buffer += chunk.toString()
          let nl: number
          while ((nl = buffer.indexOf('\n')) >= 0) {
            const line = buffer.slice(0, nl)
            buffer = buffer.slice(nl + 1)
            if (!line.trim()) continue
            const e = JSON.parse(line) as { type: string; object: any }
            onEvent(e.type, e.object)
            this.notify()
          }
        }
      } catch {
        // closed at the end
      }
    }
    let replicas: number | undefined
    let activity: string | undefined
    const initial = await cp.ok<{ metadata: { resourceVersion: string } }>('GET', workloadUrl('Deployment', ns, this.name))
    void follow(`${workloadUrl('Deployment', ns)}?watch=true&fieldSelector=metadata.name%3D${this.name}&resourceVersion=${initial.metadata.resourceVersion}`, (type, obj) => {
      if (type !== 'MODIFIED' && type !== 'ADDED') return
      const r = obj?.spec?.replicas ?? 0
      if (replicas !== undefined && r !== replicas) {
        if (r === 0) this.downs.push({ at: Date.now() })
        else this.ups.push(Date.now())
      }
      replicas = r
      const a = JSON.stringify(obj?.metadata?.annotations?.['relight.activity'] ?? null)
      if (activity !== undefined && a !== activity) this.writes.push(Date.now())
      activity = a
    })
    const renews = new Map<string, string>()
    void follow(`/apis/coordination.k8s.io/v1/namespaces/${ns}/leases?watch=true`, (_type, obj) => {
      const key = obj?.metadata?.name as string
      const spec = JSON.stringify(obj?.spec ?? null)
      if (renews.get(key) !== spec) this.writes.push(Date.now())
      renews.set(key, spec)
    })
  }

  private get cp(): ControlPlane {
    if (!this.options.cp) throw new Error('the kubernetes engine needs options.cp')
    return this.options.cp
  }

  private get ns(): string {
    return this.options.namespace ?? 'default'
  }

  private async addEdge(index: number): Promise<void> {
    const name = `edge-${String.fromCharCode(97 + index)}`
    const proxy = await engineProxy(this.options.engine === 'swarm' ? { socket: DOCKER_SOCKET } : { url: this.cp.url, ca: this.cp.ca })
    const listen = await freePort()
    const accessSocket = join(this.tmp.dir, `${name}.sock`)
    let provider: string[]
    if (this.options.engine === 'swarm') {
      provider = [`  swarm: { socket: ${proxy.socket}, label_prefix: ${this.swarm?.run} }`]
    } else {
      const kubeconfig = join(this.tmp.dir, `${name}.kubeconfig`)
      writeFileSync(
        kubeconfig,
        [
          'apiVersion: v1',
          'kind: Config',
          `clusters: [{name: proxy, cluster: {server: "${proxy.url}", certificate-authority: "${proxy.ca}"}}]`,
          `users: [{name: admin, user: {token: "${this.cp.token}"}}]`,
          `contexts: [{name: ${name}, context: {cluster: proxy, user: admin, namespace: ${this.ns}}}]`,
          `current-context: ${name}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      )
      provider = ['  kubernetes:', `    kubeconfig: ${kubeconfig}`, `    namespaces: [${this.ns}]`, `    identity: ${name}`]
    }
    const config = join(this.tmp.dir, `${name}.yaml`)
    writeFileSync(
      config,
      [
        `listen: 127.0.0.1:${listen}`,
        `access_log: unix:${accessSocket}`,
        'log_level: info',
        'min_idle_timeout: 100ms',
        `defaults: { idle_timeout: ${this.options.idleMs}ms, wake_timeout: 60s }`,
        'providers:',
        ...provider,
        '',
      ].join('\n'),
    )
    const proc = await startSidecarProcess(config)
    const caddy = await startCaddy({ sidecar: `127.0.0.1:${listen}`, accessLog: `unix/${accessSocket}` })
    this.edges.push({ index, name, proxy, caddy, config, proc, deadSince: undefined, skew: 0 })
  }

  /** One request through edge i's Caddy, recorded. */
  async hit(i: number): Promise<Outcome> {
    const edge = this.edges[i] as Edge
    const start = Date.now()
    let status: number | string
    try {
      const res = await request(`${edge.caddy.url}/`, { headers: { host: this.host }, headersTimeout: 60_000, bodyTimeout: 60_000 })
      await res.body.text()
      status = res.statusCode === 200 ? 200 : `${res.statusCode} ${String(res.headers['x-relight-reply'] ?? res.headers['x-relight-error'] ?? '')}`.trim()
    } catch (err) {
      status = (err as Error).message
    }
    const end = Date.now()
    const deadEdge = edge.deadSince !== undefined || (edge.proc === undefined ? true : false)
    const outcome: Outcome = { edge: i, start, end, status, ok: status === 200, deadEdge }
    this.outcomes.push(outcome)
    return outcome
  }

  /** Requests one after another through edge i (a pause of `gapMs` between them) until `until` (Date.now()). */
  async traffic(i: number, until: number, gapMs = 100): Promise<void> {
    while (Date.now() < until) {
      await this.hit(i)
      await new Promise((r) => setTimeout(r, gapMs))
    }
  }

  kill(i: number): void {
    const edge = this.edges[i] as Edge
    edge.deadSince = Date.now()
    edge.proc?.child.kill('SIGKILL')
  }

  /** SIGTERM edge i and wait for its exit (it stays dead until `restart`). */
  async stop(i: number): Promise<void> {
    const edge = this.edges[i] as Edge
    edge.deadSince ??= Date.now()
    if (edge.proc) await stopSidecarProcess(edge.proc)
    edge.proc = undefined
  }

  /** Stop (SIGTERM unless already dead) and start edge i again, with `env` (e.g. fakeTimeEnv). */
  async restart(i: number, env?: Record<string, string>, skew = 0): Promise<void> {
    const edge = this.edges[i] as Edge
    if (edge.deadSince === undefined) edge.deadSince = Date.now()
    if (edge.proc) {
      await stopSidecarProcess(edge.proc)
      await edge.proc.exited
    }
    edge.proc = undefined
    edge.proc = await startSidecarProcess(edge.config, [], env ? { env } : {})
    edge.skew = skew
    edge.deadSince = undefined
  }

  async replicas(): Promise<number> {
    if (this.swarm && this.service) return this.swarm.replicas(this.service.id)
    return replicasOf(this.cp, 'Deployment', this.ns, this.name)
  }

  /** Resolve with the first scale-down after `after` (test clock), waiting for it. */
  waitDown(after: number, timeout: number, what = 'a scale-down'): Promise<ScaleDown> {
    return this.waitEvent(() => this.downs.find((d) => d.at > after), timeout, what)
  }

  /** Resolve once `check` answers something, re-checked on every engine event (bounded). */
  waitEvent<T>(check: () => T | undefined, timeout: number, what: string): Promise<T> {
    return waitOnEvents(this.waiters, check, timeout, what)
  }

  /** The engine reports the workload running (at least one task/pod answering through a request). */
  async awake(i = 0): Promise<Outcome> {
    return until(async () => {
      const o = await this.hit(i)
      return o.ok ? o : undefined
    }, 'a request through the edge to succeed', 120_000, 200)
  }

  /** Figures for the scale-downs and requests in [from, to). */
  judge(from: number, to = Number.POSITIVE_INFINITY): Judgement {
    const outs = this.outcomes.filter((o) => o.start >= from && o.start < to)
    const downs = this.downs.filter((d) => d.at >= from && d.at < to)
    const okEnds = this.outcomes.filter((o) => o.ok).map((o) => o.end)
    const needless: number[] = []
    const margins: number[] = []
    for (const d of downs) {
      const before = okEnds.filter((f) => f <= d.at)
      const last = before.length ? Math.max(...before) : undefined
      if (last === undefined) continue
      margins.push(d.at - last - this.idle)
      if (d.at - last < this.idle) needless.push(d.at)
    }
    const failed = outs.filter((o) => !o.ok && !o.deadEdge)
    return {
      requests: outs.length,
      failed: failed.length,
      failures: failed.slice(0, 5).map((o) => `${this.edges[o.edge]?.name}: ${o.status}`),
      deadEdge: outs.filter((o) => !o.ok && o.deadEdge).length,
      scaleDowns: downs.length,
      needless: needless.length,
      minMarginMs: margins.length ? Math.min(...margins) : undefined,
    }
  }

  /**
   * What the sidecars logged about sleeps since `from` (Date.now() of the test; by arrival order:
   * lines carry the sidecar's own wall clock, which faketime shifts): refusal reasons with counts,
   * and which sidecar logged each `asleep`.
   */
  sleepLog(from: number): { refused: Record<string, number>; slept: string[] } {
    const refused: Record<string, number> = {}
    const slept: string[] = []
    for (const e of this.edges) {
      for (const l of e.proc?.lines() ?? []) {
        const seen = (l as { seenAt?: number }).seenAt ?? 0
        if (seen < from) continue
        if (l.msg === 'sleep refused') {
          const reason = String(l.reason ?? '').replace(/\d+/g, 'N')
          refused[reason] = (refused[reason] ?? 0) + 1
        }
        if (l.msg === 'asleep') slept.push(e.name)
      }
    }
    return { refused, slept }
  }

  /**
   * The scale-down attempts (sleepIf) since `from` (test clock), by when their fresh read left
   * for the engine (the sidecar's engine proxy): each scale-down the engine reported (the last
   * write any proxy passed before it, and that sidecar's last GET before its write) and each
   * attempt refused on a changed version (the core's "another sidecar wrote since" line and the
   * sidecar's last GET before it, if within FRESH_READ_MS; Kubernetes refuses from its view
   * without a read: none is listed then). A Kubernetes sidecar that finds the workload at 0
   * also logs `asleep`: such lines are not used.
   */
  sleepReads(from: number): SleepRead[] {
    const reads: SleepRead[] = []
    const lastGet = (e: Edge, before: number) => e.proxy.log.filter((r) => r.class === 'get' && r.at >= from && r.at <= before).at(-1)
    for (const d of this.downs) {
      if (d.at < from) continue
      let scaler: { edge: Edge; at: number } | undefined
      for (const e of this.edges) {
        const w = e.proxy.log.filter((r) => r.class === 'write' && r.at <= d.at + 5).at(-1)
        if (w !== undefined && (scaler === undefined || w.at > scaler.at)) scaler = { edge: e, at: w.at }
      }
      const read = scaler && lastGet(scaler.edge, scaler.at)
      if (scaler && read && scaler.at - read.at <= 1100) reads.push({ edge: scaler.edge.index, at: read.at, slept: true })
    }
    for (const e of this.edges) {
      for (const l of e.proc?.lines() ?? []) {
        const seen = (l as { seenAt?: number }).seenAt ?? 0
        if (seen < from || l.msg !== 'sleep refused' || !/another sidecar wrote since/.test(String(l.reason))) continue
        const read = lastGet(e, seen)
        if (read !== undefined && seen - read.at <= 1100) reads.push({ edge: e.index, at: read.at, slept: false })
      }
    }
    return reads.sort((a, b) => a.at - b.at)
  }

  /** The edges whose sidecar runs now. */
  get live(): Edge[] {
    return this.edges.filter((e) => e.proc !== undefined && e.deadSince === undefined)
  }

  /** Engine requests per edge in [from, to). */
  engineRequests(from: number, to: number): number[] {
    return this.edges.map((e) => e.proxy.counts(from, to).total)
  }

  async close(): Promise<void> {
    this.ended.abort()
    for (const e of this.edges) {
      await e.caddy.close().catch(() => undefined)
      if (e.proc) {
        e.proc.child.kill('SIGKILL')
        await e.proc.exited
      }
      await e.proxy.close().catch(() => undefined)
    }
    if (this.swarm) await this.swarm.cleanup().catch(() => undefined)
    if (this.options.cp) await this.cp.api('DELETE', workloadUrl('Deployment', this.ns, this.name)).catch(() => undefined)
    this.tmp.remove()
  }
}

export interface SleepRead {
  readonly edge: number
  /** When the fresh read reached the edge's engine proxy (test clock). */
  readonly at: number
  readonly slept: boolean
}

export interface Judgement {
  requests: number
  failed: number
  failures: string[]
  deadEdge: number
  scaleDowns: number
  needless: number
  minMarginMs: number | undefined
}

/** Uniform in [a, b). */
/**
 * Resolve once `check` answers something, re-checked whenever the owner calls every function in
 * `waiters` (its engine events); rejects after `timeout` ms or when `signal` aborts.
 */
export function waitOnEvents<T>(waiters: Set<() => void>, check: () => T | undefined, timeout: number, what: string, signal?: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      done()
      reject(new Error(`stopped waiting for ${what}`))
    }
    const run = () => {
      const v = check()
      if (v === undefined) return
      done()
      resolve(v)
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`timed out after ${timeout} ms waiting for ${what}`))
    }, timeout)
    const done = () => {
      clearTimeout(timer)
      waiters.delete(run)
      signal?.removeEventListener('abort', onAbort)
    }
    if (signal?.aborted) return onAbort()
    signal?.addEventListener('abort', onAbort)
    waiters.add(run)
    run()
  })
}

export const uniform = (a: number, b: number): number => a + Math.random() * (b - a)
