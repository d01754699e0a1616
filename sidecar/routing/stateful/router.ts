/**
 * Stateful session routing, doors-caddy compatible. For a configured host, `/_relight/auth`
 * answers with:
 *   - `/~/{token}/…`: the pod IP inside the token, on the port of the first upstream whose CIDR
 *     contains it (a draining pod stays reachable for its sessions); 410 when the token does
 *     not decrypt or no CIDR contains it;
 *   - any other request, one upstream: that upstream's host (the fresh deployment);
 *   - several upstreams: the server whose CIDR holds the IP in the session cookie (the cookie
 *     carries a token, like the path), then that server's host; no usable cookie means a new
 *     session, placed by the site's lb_policy.
 * Hosts are answered as `ip:port`, resolved in the background by the NameCache.
 */
import type { Logger } from 'pino'
import { RelightError } from '../../core/errors.js'
import { normalizeHost } from '../../core/hosts.js'
import { type Balancer, createBalancer } from './balancer.js'
import type { StatefulSiteConfig } from './config.js'
import { Cidr, dialAddress, formatIp } from './ip.js'
import { cookieValue, tokenFromUri } from './request.js'
import { NameCache, type Resolver, SystemResolver } from './resolver.js'
import { TokenCipher } from './token.js'

/** Decoded tokens remembered per site (a session sends the same token on every system request). */
const TOKEN_CACHE_LIMIT = 10_000
/** Raw Host header values remembered (stateful or not); beyond this they are classified each time. */
const RAW_CACHE_LIMIT = 50_000

interface DecodedToken {
  readonly bytes: Buffer
  readonly text: string
}

class SiteUpstream {
  readonly cidr: Cidr
  readonly host: string
  readonly port: number
  private readonly portSuffix: string

  constructor(
    config: { cidr: string; host: string; port: number },
    private readonly names: NameCache,
  ) {
    this.cidr = Cidr.parse(config.cidr) as Cidr // validated by the schema
    this.host = config.host
    this.port = config.port
    this.portSuffix = `:${config.port}`
  }

  /** `ip:port` of the fresh deployment: cached, or after the first DNS answer. */
  dial(): string | Promise<string> {
    const address = this.names.pick(this.host)
    if (address !== undefined) return address + this.portSuffix
    return this.names.ready(this.host).then(() => {
      const late = this.names.pick(this.host)
      if (late === undefined) {
        throw new RelightError('RELIGHT_ERR_STATEFUL_UNRESOLVED', `upstream host ${this.host} does not resolve`, { upstreamHost: this.host })
      }
      return late + this.portSuffix
    })
  }
}

export class StatefulSite {
  readonly hosts: readonly string[]
  readonly upstreams: readonly SiteUpstream[]
  private readonly cipher: TokenCipher
  private readonly cookieName: string | undefined
  private readonly balancer: Balancer
  private readonly tokens = new Map<string, DecodedToken>()
  private readonly undecryptable: RelightError
  private readonly unmatched: RelightError

  constructor(config: StatefulSiteConfig, names: NameCache, now?: () => number) {
    this.hosts = config.hosts
    this.cipher = new TokenCipher(config.secret)
    this.cookieName = config.cookie_name
    this.upstreams = config.upstreams.map((u) => new SiteUpstream(u, names))
    this.balancer = createBalancer(config.lb_policy, this.upstreams.length, now)
    // Built once: a 410 carries no detail (empty body), and a stack per bad token is waste.
    const host = this.hosts[0]
    this.undecryptable = new RelightError('RELIGHT_ERR_STATEFUL_GONE', 'the session token does not decrypt with this secret', { host })
    this.unmatched = new RelightError('RELIGHT_ERR_STATEFUL_GONE', "the session token's IP is in no upstream CIDR", { host })
  }

