/**
 * Where the API server is and how to prove who we are: a kubeconfig file (bearer token or client
 * certificate, CA) or the in-cluster service account. Pure file reading; no network.
 */
import { readFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { dirname, isAbsolute, resolve } from 'node:path'
import { parse as parseYaml } from 'yaml'
import { RelightError } from '../../core/errors.js'

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount'

export interface Credentials {
  /** `https://host:port` (no trailing slash). */
  readonly server: string
  /** PEM; undefined → the system's trust store. */
  readonly ca?: string
  readonly insecureSkipTlsVerify?: boolean
  /** Bearer token, read once (kubeconfig) ... */
  readonly token?: string
  /** ... or re-read on every 401 (service account tokens are rotated on disk). */
  readonly tokenFile?: string
  readonly cert?: string
  readonly key?: string
  /** The namespace the kubeconfig context or service account names (used when `namespaces` is absent). */
  readonly namespace: string
  /** For messages: `kubeconfig /path (context x)` or `in-cluster service account`. */
  readonly source: string
}

export interface CredentialOptions {
  readonly kubeconfig?: string | undefined
  readonly context?: string | undefined
  /** Directory relative kubeconfig paths resolve against (the config file's). */
  readonly baseDir: string
  readonly env?: NodeJS.ProcessEnv
  /** Service account folder (tests). */
  readonly serviceAccountDir?: string
}

const fail = (message: string, context: Record<string, unknown> = {}) => new RelightError('RELIGHT_ERR_CONFIG', message, { provider: 'kubernetes', ...context })

function expandHome(path: string): string {
  return path === '~' || path.startsWith('~/') ? `${homedir()}${path.slice(1)}` : path
}

function readText(path: string, what: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    throw fail(`cannot read ${what} ${path}: ${code === 'ENOENT' ? 'file not found' : (err as Error).message}`)
  }
}

/** The credentials to use, in this order: `kubeconfig` when given; in-cluster; $KUBECONFIG; ~/.kube/config. */
export function loadCredentials(options: CredentialOptions): Credentials {
  const env = options.env ?? process.env
  if (options.kubeconfig !== undefined) {
    const file = resolve(options.baseDir, expandHome(options.kubeconfig))
    return fromKubeconfig(readText(file, 'kubeconfig'), file, options.context)
  }
  if (env.KUBERNETES_SERVICE_HOST) return inCluster(env, options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR)
  const fromEnv = env.KUBECONFIG?.split(':').find((p) => p !== '')
  const file = fromEnv ?? resolve(homedir(), '.kube/config')
  try {
    return fromKubeconfig(readFileSync(file, 'utf8'), file, options.context)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    throw fail(
      `no Kubernetes credentials: set providers.kubernetes.kubeconfig, run the sidecar in a pod (KUBERNETES_SERVICE_HOST and ${SERVICE_ACCOUNT_DIR}), or provide ${file}`,
    )
  }
}

/** The service account a pod runs as. */
export function inCluster(env: NodeJS.ProcessEnv, dir: string): Credentials {
  const host = env.KUBERNETES_SERVICE_HOST as string
  const port = env.KUBERNETES_SERVICE_PORT || '443'
  const tokenFile = `${dir}/token`
  const token = readText(tokenFile, 'the service account token').trim()
  const namespace = (() => {
    try {
      return readFileSync(`${dir}/namespace`, 'utf8').trim() || 'default'
    } catch {
      return 'default'
    }
  })()
  return {
    server: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    ca: readText(`${dir}/ca.crt`, 'the service account CA'),
    token,
    tokenFile,
    namespace,
    source: 'in-cluster service account',
  }
}

interface Named<T> {
  name?: unknown
  cluster?: T
  user?: T
  context?: T
}

type Obj = Record<string, unknown>

const str = (v: unknown): string | undefined => (typeof v === 'string' && v !== '' ? v : undefined)

/** Parse a kubeconfig's text. `file` names it in messages and anchors relative paths. */
export function fromKubeconfig(text: string, file: string, contextName?: string): Credentials {
  let doc: unknown
  try {
    doc = parseYaml(text)
  } catch (err) {
    throw fail(`kubeconfig ${file} is not valid YAML: ${(err as Error).message.split('\n')[0]}`)
  }
  if (!doc || typeof doc !== 'object') throw fail(`kubeconfig ${file} is empty`)
  const cfg = doc as Obj
  const pick = <T>(list: unknown, name: string | undefined, what: string): T => {
    const entries = Array.isArray(list) ? (list as Named<T>[]) : []
    const found = entries.find((e) => e.name === name)
    const value = found?.[what as 'cluster' | 'user' | 'context']
    if (!value) throw fail(`kubeconfig ${file}: no ${what} named "${name ?? ''}"`)
    return value
  }
  const ctxName = contextName ?? str(cfg['current-context'])
  if (!ctxName) throw fail(`kubeconfig ${file} has no current-context; set providers.kubernetes.context`)
  const ctx = pick<Obj>(cfg.contexts, ctxName, 'context')
  const cluster = pick<Obj>(cfg.clusters, str(ctx.cluster), 'cluster')
  const user = ctx.user === undefined ? {} : pick<Obj>(cfg.users, str(ctx.user), 'user')
  const base = dirname(file)
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, expandHome(p)))
  /** `<key>-data` (base64) or `<key>` (a file). */
  const material = (obj: Obj, key: string, what: string): string | undefined => {
    const data = str(obj[`${key}-data`])
    if (data) return Buffer.from(data, 'base64').toString('utf8')
    const p = str(obj[key])
    return p ? readText(path(p), what) : undefined
  }
  const server = str(cluster.server)
  if (!server) throw fail(`kubeconfig ${file}: cluster "${str(ctx.cluster) ?? ''}" has no server`)
  if (!/^https?:\/\//.test(server)) throw fail(`kubeconfig ${file}: server "${server}" is not an http(s) URL`)
  if (user.exec || user['auth-provider']) {
    throw fail(
      `kubeconfig ${file}: user "${str(ctx.user) ?? ''}" gets its credentials from an exec plugin or auth provider, which the sidecar does not run; give it a token or a client certificate (e.g. a ServiceAccount token)`,
    )
  }
  const tokenFile = str(user.tokenFile)
  const token = str(user.token) ?? (tokenFile ? readText(path(tokenFile), 'token file').trim() : undefined)
  const cert = material(user, 'client-certificate', 'client certificate')
  const key = material(user, 'client-key', 'client key')
  if ((cert === undefined) !== (key === undefined)) throw fail(`kubeconfig ${file}: user "${str(ctx.user) ?? ''}" has a client certificate without its key (or a key without its certificate)`)
  const ca = material(cluster, 'certificate-authority', 'certificate authority')
  return {
    server: server.replace(/\/+$/, ''),
    ...(ca !== undefined ? { ca } : {}),
    ...(cluster['insecure-skip-tls-verify'] === true ? { insecureSkipTlsVerify: true } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(tokenFile !== undefined ? { tokenFile: path(tokenFile) } : {}),
    ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
    namespace: str(ctx.namespace) ?? 'default',
    source: `kubeconfig ${file} (context ${ctxName})`,
  }
}
