/**
 * Ignored traffic (the `ignore` setting): requests that neither count as activity nor wake a
 * backend (uptime checkers, load-balancer health checks, crawlers). A rule names up to four
 * conditions and matches when all of them hold; a request is ignored when any rule matches.
 *
 * - `user_agent`: a pattern matched anywhere in the User-Agent, case-insensitively; `*` stands
 *   for any run of characters (no regular expressions: a label's author must not be able to
 *   make the hot path backtrack).
 * - `path`: a prefix of the request path that ends at a segment boundary (the query is not part
 *   of it): `/healthz` matches `/healthz` and `/healthz/live`, not `/healthzdashboard`.
 * - `method`: an HTTP method, exactly (`HEAD`; `OPTIONS` would 503 a browser's CORS preflight
 *   to a sleeping app, so its real request never comes).
 * - `client`: an address or CIDR, matched against the client connection as Caddy sees it
 *   (`{http.request.remote.host}`, sent by the snippet as X-Relight-Client): behind another
 *   proxy or a CDN that is the proxy's address.
 *
 * Text form (labels, tags, annotations): rules separated by `;`, conditions of one rule by `,`,
 * each `name=value`: `user_agent=UptimeRobot; path=/healthz,method=GET; client=10.0.0.0/8`.
 */
import { BlockList, isIP } from 'node:net'

export interface IgnoreRule {
  readonly user_agent?: string
  readonly path?: string
  readonly method?: string
  readonly client?: string
}

export const IGNORE_FIELDS = ['user_agent', 'path', 'method', 'client'] as const

/** What one request looks like to the rules. */
export interface IgnoreSubject {
  readonly userAgent: string | undefined
  readonly method: string | undefined
  /** Path and query as the client sent it; the query is cut here. */
  readonly uri: string | undefined
  /** Caddy's client address, without the port. */
  readonly client: string | undefined
}

/** User agents longer than this are matched on their first this-many characters. */
const MAX_USER_AGENT = 1024
/** Every rule is tried on every /auth of its backend: a label must not make that unbounded. */
export const MAX_IGNORE_RULES = 32
/** The longest value of one condition. */
export const MAX_IGNORE_VALUE = 256

/** The problem with one condition's value, in words, or undefined. */
export function ignoreFieldProblem(field: (typeof IGNORE_FIELDS)[number], value: string): string | undefined {
  if (value.length === 0) return 'must not be empty'
  if (value.length > MAX_IGNORE_VALUE) return `must be at most ${MAX_IGNORE_VALUE} characters (it has ${value.length})`
  switch (field) {
    case 'user_agent':
      return value.replaceAll('*', '').length === 0 ? 'must contain more than *' : undefined
    case 'path':
      return value.startsWith('/') ? undefined : 'must start with /'
    case 'method':
      return /^[A-Za-z]+$/.test(value) ? undefined : 'must be an HTTP method such as HEAD'
    case 'client':
      return subnet(value) === undefined ? 'must be an IP address or a CIDR such as 10.0.0.0/8 or fd00::/8' : undefined
  }
}

/** The problem with a whole rule, or undefined. */
export function ignoreRuleProblem(rule: IgnoreRule): string | undefined {
  const fields = IGNORE_FIELDS.filter((f) => rule[f] !== undefined)
  if (fields.length === 0) return `a rule needs at least one of ${IGNORE_FIELDS.join(', ')}`
  for (const f of fields) {
    const problem = ignoreFieldProblem(f, rule[f] as string)
    if (problem !== undefined) return `${f} ${problem}`
  }
  return undefined
}

/** The problem with the number of rules, or undefined. */
export function ignoreCountProblem(count: number): string | undefined {
  return count > MAX_IGNORE_RULES ? `at most ${MAX_IGNORE_RULES} rules (it has ${count})` : undefined
}

/** The text form to rules, or what is wrong with it in words. */
export function parseIgnoreText(text: string): { rules: IgnoreRule[] } | { problem: string } {
  const rules: IgnoreRule[] = []
  for (const part of text.split(';')) {
    if (part.trim() === '') continue
    const rule: Record<string, string> = {}
    for (const condition of part.split(',')) {
      const eq = condition.indexOf('=')
      const name = (eq < 0 ? condition : condition.slice(0, eq)).trim()
      if (!(IGNORE_FIELDS as readonly string[]).includes(name) || eq < 0) {
        return { problem: `"${condition.trim()}" is not name=value with a name among ${IGNORE_FIELDS.join(', ')}` }
      }
      if (rule[name] !== undefined) return { problem: `${name} appears twice in one rule` }
      rule[name] = condition.slice(eq + 1).trim()
    }
    const problem = ignoreRuleProblem(rule)
    if (problem !== undefined) return { problem }
    rules.push(rule)
  }
  if (rules.length === 0) return { problem: 'no rule' }
  const tooMany = ignoreCountProblem(rules.length)
  if (tooMany !== undefined) return { problem: tooMany }
  return { rules }
}

