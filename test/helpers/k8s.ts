/**
 * A real Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager 1.20 from
 * test/k8s-control-plane) for one test file: `startControlPlane()` in before(), `close()` in
 * after(). `k8sSkip()` says why a file skips when the binaries are absent (and throws under CI,
 * where .ci/run builds them).
 *
 * `api()` is the test's own admin client (plain undici), independent of the provider's.
 */
import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Agent, request } from 'undici'

const run = promisify(execFile)
export const KIT = fileURLToPath(new URL('../../../test/k8s-control-plane/', import.meta.url))
export const K8S_BIN = process.env.K8S_CACHE ?? '/var/cache/relight-k8s/bin'

export function k8sSkip(): string | undefined {
  const missing = ['kube-apiserver', 'kube-controller-manager'].filter((b) => !existsSync(join(K8S_BIN, b)))
  const etcd = ['/usr/bin/etcd', '/usr/local/bin/etcd'].some((p) => existsSync(p))
  if (missing.length === 0 && etcd) return undefined
  const what = [...missing, ...(etcd ? [] : ['etcd'])].join(', ')
  if (process.env.CI) throw new Error(`${what} missing in ${K8S_BIN}, and CI requires the Kubernetes tests: .ci/run must run test/k8s-control-plane/build.sh`)
  const reason = `Kubernetes control plane not built (${what} missing): run test/k8s-control-plane/build.sh; skipping`
  process.stderr.write(`# ${reason}\n`)
  return reason
}

export interface ApiAnswer<T> {
  readonly status: number
  readonly body: T
}

export interface ControlPlane {
  readonly dir: string
  readonly url: string
  readonly token: string
  readonly ca: string
  readonly kubeconfig: string
  /** An admin request; JSON in and out. Never throws on a status. */
  api<T = any>(method: string, path: string, body?: unknown, contentType?: string): Promise<ApiAnswer<T>>
  /** The status another identity's bearer token gets for a GET. */
  statusAs(token: string, path: string): Promise<number>
  /** Like api(), but throws unless the status is 2xx. */
  ok<T = any>(method: string, path: string, body?: unknown, contentType?: string): Promise<T>
  /** An admin GET answered with a stream (watches). Throws unless 200. */
  stream(path: string, signal: AbortSignal): Promise<AsyncIterable<Buffer>>
  /** A kubeconfig for another identity (a ServiceAccount token), written under dir. */
  kubeconfigFor(name: string, token: string, server?: string): string
  /** A kubeconfig with a client certificate (CN `user`, O `group`) signed by the kit's CA, inline as *-data. */
  certKubeconfig(user: string, group: string): Promise<string>
  close(): Promise<void>
}

