/**
 * DNS for stateful upstreams. `host` names the fresh deployment (a Kubernetes service, a
 * compose service, an /etc/hosts name): a rollout repoints it, and the sidecar must follow
 * without a Caddy reload. Names are resolved in the background, kept for their TTL (capped),
 * and read synchronously on the hot path; only the very first request for a name that has
 * never resolved waits for DNS.
 */
import { EventEmitter } from 'node:events'
import { promises as dns } from 'node:dns'
import { isIP } from 'node:net'
import type { Logger } from 'pino'

export interface ResolvedAddress {
  /** IPv4 or IPv6 literal. */
  readonly address: string
  /** Seconds the answer may be cached; Infinity when the source does not say (hosts file). */
  readonly ttl: number
}

/** Where addresses come from. Tests inject their own; the default is `SystemResolver`. */
export interface Resolver {
  resolve(name: string): Promise<ResolvedAddress[]>
}

/**
 * DNS A and AAAA records with their TTLs (node:dns `resolve4`/`resolve6`), falling back to the
 * system's `getaddrinfo` (`lookup`: /etc/hosts, mDNS…) when DNS has no answer. IP literals
 * resolve to themselves; `localhost` and `*.localhost` never leave the machine (RFC 6761), so
 * they go to `lookup` directly. With explicit `servers` (config `dns.servers`) only those are
 * asked: no fallback to the system's resolver.
 */
export class SystemResolver implements Resolver {
  private readonly dns = new dns.Resolver({ timeout: 2000, tries: 2 })
  private readonly fallback: boolean

  constructor(servers?: readonly string[]) {
    if (servers !== undefined && servers.length > 0) this.dns.setServers([...servers])
    this.fallback = servers === undefined || servers.length === 0
  }

  async resolve(name: string): Promise<ResolvedAddress[]> {
    if (isIP(name) !== 0) return [{ address: name, ttl: Infinity }]
    if (name !== 'localhost' && !name.endsWith('.localhost')) {
      const [v4, v6] = await Promise.allSettled([this.dns.resolve4(name, { ttl: true }), this.dns.resolve6(name, { ttl: true })])
      const found: ResolvedAddress[] = []
      if (v4.status === 'fulfilled') for (const r of v4.value) found.push({ address: r.address, ttl: r.ttl })
      if (v6.status === 'fulfilled') for (const r of v6.value) found.push({ address: r.address, ttl: r.ttl })
      if (found.length > 0) return found
      if (!this.fallback) throw v4.status === 'rejected' ? v4.reason : new Error(`${name}: no A or AAAA records`)
    }
    const all = await dns.lookup(name, { all: true })
    return all.map((a) => ({ address: a.address, ttl: Infinity }))
  }
}

interface Entry {
  /** Addresses ready to dial: `1.2.3.4` or `[fd00::1]`. Empty until the first answer. */
  dial: string[]
  rr: number
  maxTtl: number
  first: Promise<void>
  timer: NodeJS.Timeout | undefined
  failures: number
}

/**
 * Resolved names kept fresh by timers. `pick(name)` is the hot path: a Map lookup and an
 * index. Emits `change` (name, addresses) when the answer for a name changes, `error` is never
 * emitted (failures are logged; the last good answer is kept).
 */
export class NameCache extends EventEmitter {
  private readonly entries = new Map<string, Entry>()
  private closed = false
  private readonly minTtl: number
  private readonly retry: number

  constructor(
    private readonly resolver: Resolver,
    private readonly log: Logger,
    options: { minTtl?: number; retry?: number } = {},
  ) {
    super()
    this.minTtl = options.minTtl ?? 1000
    this.retry = options.retry ?? 2000
  }

  /** Start resolving `name` (idempotent). `maxTtl` ms caps its TTL; the smallest cap asked for wins. */
  watch(name: string, maxTtl: number): void {
    const known = this.entries.get(name)
    if (known) {
      known.maxTtl = Math.min(known.maxTtl, maxTtl)
      return
    }
    const entry: Entry = { dial: [], rr: 0, maxTtl, first: Promise.resolve(), timer: undefined, failures: 0 }
    this.entries.set(name, entry)
    entry.first = this.refresh(name, entry)
  }

  /** An address to dial for `name` (rotating among several), or undefined if none is known yet. */
  pick(name: string): string | undefined {
    const entry = this.entries.get(name)
    if (entry === undefined) return undefined
    const n = entry.dial.length
    if (n === 0) return undefined
    if (n === 1) return entry.dial[0]
    entry.rr = (entry.rr + 1) % n
    return entry.dial[entry.rr]
  }

  /** Resolves once the first lookup of `name` has finished (successfully or not). */
  ready(name: string): Promise<void> {
    return this.entries.get(name)?.first ?? Promise.resolve()
  }

  /** Current addresses of every watched name (for status output and tests). */
  snapshot(): Record<string, string[]> {
    const out: Record<string, string[]> = {}
    for (const [name, e] of this.entries) out[name] = [...e.dial]
    return out
  }

  /** Stop every timer. Idempotent; a closed cache keeps answering `pick` from what it knew. */
  close(): void {
    this.closed = true
    for (const e of this.entries.values()) clearTimeout(e.timer)
  }

  private async refresh(name: string, entry: Entry): Promise<void> {
    let next: number
    try {
      const answer = await this.resolver.resolve(name)
      if (answer.length === 0) throw new Error('no A or AAAA records')
      const dial = [...new Set(answer.map((a) => (a.address.includes(':') ? `[${a.address}]` : a.address)))].sort()
      const ttl = Math.min(...answer.map((a) => a.ttl)) * 1000
      next = Math.max(this.minTtl, Math.min(entry.maxTtl, Number.isFinite(ttl) ? ttl : entry.maxTtl))
      entry.failures = 0
      const changed = dial.length !== entry.dial.length || dial.some((d, i) => d !== entry.dial[i])
      if (changed) {
        const before = entry.dial
        entry.dial = dial
        entry.rr = 0
        this.log.info({ name, addresses: dial, previous: before }, 'stateful upstream host resolved')
        this.emit('change', name, dial)
      }
    } catch (err) {
      entry.failures++
      next = this.retry
      // Keep the last good answer: a DNS hiccup must not take the site down.
      if (entry.failures === 1 || entry.failures % 30 === 0) {
        this.log.warn({ name, err, failures: entry.failures, keeping: entry.dial }, 'stateful upstream host did not resolve')
      }
    }
    if (this.closed) return
    // Not unref'd: the cache is live until close(), like a server.
    entry.timer = setTimeout(() => void this.refresh(name, entry), next)
  }
}