function subnet(value: string): { address: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const slash = value.indexOf('/')
  const address = slash < 0 ? value : value.slice(0, slash)
  const version = isIP(address)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefixText = slash < 0 ? String(max) : value.slice(slash + 1)
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return undefined
  return { address, prefix: Number(prefixText), family: version === 4 ? 'ipv4' : 'ipv6' }
}

/** Rules compiled once per settings change; `matches` is what the request path calls. */
export class IgnoreRules {
  static readonly none = new IgnoreRules([])
  readonly rules: readonly IgnoreRule[]
  private readonly compiled: readonly {
    readonly agent: readonly string[] | undefined
    readonly path: string | undefined
    readonly method: string | undefined
    readonly clients: BlockList | undefined
  }[]

  constructor(rules: readonly IgnoreRule[]) {
    this.rules = rules
    this.compiled = rules.map((r) => {
      let clients: BlockList | undefined
      if (r.client !== undefined) {
        const s = subnet(r.client)
        if (s !== undefined) {
          clients = new BlockList()
          clients.addSubnet(s.address, s.prefix, s.family)
        }
      }
      return {
        agent: r.user_agent === undefined ? undefined : r.user_agent.toLowerCase().split('*').filter((p) => p !== ''),
        path: r.path,
        method: r.method?.toUpperCase(),
        clients,
      }
    })
  }

  get empty(): boolean {
    return this.compiled.length === 0
  }

  /** True when some rule matches every condition it names. */
  matches(req: IgnoreSubject): boolean {
    // Once per request, not once per rule.
    const method = req.method?.toUpperCase()
    const path = pathOf(req.uri)
    let agent: string | undefined | null = null // null: not lowercased yet
    for (const rule of this.compiled) {
      if (rule.method !== undefined && method !== rule.method) continue
      if (rule.path !== undefined && !underPath(path, rule.path)) continue
      if (rule.agent !== undefined) {
        if (agent === null) agent = lowerAgent(req.userAgent)
        if (!globMatch(rule.agent, agent)) continue
      }
      if (rule.clients !== undefined && !inList(rule.clients, req.client)) continue
      return true
    }
    return false
  }
}

function pathOf(uri: string | undefined): string {
  if (uri === undefined) return ''
  const q = uri.indexOf('?')
  return q < 0 ? uri : uri.slice(0, q)
}

/** `prefix` is the path, or a run of its segments: `/healthz` is under itself and `/healthz/x`, not `/healthzx`. */
function underPath(path: string, prefix: string): boolean {
  if (!path.startsWith(prefix)) return false
  return path.length === prefix.length || prefix.endsWith('/') || path[prefix.length] === '/'
}

function lowerAgent(agent: string | undefined): string | undefined {
  if (agent === undefined) return undefined
  return (agent.length > MAX_USER_AGENT ? agent.slice(0, MAX_USER_AGENT) : agent).toLowerCase()
}

/** The parts in order, anywhere in the (lowercased) agent (leftmost search: linear, no backtracking). */
function globMatch(parts: readonly string[], text: string | undefined): boolean {
  if (text === undefined) return false
  let at = 0
  for (const part of parts) {
    const found = text.indexOf(part, at)
    if (found < 0) return false
    at = found + part.length
  }
  return true
}

function inList(list: BlockList, client: string | undefined): boolean {
  if (client === undefined) return false
  const zone = client.indexOf('%')
  let address = zone < 0 ? client : client.slice(0, zone)
  if (address.startsWith('[') && address.endsWith(']')) address = address.slice(1, -1)
  const version = isIP(address)
  if (version === 0) return false
  // An IPv4 client on a dual-stack listener is reported as ::ffff:a.b.c.d.
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)
  if (v4 !== null && list.check(v4[1] as string, 'ipv4')) return true
  return list.check(address, version === 4 ? 'ipv4' : 'ipv6')
}