export async function startControlPlane(): Promise<ControlPlane> {
  const dir = mkdtempSync(join(tmpdir(), 'relight-k8s-'))
  try {
    await run(join(KIT, 'up.sh'), [dir], { timeout: 120_000 })
  } catch (err) {
    await run(join(KIT, 'down.sh'), [dir]).catch(() => undefined)
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`up.sh failed: ${(err as { stderr?: string }).stderr ?? (err as Error).message}`)
  }
  const env = Object.fromEntries(
    readFileSync(join(dir, 'env'), 'utf8')
      .split('\n')
      .filter((l) => l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  ) as Record<string, string>
  const url = env.K8S_URL as string
  const token = env.K8S_TOKEN as string
  const caFile = env.K8S_CA as string
  const ca = readFileSync(caFile, 'utf8')
  const agent = new Agent({ connect: { ca } })
  const api = async <T>(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<ApiAnswer<T>> => {
    const res = await request(`${url}${path}`, {
      method: method as 'GET',
      dispatcher: agent,
      headers: { authorization: `Bearer ${token}`, accept: 'application/json', ...(body !== undefined ? { 'content-type': contentType } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    })
    const text = await res.body.text()
    return { status: res.statusCode, body: (text ? JSON.parse(text) : undefined) as T }
  }
  return {
    dir,
    url,
    token,
    ca: caFile,
    kubeconfig: env.K8S_KUBECONFIG as string,
    api,
    ok: async <T>(method: string, path: string, body?: unknown, contentType?: string): Promise<T> => {
      const answer = await api<T>(method, path, body, contentType)
      if (answer.status < 200 || answer.status >= 300) throw new Error(`${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`)
      return answer.body
    },
    statusAs: async (other, path) => {
      const res = await request(`${url}${path}`, { dispatcher: agent, headers: { authorization: `Bearer ${other}` } })
      await res.body.dump()
      return res.statusCode
    },
    stream: async (path, signal) => {
      const res = await request(`${url}${path}`, { dispatcher: agent, signal, headers: { authorization: `Bearer ${token}` } })
      if (res.statusCode !== 200) throw new Error(`GET ${path}: ${res.statusCode} ${await res.body.text()}`)
      return res.body as AsyncIterable<Buffer>
    },
    kubeconfigFor: (name, saToken, server = url) => {
      const file = join(dir, `kubeconfig-${name}`)
      writeFileSync(
        file,
        [
          'apiVersion: v1',
          'kind: Config',
          `clusters: [{name: local, cluster: {server: "${server}", certificate-authority: "${caFile}"}}]`,
          `users: [{name: ${name}, user: {token: "${saToken}"}}]`,
          `contexts: [{name: ${name}, context: {cluster: local, user: ${name}, namespace: default}}]`,
          `current-context: ${name}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      )
      return file
    },
    certKubeconfig: async (user, group) => {
      const key = join(dir, `${user}.key`)
      const csr = join(dir, `${user}.csr`)
      const crt = join(dir, `${user}.crt`)
      await run('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', key])
      await run('openssl', ['req', '-new', '-key', key, '-subj', `/CN=${user}/O=${group}`, '-out', csr])
      await run('openssl', ['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', join(dir, 'pki', 'ca.key'), '-CAcreateserial', '-days', '1', '-out', crt])
      const b64 = (f: string) => readFileSync(f).toString('base64')
      const file = join(dir, `kubeconfig-cert-${user}`)
      writeFileSync(
        file,
        [
          'apiVersion: v1',
          'kind: Config',
          `clusters: [{name: local, cluster: {server: "${url}", certificate-authority-data: ${b64(caFile)}}}]`,
          `users: [{name: ${user}, user: {client-certificate-data: ${b64(crt)}, client-key-data: ${b64(key)}}}]`,
          `contexts: [{name: ${user}, context: {cluster: local, user: ${user}, namespace: default}}]`,
          `current-context: ${user}`,
          '',
        ].join('\n'),
        { mode: 0o600 },
      )
      return file
    },
    close: async () => {
      await agent.close().catch(() => undefined)
      await run(join(KIT, 'down.sh'), [dir]).catch(() => undefined)
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** A Deployment or StatefulSet manifest whose pods listen on `port`, with relight annotations. */
export function workload(kind: 'Deployment' | 'StatefulSet', name: string, namespace: string, port: number, annotations: Record<string, string>, replicas = 0): Record<string, unknown> {
  return {
    apiVersion: 'apps/v1',
    kind,
    metadata: { name, namespace, annotations },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      ...(kind === 'StatefulSet' ? { serviceName: name } : {}),
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: 'app', image: 'relight-test/app', ports: [{ containerPort: port }] }] },
      },
    },
  }
}

export const RESOURCE_OF = { Deployment: 'deployments', StatefulSet: 'statefulsets' } as const

/** The path of a workload (or its subresource). */
export function workloadUrl(kind: 'Deployment' | 'StatefulSet', namespace: string, name = '', sub = ''): string {
  return `/apis/apps/v1/namespaces/${namespace}/${RESOURCE_OF[kind]}${name ? `/${name}` : ''}${sub ? `/${sub}` : ''}`
}

/** Create a namespace (idempotent). */
export async function createNamespace(cp: ControlPlane, name: string): Promise<void> {
  const res = await cp.api('POST', '/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } })
  if (res.status !== 201 && res.status !== 409) throw new Error(`namespace ${name}: ${res.status}`)
}

/** spec.replicas of a workload (the Scale answer omits 0). */
export async function replicasOf(cp: ControlPlane, kind: 'Deployment' | 'StatefulSet', namespace: string, name: string): Promise<number> {
  const scale = await cp.ok<{ spec?: { replicas?: number } }>('GET', workloadUrl(kind, namespace, name, 'scale'))
  return scale.spec?.replicas ?? 0
}

/** The token of a ServiceAccount (created unless `create` is false; 1.20 makes a token Secret for it), waiting for it to exist. */
export async function serviceAccountToken(cp: ControlPlane, namespace: string, name: string, create = true): Promise<string> {
  if (create) await cp.ok('POST', `/api/v1/namespaces/${namespace}/serviceaccounts`, { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name } })
  for (let i = 0; i < 200; i++) {
    const sa = await cp.ok<{ secrets?: { name: string }[] }>('GET', `/api/v1/namespaces/${namespace}/serviceaccounts/${name}`)
    const secret = sa.secrets?.[0]?.name
    if (secret) {
      const s = await cp.ok<{ data?: { token?: string } }>('GET', `/api/v1/namespaces/${namespace}/secrets/${secret}`)
      if (s.data?.token) return Buffer.from(s.data.token, 'base64').toString('utf8')
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`no token for service account ${namespace}/${name}`)
}
