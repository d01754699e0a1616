import { randomBytes } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { isAbsolute } from 'node:path'
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml'
import type { z } from 'zod'
import { RelightError } from '../core/errors.js'
import { configSchema, type Config } from './schema.js'
import { isDnsName, normalizeHost } from '../core/hosts.js'

const lineNumber = (problem: string): number => Number(/^line (\d+):/.exec(problem)?.[1] ?? Infinity)

export class ConfigError extends RelightError {
  readonly problems: readonly string[]
  constructor(source: string, unordered: string[]) {
    const problems = [...unordered].sort((a, b) => lineNumber(a) - lineNumber(b))
    super('RELIGHT_ERR_CONFIG', `${source}: ${problems.length} problem(s)\n  - ${problems.join('\n  - ')}`, { source })
    this.problems = problems
  }
}

type Path = (string | number)[]

function formatPath(path: readonly PropertyKey[]): string {
  let out = ''
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? String(seg) : `.${String(seg)}`
  }
  return out || '(top level)'
}

/** Find the YAML node for a path (the key node for the last segment when asked) to name a line. */
function nodeAt(root: unknown, path: readonly PropertyKey[], keyOf?: string): YamlNode | undefined {
  let node: unknown = root
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && p.key.value === seg)
      node = pair?.value
    } else if (isSeq(node) && typeof seg === 'number') {
      node = node.items[seg]
    } else {
      return undefined
    }
  }
  if (keyOf !== undefined && isMap(node)) {
    const pair = node.items.find((p) => isScalar(p.key) && p.key.value === keyOf)
    return (pair?.key as YamlNode | undefined) ?? (node as YamlNode)
  }
  return node as YamlNode | undefined
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g

/** Replace `${NAME}` and `${NAME:-default}` in every string; a missing variable is a problem. */
function interpolate(value: unknown, path: Path, env: NodeJS.ProcessEnv, missing: { path: Path; name: string }[]): unknown {
  if (typeof value === 'string') {
    return value.replace(ENV_REF, (_all, name: string, fallback: string | undefined) => {
      const v = env[name]
      if (v !== undefined && v !== '') return v
      if (fallback !== undefined) return fallback
      missing.push({ path, name })
      return ''
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => interpolate(v, [...path, i], env, missing))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = interpolate(v, [...path, k], env, missing)
    return out
  }
  return value
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value)
    for (const v of Object.values(value)) deepFreeze(v)
  }
  return value
}

function describeIssue(issue: z.core.$ZodIssue): { path: PropertyKey[]; key?: string; message: string } {
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys
    return {
      path: issue.path,
      key: keys[0],
      message: `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `"${k}"`).join(', ')}`,
    }
  }
  return { path: issue.path, message: issue.message }
}

/** How a config is read: what a command that sends no token may leave unread. */
export interface ParseOptions {
  /**
   * false: `admin.token_file` is checked to be an absolute path but not read, and the returned
   * `admin.token` is empty. For commands that send no token (`health`), which may run as a user
   * that cannot read the file (Caddy's, a probe's). Default true.
   */
  readonly readTokenFile?: boolean
}

/** `admin: { token_file }` alone (nothing else that the schema would refuse without reading it). */
function tokenFileOnly(admin: unknown): string | undefined {
  if (admin === null || typeof admin !== 'object' || Array.isArray(admin)) return undefined
  const keys = Object.keys(admin)
  const file = (admin as Record<string, unknown>).token_file
  return keys.length === 1 && typeof file === 'string' && file.length > 0 ? file : undefined
}

/** Parse configuration text. `source` names the file in messages. Throws ConfigError. */
export function parseConfig(text: string, source = 'config', env: NodeJS.ProcessEnv = process.env, options: ParseOptions = {}): Config {
  const lineCounter = new LineCounter()
  const doc = parseDocument(text, { lineCounter, prettyErrors: true, uniqueKeys: true })
  if (doc.errors.length > 0) {
    throw new ConfigError(
      source,
      doc.errors.map((e) => `line ${e.linePos?.[0]?.line ?? '?'}: ${e.message.split('\n')[0]}`),
    )
  }
  const lineOf = (path: readonly PropertyKey[], key?: string): string => {
    const node = nodeAt(doc.contents, path, key)
    const offset = node?.range?.[0]
    return offset === undefined ? '' : `line ${lineCounter.linePos(offset).line}: `
  }

  const raw = doc.toJS() ?? {}
  if (typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(source, ['the file must be a YAML mapping of keys (listen, providers, …)'])
  }
  const missing: { path: Path; name: string }[] = []
  const interpolated = interpolate(raw, [], env, missing)
  if (missing.length > 0) {
    throw new ConfigError(
      source,
      missing.map((m) => `${lineOf(m.path)}${formatPath(m.path)}: environment variable ${m.name} is not set`),
    )
  }

  // A token file left unread: the schema sees a placeholder token (random, so it passes the
  // strength check), replaced by '' below; the path itself is still checked.
  const unreadTokenFile = options.readTokenFile === false ? tokenFileOnly((interpolated as Record<string, unknown>).admin) : undefined
  if (unreadTokenFile !== undefined && !isAbsolute(unreadTokenFile)) {
    throw new ConfigError(source, [`${lineOf(['admin', 'token_file'])}admin.token_file: use an absolute path (got ${unreadTokenFile})`])
  }
  const result = configSchema.safeParse(
    unreadTokenFile === undefined ? interpolated : { ...(interpolated as Record<string, unknown>), admin: { token: randomBytes(32).toString('hex') } },
  )
  if (!result.success) {
    throw new ConfigError(
      source,
      result.error.issues.map((issue) => {
        const d = describeIssue(issue)
        return `${lineOf(d.path, d.key)}${formatPath(d.key ? [...d.path, d.key] : d.path)}: ${d.message}`
      }),
    )
  }
  const config = result.data
  if (unreadTokenFile !== undefined) config.admin = { token: '', token_file: unreadTokenFile }
  const problems: string[] = []
  config.base_domains.forEach((d, i) => {
    const name = normalizeHost(d)
    if (!name || !isDnsName(name)) problems.push(`${lineOf(['base_domains', i])}base_domains[${i}]: "${d}" is not a domain name`)
    else config.base_domains[i] = name
  })
  if (problems.length > 0) throw new ConfigError(source, problems)
  return deepFreeze(config)
}

/**
 * `fast_lane_dir` as the file's text says it, read before (and whatever) the full validation
 * says: `serve` empties stale flags there first, so even a configuration edited into an error
 * does not leave a dead sidecar's flags in place. Undefined when its YAML or the key (a literal
 * absolute path) cannot be read. Takes the text, not the file: the file is read once (it may be
 * a FIFO or `/dev/stdin`, which a second read would find empty or blocked).
 */
export function fastLaneDirIn(text: string): string | undefined {
  try {
    const raw: unknown = parseDocument(text).toJS()
    const dir = typeof raw === 'object' && raw !== null ? (raw as Record<string, unknown>).fast_lane_dir : undefined
    return typeof dir === 'string' && /^\/./.test(dir) && !dir.includes('${') ? dir : undefined
  } catch {
    return undefined
  }
}

/** The configuration file's text; a ConfigError naming the file when it cannot be read. */
export function readConfigText(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw new ConfigError(file, [code === 'ENOENT' ? 'file not found' : `cannot read: ${(err as Error).message}`])
  }
}

export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env, options: ParseOptions = {}): Config {
  return parseConfig(readConfigText(file), file, env, options)
}