  /**
   * Where a request goes: `ip:port`, or a promise of it when the host has not resolved yet.
   * Throws RELIGHT_ERR_STATEFUL_GONE (410) for a system path whose token is unusable.
   * `uri` is Caddy's X-Forwarded-Uri, `cookie` the request's Cookie header.
   */
  route(uri: string | undefined, cookie: string | undefined): string | Promise<string> {
    const token = tokenFromUri(uri)
    if (token !== undefined) {
      const ip = this.decode(token)
      if (ip === undefined) throw this.undecryptable
      const i = this.upstreamOf(ip.bytes)
      if (i === -1) throw this.unmatched
      this.balancer.record(i)
      return dialAddress(ip.text, (this.upstreams[i] as SiteUpstream).port)
    }
    let i = 0
    if (this.upstreams.length > 1) {
      const value = cookieValue(cookie, this.cookieName as string)
      const ip = value === undefined ? undefined : this.decode(value)
      i = ip === undefined ? -1 : this.upstreamOf(ip.bytes)
      // No cookie, or one that does not decrypt or matches no server: a new session.
      if (i === -1) i = this.balancer.pick()
    }
    this.balancer.record(i)
    return (this.upstreams[i] as SiteUpstream).dial()
  }

  /** Index of the first upstream whose CIDR contains `ip`, or -1. */
  upstreamOf(ip: Uint8Array): number {
    for (let i = 0; i < this.upstreams.length; i++) if ((this.upstreams[i] as SiteUpstream).cidr.contains(ip)) return i
    return -1
  }

  private decode(token: string): DecodedToken | undefined {
    const known = this.tokens.get(token)
    if (known !== undefined) return known
    const bytes = this.cipher.decodeBytes(token)
    if (bytes === undefined) return undefined
    if (this.tokens.size >= TOKEN_CACHE_LIMIT) this.tokens.clear()
    const decoded = { bytes, text: formatIp(bytes) }
    this.tokens.set(token, decoded)
    return decoded
  }
}

export interface StatefulRouterOptions {
  /** Overrides `servers` (tests). */
  readonly resolver?: Resolver
  /** DNS servers for the default SystemResolver (config `dns.servers`). */
  readonly servers?: readonly string[]
  readonly now?: () => number
}

/** Every stateful site, found by Host; owns the NameCache that keeps upstream hosts resolved. */
/** Longest raw Host remembered: a 253-character name plus a port. */
const MAX_CACHED_RAW = 260

export class StatefulRouter {
  readonly names: NameCache
  readonly sites: readonly StatefulSite[]
  private readonly byHost = new Map<string, StatefulSite>()
  /** Raw Host header → site, or null for "not a stateful host". */
  private readonly byRaw = new Map<string, StatefulSite | null>()

  constructor(configs: readonly StatefulSiteConfig[], log: Logger, options: StatefulRouterOptions = {}) {
    this.names = new NameCache(options.resolver ?? new SystemResolver(options.servers), log)
    this.sites = configs.map((c) => new StatefulSite(c, this.names, options.now))
    configs.forEach((c, i) => {
      for (const u of c.upstreams) this.names.watch(u.host, c.dns_max_ttl)
      for (const h of c.hosts) this.byHost.set(h, this.sites[i] as StatefulSite)
    })
  }

  /** Hot path: the site serving a raw Host header, or undefined. One Map lookup once seen. */
  lookupRaw(raw: string | undefined): StatefulSite | undefined {
    if (raw === undefined) return undefined
    const known = this.byRaw.get(raw)
    if (known !== undefined) return known ?? undefined
    const host = normalizeHost(raw)
    if (host === undefined) return undefined // never cached: junk must not fill the cache
    const site = this.byHost.get(host)
    // Misses are cached too (one lookup for every other host), but only valid names of DNS
    // length: at most RAW_CACHE_LIMIT × ~260 bytes, whatever clients send.
    if (raw.length <= MAX_CACHED_RAW && this.byRaw.size < RAW_CACHE_LIMIT) this.byRaw.set(raw, site ?? null)
    return site
  }

  /** The site serving a normalised host name (on-demand TLS `ask`). */
  resolve(host: string): StatefulSite | undefined {
    return this.byHost.get(host)
  }

  /** Stop DNS refresh timers. Idempotent. */
  close(): void {
    this.names.close()
  }
}
