import { normalizeHost, parseHostPattern } from './hosts.js'

export interface IndexEntry<T> {
  readonly target: T
  readonly key: string
  readonly hosts: readonly string[]
  /** Lower ranks win a host two entries declare (then the key decides). Default 0. */
  readonly rank?: number
}

export interface Lookup<T> {
  /** The backend, or undefined when no declaration matches. */
  readonly target: T | undefined
  /** The normalised host, or undefined when the header is not a DNS name. */
  readonly host: string | undefined
  /**
   * The header is the canonical spelling of `host` (plus an optional port): what Caddy's
   * case-sensitive logger map sees for the site that routed it. Another spelling (upper case,
   * U-labels, a trailing dot) may be routed by that site and logged elsewhere.
   */
  readonly canonical: boolean
}

export interface IndexProblem {
  readonly key: string
  readonly host: string
  readonly problem: string
}

/** Raw Host header values remembered after a hit; only hits are kept, so unknown hosts cost nothing. */
const RAW_CACHE_LIMIT = 50_000

/**
 * Immutable map from host names to targets. Rebuilt as a whole when backends change and
 * swapped in by the registry, so a lookup never sees a half-built index.
 *
 * Precedence: exact host, then the most specific wildcard, then a first-label name directly
 * under one of `baseDomains`.
 */
export class HostIndex<T> {
  readonly problems: readonly IndexProblem[]
  private readonly exact = new Map<string, T>()
  private readonly wildcard = new Map<string, T>()
  private readonly label = new Map<string, T>()
  private readonly baseDomains: readonly string[]
  private readonly rawHits = new Map<string, Lookup<T>>()

  constructor(entries: Iterable<IndexEntry<T>>, baseDomains: readonly string[] = []) {
    this.baseDomains = [...baseDomains].sort((a, b) => b.length - a.length)
    const problems: IndexProblem[] = []
    const sorted = [...entries].sort((a, b) => (a.rank ?? 0) - (b.rank ?? 0) || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
    for (const entry of sorted) {
      for (const host of entry.hosts) {
        const pattern = parseHostPattern(host)
        if (!pattern) {
          problems.push({ key: entry.key, host, problem: 'not a valid host name, wildcard or label' })
          continue
        }
        const [map, name] =
          pattern.kind === 'exact'
            ? [this.exact, pattern.name]
            : pattern.kind === 'wildcard'
              ? [this.wildcard, pattern.suffix]
              : [this.label, pattern.label]
        const owner = map.get(name)
        if (owner !== undefined && owner !== entry.target) {
          problems.push({ key: entry.key, host, problem: 'already declared by another backend; ignored here' })
          continue
        }
        map.set(name, entry.target)
      }
    }
    this.problems = problems
  }


  /**
   * Hot path: look up a raw Host header. A header seen before resolves with one map lookup;
   * otherwise it is normalised and resolved. `host: undefined` means the header is not a DNS
   * name at all.
   */
  lookupRaw(raw: string | undefined): Lookup<T> {
    if (raw !== undefined) {
      const hit = this.rawHits.get(raw)
      if (hit !== undefined) return hit
    }
    const host = normalizeHost(raw)
    if (host === undefined) return { target: undefined, host: undefined, canonical: false }
    const result = { target: this.resolve(host), host, canonical: raw === host || (raw !== undefined && raw.startsWith(host) && /^:\d{1,5}$/.test(raw.slice(host.length))) }
    if (result.target !== undefined && raw !== undefined && this.rawHits.size < RAW_CACHE_LIMIT) {
      this.rawHits.set(raw, result)
    }
    return result
  }

  /** Resolve a normalised host name. */
  resolve(host: string): T | undefined {
    const exact = this.exact.get(host)
    if (exact !== undefined) return exact
    if (this.wildcard.size > 0) {
      for (let dot = host.indexOf('.'); dot !== -1; dot = host.indexOf('.', dot + 1)) {
        const hit = this.wildcard.get(host.slice(dot + 1))
        if (hit !== undefined) return hit
      }
    }
    if (this.label.size > 0) {
      const dot = host.indexOf('.')
      if (dot > 0) {
        const rest = host.slice(dot + 1)
        for (const base of this.baseDomains) {
          if (rest === base) return this.label.get(host.slice(0, dot))
        }
      }
    }
    return undefined
  }

}
