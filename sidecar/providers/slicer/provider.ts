import type { Logger } from 'pino'
import { RelightError, isRelightError, throwIfAborted } from '../../core/errors.js'
import { plainHttpToRemote } from '../../core/hosts.js'
import type { BackendInfo, CheckResult, Provider, ProviderEvent, SleepMode } from '../../core/provider.js'
import { paths, SlicerClient, type SlicerNode } from './client.js'
import type { SlicerConfig } from './config.js'
import { type KnownNode, nodeGroup, nodeToBackend } from './nodes.js'
import { SLICER_SLEEP_MODES } from './descriptor.js'
import { sleepNode } from './vm-sleep.js'
import { wakeNode } from './vm-wake.js'

export interface SlicerProviderOptions {
  /** Relative socket paths resolve against this (the config file's directory). */
  readonly baseDir?: string
}

/**
 * SlicerVM microVMs, routed by tag (caddy-relight-slicervm parity). One backend per node that
 * carries at least one host tag, in `host_group` when set. Sleep: pause (resume), suspend
 * (restore?wait=agent), stop (shutdown, relaunch; persistent VMs only). After a wake the agent
 * health endpoint must answer 200 before the core probes the app.
 *
 * Freshness: `relistOnMiss` (a VM created a moment ago is routable on its first request; the
 * registry coalesces re-lists to one a second), the registry's periodic re-list, and
 * a `remove` event when an operation finds the node gone.
 */
/** Slicer hostnames as Slicer makes them (`apps-1`); anything else is not put in a URL path. */
const SAFE_HOSTNAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/

export class SlicerProvider implements Provider {
  readonly kind = 'slicer'
  readonly id: string
  readonly resyncInterval: number | undefined
  readonly sleepModes: readonly SleepMode[] = SLICER_SLEEP_MODES
  readonly relistOnMiss = true
  readonly client: SlicerClient

  private known = new Map<string, KnownNode>()
  private readonly lastSleep = new Map<string, SleepMode>()
  private readonly listeners = new Set<(event: ProviderEvent) => void>()
  private readonly warned = new Set<string>()
  private closed = false
  private listing: Promise<BackendInfo[]> | undefined
  /** When the last wake or sleep of each node ended. */
  private readonly opEndedAt = new Map<string, number>()

  constructor(
    readonly config: SlicerConfig & { readonly id?: string; readonly resync_interval?: number },
    private readonly log: Logger,
    options: SlicerProviderOptions = {},
  ) {
    this.id = config.id ?? this.kind
    this.resyncInterval = config.resync_interval
    this.client = new SlicerClient(config.url, config.token, options.baseDir)
    if (config.token !== undefined && plainHttpToRemote(config.url)) {
      log.warn({ url: this.client.endpoint.display }, 'providers.slicer.url is plain http to another host: the token crosses the network unencrypted; use https or the unix socket')
    }
  }

  /**
   * Every node of `host_group` (or every node) with at least one host tag. Concurrent calls
   * share one `GET /nodes`. A wake or sleep that ended after the list was sent keeps its own
   * result: the list is older than what it did.
   */
  async list(signal: AbortSignal): Promise<BackendInfo[]> {
    this.assertOpen()
    throwIfAborted(signal)
    this.listing ??= this.listNow(signal).finally(() => {
      this.listing = undefined
    })
    return this.listing
  }

  private async listNow(signal: AbortSignal): Promise<BackendInfo[]> {
    const sentAt = Date.now()
    const nodes = await this.client.listNodes(signal)
    const known = new Map<string, KnownNode>()
    for (const node of nodes) {
      if (this.config.host_group !== undefined && nodeGroup(node) !== this.config.host_group) continue
      if (!SAFE_HOSTNAME.test(node.hostname)) {
        // It goes into API paths: `..` or `.` would be resolved away and address another endpoint.
        this.warnOnce(node.hostname, `node hostname ${JSON.stringify(node.hostname)} is not a plain host name; not routed`)
        continue
      }
      const view = nodeToBackend(node, this.config, this.lastSleep.get(node.hostname))
      for (const w of view.warnings) this.warnOnce(node.hostname, w)
      if (view.info.hosts.length === 0) continue // not ours to route, so not ours to put to sleep
      const previous = this.known.get(node.hostname)
      const newer = (this.opEndedAt.get(node.hostname) ?? -Infinity) > sentAt
      const info = newer && previous ? { ...view.info, state: previous.info.state } : view.info
      known.set(node.hostname, { node, info, persistent: view.persistent })
    }
    for (const id of this.lastSleep.keys()) {
      const k = known.get(id)
      if (!k || k.info.state === 'running') this.lastSleep.delete(id)
    }
    this.known = known
    return [...known.values()].map((k) => k.info)
  }

