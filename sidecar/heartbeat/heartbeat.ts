/**
 * Multi-node heartbeat (caddy-relight-podman's format). Every `interval` this node POSTs to the
 * router, with `Authorization: Bearer <secret>`:
 *
 *   { "node_ip": "203.0.113.7",
 *     "containers": [ { "domain": "app.example.com", "status": "running", "cpu_pct": 1.5, "mem_mb": 42.1,
 *                       "domains": ["app.example.com"], "provider": "podman", "name": "app" } ],
 *     "total_cpu_pct": 1.5, "total_mem_mb": 42.1 }
 *
 * One entry per routed backend of every provider. `status` is running | paused | checkpointed |
 * stopped. Figures come from one-shot `stats()` calls; they are 0 for a backend that is not
 * running or paused, or whose provider has no stats. It runs on its own timer, never on the
 * request path; failures are logged with backoff.
 */
import type { Logger } from 'pino'
import { request } from 'undici'
import { mapLimit } from '../core/map-limit.js'
import { plainHttpToRemote } from '../core/hosts.js'
import { type BackendInfo, type BackendState, type Provider, providerId, round1 } from '../core/provider.js'
import type { HeartbeatConfig } from './config.js'
import { atPowerOfTwo } from '../core/log-throttle.js'
import { type Deadline, withDeadline } from '../core/timers.js'

export type HeartbeatStatus = 'running' | 'paused' | 'checkpointed' | 'stopped'

export interface HeartbeatContainer {
  domain: string
  status: HeartbeatStatus
  cpu_pct: number
  mem_mb: number
  /** Every host the backend declares (`domain` is the first). */
  domains: string[]
  provider: string
  name: string
}

export interface HeartbeatPayload {
  node_ip: string
  containers: HeartbeatContainer[]
  total_cpu_pct: number
  total_mem_mb: number
}

/** What the heartbeat reads from each backend (the registry's Backend satisfies it). */
export interface HeartbeatBackend {
  readonly provider: Provider
  readonly info: BackendInfo
}

const STATS_CONCURRENCY = 8
const MAX_BACKOFF_MS = 5 * 60_000

export function heartbeatStatus(state: BackendState): HeartbeatStatus {
  switch (state) {
    case 'running':
    case 'starting':
      return 'running'
    case 'paused':
      return 'paused'
    case 'checkpointed':
    case 'suspended':
      return 'checkpointed'
    default:
      return 'stopped'
  }
}

/** Origin and path only: credentials or tokens in the URL stay out of the log. */
function redactUrl(url: string): string {
  const u = new URL(url)
  return `${u.origin}${u.pathname}`
}


export class Heartbeat {
  private timer: NodeJS.Timeout | undefined
  private readonly closer = new AbortController()
  private failures = 0
  private statsWarned = new Set<string>()
  private closed = false
  /** Delivered heartbeats and failed attempts, for status and tests. */
  readonly counters = { sent: 0, failed: 0 }

  constructor(
    private readonly config: HeartbeatConfig,
    private readonly backends: () => Iterable<HeartbeatBackend>,
    private readonly log: Logger,
  ) {}

  /** Send one heartbeat now, then one every `interval` (longer after failures). */
  start(): void {
    if (this.closed || this.timer) return
    if (plainHttpToRemote(this.config.url)) this.log.warn({ url: redactUrl(this.config.url) }, 'heartbeat.url is plain http to another host: the bearer secret crosses the network unencrypted; use https')
    this.schedule(0)
  }

  private schedule(ms: number): void {
    if (this.closed) return
    this.timer = setTimeout(() => {
      void this.beat().finally(() => {
        const next = this.failures === 0 ? this.config.interval : Math.min(this.config.interval * 2 ** this.failures, Math.max(this.config.interval, MAX_BACKOFF_MS))
        this.schedule(next)
      })
    }, ms)
    this.timer.unref()
  }

  /** Gather every routed backend's status and figures. */
  async collect(signal: AbortSignal): Promise<HeartbeatPayload> {
    const list = [...this.backends()].filter((b) => b.info.hosts.length > 0)
    const containers = await mapLimit(list, STATS_CONCURRENCY, (b) => this.entry(b, signal))
    let cpu = 0
    let mem = 0
    for (const c of containers) {
      cpu += c.cpu_pct
      mem += c.mem_mb
    }
    return { node_ip: this.config.node_ip, containers, total_cpu_pct: round1(cpu), total_mem_mb: round1(mem) }
  }

  private async entry(backend: HeartbeatBackend, signal: AbortSignal): Promise<HeartbeatContainer> {
    const { info, provider } = backend
    const status = heartbeatStatus(info.state)
    let cpu_pct = 0
    let mem_mb = 0
    if ((status === 'running' || status === 'paused') && provider.stats && !signal.aborted) {
      try {
        const s = await provider.stats(info.id, signal)
        cpu_pct = round1(s.cpu_pct)
        mem_mb = round1(s.mem_mb)
      } catch (err) {
        const key = `${providerId(provider)}:${info.id}`
        if (!this.statsWarned.has(key)) {
          this.statsWarned.add(key)
          this.log.warn({ backend: info.name, provider: providerId(provider), err: (err as Error).message }, 'stats failed; reporting 0 (logged once per backend)')
        }
      }
    }
    // A router routes by name: prefer an exact one over `*.wildcard` or a bare first label.
    const domain = info.hosts.find((h) => h.includes('.') && !h.includes('*')) ?? (info.hosts[0] as string)
    return { domain, status, cpu_pct, mem_mb, domains: [...info.hosts], provider: providerId(provider), name: info.name }
  }

  /** Collect and send one heartbeat. Resolves true when the router accepted it (2xx). */
  async beat(): Promise<boolean> {
    if (this.closed) return false
    // Stats and the POST each get `timeout`: slow stats report 0 for the late backends (entry()
    // stops asking once its signal aborts) and never cost the router its heartbeat.
    const statsBound = withDeadline(this.closer.signal, this.config.timeout)
    let postBound: Deadline | undefined
    let signal = statsBound.signal
    try {
      const payload = await this.collect(statsBound.signal)
      postBound = withDeadline(this.closer.signal, this.config.timeout)
      signal = postBound.signal
      const res = await request(this.config.url, {
        method: 'POST',
        signal,
        headers: {
          'content-type': 'application/json',
          authorization: `Bearer ${this.config.secret}`,
          'user-agent': 'relight-sidecar heartbeat',
        },
        body: JSON.stringify(payload),
      })
      await res.body.dump()
      if (res.statusCode < 200 || res.statusCode >= 300) throw new Error(`router answered HTTP ${res.statusCode}`)
      if (this.failures > 0) this.log.info({ after_failures: this.failures }, 'heartbeat delivered again')
      this.failures = 0
      this.counters.sent++
      return true
    } catch (err) {
      if (this.closed) return false
      this.failures++
      this.counters.failed++
      // Logged on the 1st, 2nd, 4th, 8th… consecutive failure; the attempts back off too.
      if (atPowerOfTwo(this.failures)) {
        this.log.warn({ url: redactUrl(this.config.url), failures: this.failures, err: signal.aborted ? `no answer within ${this.config.timeout} ms` : (err as Error).message }, 'heartbeat failed')
      }
      return false
    } finally {
      statsBound.clear()
      postBound?.clear()
    }
  }

  /** Stop the timer and abort a heartbeat in progress. Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    if (this.timer) clearTimeout(this.timer)
    this.closer.abort()
  }
}