  watch(onEvent: (event: ProviderEvent) => void, signal: AbortSignal): void {
    if (signal.aborted || this.closed) return
    this.listeners.add(onEvent)
    signal.addEventListener(
      'abort',
      () => this.listeners.delete(onEvent),
      { once: true },
    )
  }

  async wake(id: string, signal: AbortSignal): Promise<BackendInfo> {
    const known = await this.find(id, signal)
    await this.guard(id, () => wakeNode(this.client, known, this.lastSleep.get(id), signal, () => this.find(id, signal, true)))
    this.lastSleep.delete(id)
    this.setState(id, 'running')
    // A relaunch lists again (a new IP is known by then); otherwise the address is the node's.
    return { ...(this.known.get(id) ?? known).info, state: 'running' }
  }

  async sleep(id: string, mode: SleepMode, signal: AbortSignal): Promise<void> {
    if (!SLICER_SLEEP_MODES.includes(mode)) {
      throw new RelightError('RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED', `slicer VMs sleep with pause, suspend or stop, not ${mode}`, { backend: id, provider: this.kind })
    }
    const known = await this.find(id, signal)
    await this.guard(id, () => sleepNode(this.client, known, mode, signal, () => this.find(id, signal, true)))
    this.lastSleep.set(id, mode)
    this.setState(id, mode === 'pause' ? 'paused' : mode === 'suspend' ? 'suspended' : 'stopped')
  }

  async check(signal: AbortSignal): Promise<CheckResult[]> {
    const where = this.client.endpoint.display
    const health = await this.client.call('GET', '/healthz', signal).catch((err: unknown) => err)
    if (health instanceof Error) {
      const hint = isRelightError(health, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE') ? ': is slicerd running, and is providers.slicer.url right?' : ''
      return [{ ok: false, message: `${health.message}${hint}` }]
    }
    let nodes: SlicerNode[]
    try {
      nodes = await this.client.listNodes(signal)
    } catch (err) {
      return [{ ok: false, message: (err as Error).message }]
    }
    const results: CheckResult[] = [{ ok: true, message: `Slicer API at ${where} answers and accepts the token` }]
    const group = this.config.host_group
    if (group !== undefined) {
      const g = await this.client.call('GET', paths.groupNodes(group), signal).catch((err: unknown) => err as Error)
      if (!(g instanceof Error) && g.status === 404) {
        results.push({ ok: false, message: `host group ${group} does not exist on this Slicer host (providers.slicer.host_group; it must be in the Slicer YAML config)` })
      }
    }
    const inGroup = group === undefined ? nodes : nodes.filter((n) => nodeGroup(n) === group)
    const routed = inGroup.map((n) => nodeToBackend(n, this.config, undefined)).filter((v) => v.info.hosts.length > 0)
    results.push({
      ok: true,
      message: `${inGroup.length} node(s)${group !== undefined ? ` in host group ${group}` : ''}, ${routed.length} with host tags: ${routed.map((v) => `${v.info.name} [${v.info.hosts.join(', ')}]`).join('; ') || 'none yet'}`,
    })
    for (const v of routed) for (const w of v.warnings) results.push({ ok: true, message: `note: ${v.info.name}: ${w}` })
    return results
  }

  /** Release connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.listeners.clear()
    await this.client.close()
  }

  /** The node from the last list; listed again once when unknown (or when `fresh`). */
  private async find(id: string, signal: AbortSignal, fresh = false): Promise<KnownNode> {
    this.assertOpen()
    let known = fresh ? undefined : this.known.get(id)
    if (!known) {
      await this.list(signal)
      known = this.known.get(id)
    }
    if (!known) {
      if (fresh) this.emit({ type: 'remove', id })
      throw new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `Slicer has no routed node ${id}${this.config.host_group ? ` in host group ${this.config.host_group}` : ''}`, { backend: id, provider: this.kind })
    }
    return known
  }

  /** Run an operation; a node found gone is forgotten and reported removed. */
  private async guard(id: string, op: () => Promise<void>): Promise<void> {
    try {
      await op()
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_BACKEND_NOT_FOUND') && this.known.delete(id)) {
        this.log.info({ node: id }, 'node is gone from Slicer')
        this.emit({ type: 'remove', id })
      }
      throw err
    }
  }

  private setState(id: string, state: BackendInfo['state']): void {
    this.opEndedAt.set(id, Date.now())
    const k = this.known.get(id)
    if (k) this.known.set(id, { ...k, info: { ...k.info, state } })
    this.emit({ type: 'state', id, state })
  }

  private emit(event: ProviderEvent): void {
    for (const l of this.listeners) l(event)
  }

  private warnOnce(node: string, message: string): void {
    const k = `${node}\u0000${message}`
    if (this.warned.has(k)) return
    this.warned.add(k)
    this.log.warn({ node }, message)
  }

  private assertOpen(): void {
    if (this.closed) throw new RelightError('RELIGHT_ERR_CLOSED', 'slicer provider is closed', { provider: this.kind })
  }
}
