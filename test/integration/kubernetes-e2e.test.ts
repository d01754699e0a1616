/**
 * End to end against a real Kubernetes API server (test/k8s-control-plane) through real Caddy:
 * client → Caddy (forward_auth) → sidecar → kube-apiserver; the stand-in kubelet runs each pod
 * as a real HTTP process on its own 127.0.0.x address. The sidecar reaches the API through a
 * TCP relay the test can cut, to interrupt its watches.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { parseAllDocuments } from 'yaml'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { type ControlPlane, createNamespace, k8sSkip, replicasOf, serviceAccountToken, startControlPlane, workload, workloadUrl } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { startSidecarProcess } from '../helpers/sidecar-process.js'
import { testSecret } from '../helpers/secret.js'
import { until } from '../helpers/wait.js'

const MAIN = fileURLToPath(new URL('../../../dist/sidecar/main.js', import.meta.url))
const EXAMPLE_RBAC = fileURLToPath(new URL('../../../examples/kubernetes/rbac.yaml', import.meta.url))
const DEPLOY_CONFIG = fileURLToPath(new URL('../../../deploy/kubernetes/base/relight.yaml', import.meta.url))
const NS = 'shop'
const skip = caddySkip() ?? k8sSkip()

/** A TCP relay to the API server that can drop every connection and refuse new ones for a while. */
async function relay(target: string): Promise<{ url: string; cut(): void; restore(): void; close(): Promise<void> }> {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  let refusing = false
  const server: Server = createServer((client) => {
    if (refusing) return client.destroy()
    const upstream = connect(Number(port), hostname)
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => undefined)
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address() as { port: number }
  const dropAll = () => {
    for (const s of sockets) s.destroy()
  }
  return {
    url: `https://127.0.0.1:${address.port}`,
    cut: () => {
      refusing = true
      dropAll()
    },
    restore: () => {
      refusing = false
    },
    close: () =>
      new Promise<void>((resolve) => {
        dropAll()
        server.close(() => resolve())
      }),
  }
}

describe('kubernetes end to end through Caddy', { skip, timeout: 180_000 }, () => {
  let cp: ControlPlane
  let kubelet: StandInKubelet
  let proxy: Awaited<ReturnType<typeof relay>>
  let sc: TestSidecar
  let caddy: RunningCaddy
  let provider: KubernetesProvider
  const ports: Record<string, number> = {}

  async function get(host: string, path = '/'): Promise<{ status: number; body: string; reply: string | undefined }> {
    const res = await request(`${caddy.url}${path}`, { headers: { host, accept: 'application/json' } })
    const body = await res.body.text()
    const reply = res.headers['x-relight-reply']
    return { status: res.statusCode, body, reply: Array.isArray(reply) ? reply[0] : reply }
  }

  async function create(kind: 'Deployment' | 'StatefulSet', name: string, annotations: Record<string, string>, replicas = 0): Promise<void> {
    ports[name] = await freePort()
    await cp.ok('POST', workloadUrl(kind, NS), workload(kind, name, NS, ports[name] as number, { 'relight.domain': `${name}.k8s.test`, ...annotations }, replicas))
  }

  const known = (id: string) => sc.sidecar.registry.get(`kubernetes:${id}`)

  before(async () => {
    cp = await startControlPlane()
    await createNamespace(cp, NS)
    kubelet = await StandInKubelet.start(cp, NS)
    await create('Deployment', 'web', { 'relight.idle_timeout': '10m' })
    await create('StatefulSet', 'db', { 'relight.idle_timeout': '10m' })
    await create('Deployment', 'idle', { 'relight.idle_timeout': '1500ms' }, 1) // running before the sidecar starts
    await create('Deployment', 'doomed', {})
    await create('Deployment', 'gone', {})
    await until(() => [...kubelet.pods.keys()].some((n) => n.startsWith('idle-')), 'the idle pod to run', 20_000)
    proxy = await relay(cp.url)
    const kubeconfig = cp.kubeconfigFor('admin-via-relay', cp.token, proxy.url)
    sc = await startTestSidecar(
      [
        'min_idle_timeout: 100ms',
        'resync_interval: 10m', // changes arrive through the watches (and their relists), not the periodic resync
        'defaults:',
        '  wake_timeout: 20s',
        'providers:',
        '  kubernetes:',
        `    kubeconfig: ${kubeconfig}`,
        `    namespaces: [${NS}]`,
        '    identity: e2e-sidecar',
        '',
      ].join('\n'),
    )
    provider = sc.sidecar.registry.providers[0] as KubernetesProvider
    caddy = await startCaddy({
      sidecar: sc.address,
      sites: (port) => `http://:${port} {\n\tbind 127.0.0.1\n\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n\timport relight ${sc.address}\n}\n`,
    })
  })

  after(async () => {
    await caddy?.close()
    await sc?.close()
    await proxy?.close()
    await kubelet?.close()
    await cp?.close()
  })

  it('discovers annotated Deployments and StatefulSets with their state', () => {
    assert.equal(known('deployment/shop/web')?.info.state, 'scaled_to_zero')
    assert.equal(known('statefulset/shop/db')?.info.state, 'scaled_to_zero')
    const idle = known('deployment/shop/idle')
    assert.equal(idle?.info.state, 'running')
    assert.match(idle?.info.upstreams[0] ?? '', /^127\.0\.0\.\d+:\d+$/)
    assert.deepEqual(known('deployment/shop/web')?.info.hosts, ['web.k8s.test'])
  })

  it('a Deployment at 0 is scaled up by its first request and answers through Caddy', async () => {
    const started = Date.now()
    const res = await get('web.k8s.test', '/hello')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, /^pod=web-[a-z0-9]+-[a-z0-9]+ ip=127\.0\.0\.\d+ path=\/hello/)
    assert.equal(await replicasOf(cp, 'Deployment', NS, 'web'), 1)
    process.stderr.write(`# kubernetes wake 0 → 1 → HTTP 200: ${Date.now() - started} ms\n`)
    const again = await get('web.k8s.test', '/again')
    assert.equal(again.status, 200)
  })

  it('a StatefulSet at 0 is scaled up too (pod db-0)', async () => {
    const res = await get('db.k8s.test')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, /^pod=db-0 ip=127\.0\.0\.\d+/)
    assert.equal(await replicasOf(cp, 'StatefulSet', NS, 'db'), 1)
  })

  it('a workload running at start is scaled to 0 after its idle_timeout, its pods go, and it wakes again', async () => {
    await until(async () => (await replicasOf(cp, 'Deployment', NS, 'idle')) === 0, 'idle to be scaled to 0', 20_000, 100)
    await kubelet.waitGone('idle-')
    await until(() => known('deployment/shop/idle')?.phase === 'asleep', 'the sidecar to see idle asleep')
    const leases = await cp.ok<{ items: unknown[] }>('GET', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases`)
    assert.deepEqual(leases.items, [], 'no Lease: activity and replicas live in the Deployment itself')
    const res = await get('idle.k8s.test')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, /^pod=idle-/)
  })

  it('a Deployment deleted from the cluster answers 404', async () => {
    assert.ok(known('deployment/shop/doomed'))
    await cp.ok('DELETE', workloadUrl('Deployment', NS, 'doomed'))
    const res = await get('doomed.k8s.test')
    assert.equal(res.status, 404, res.body)
    assert.ok(res.reply === 'RELIGHT_ERR_HOST_UNKNOWN' || res.reply === 'RELIGHT_ERR_BACKEND_NOT_FOUND', res.reply)
    await until(() => !known('deployment/shop/doomed'), 'doomed to leave the registry')
    assert.equal((await get('doomed.k8s.test')).reply, 'RELIGHT_ERR_HOST_UNKNOWN')
  })

  it('watches cut off while the cluster changes: the provider lists again and catches up', async () => {
    const before = { ...provider.watchCounters }
    proxy.cut()
    try {
      await until(() => provider.watchCounters.failures - before.failures >= 9, 'every watch (deployments, statefulsets, pods) to fail three times', 20_000, 20)
      await cp.ok('DELETE', workloadUrl('Deployment', NS, 'gone'))
      await create('Deployment', 'late', {})
    } finally {
      proxy.restore()
    }
    await until(() => known('deployment/shop/late') && !known('deployment/shop/gone'), 'the registry to match the cluster', 20_000)
    assert.ok(provider.watchCounters.lists - before.lists >= 3, `lists again: ${JSON.stringify(before)} → ${JSON.stringify(provider.watchCounters)}`)
    const res = await get('late.k8s.test')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, /^pod=late-/)
  })

  it('RBAC denial: 502 on the request, and `check` says which verb on which resource is missing', async () => {
    const token = await serviceAccountToken(cp, NS, 'limited')
    await cp.ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'Role',
      metadata: { name: 'limited' },
      rules: [
        { apiGroups: ['apps'], resources: ['deployments', 'statefulsets'], verbs: ['get', 'list', 'watch'] },
        { apiGroups: [''], resources: ['pods'], verbs: ['list', 'watch'] },
      ],
    })
    await cp.ok('POST', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings`, {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'limited' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'limited' },
      subjects: [{ kind: 'ServiceAccount', name: 'limited', namespace: NS }],
    })
    await create('Deployment', 'guarded', {})
    const kubeconfig = cp.kubeconfigFor('limited', token)
    const config = ['providers:', '  kubernetes:', `    kubeconfig: ${kubeconfig}`, `    namespaces: [${NS}]`, ''].join('\n')
    const limited = await startTestSidecar(config, { accessLog: false })
    try {
      const res = await request(`${limited.url}/_relight/auth`, { headers: { host: 'guarded.k8s.test', accept: 'application/json' } })
      const body = await res.body.text()
      assert.equal(res.statusCode, 502, body)
      assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_PROVIDER_AUTH')
      assert.equal(await replicasOf(cp, 'Deployment', NS, 'guarded'), 0)
    } finally {
      await limited.close()
    }
    const file = join(cp.dir, 'limited.yaml')
    // a listen address of its own: on the default 127.0.0.1:9123 another sidecar (a demo) would
    // be taken for the running one, and check would show its live view instead
    writeFileSync(file, `listen: unix:${join(cp.dir, 'limited.sock')}\n${config}`)
    const check = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(check.status, 1, check.stdout + check.stderr)
    assert.match(check.stdout, /PROBLEM {2}kubernetes: RBAC: the sidecar may not patch deployments\.apps in namespace "shop", needed for writing activity and scaling Deployments/)
    assert.doesNotMatch(check.stdout, /leases/, 'Leases are no longer used')
    assert.match(check.stdout, /ok +kubernetes: \d+ backend\(s\): .*deployment\/shop\/guarded \[guarded\.k8s\.test\] scaled_to_zero/)
  })

  it('the RBAC of examples/kubernetes grants everything `check` asks for', async () => {
    // Applied as shipped, in this test's namespace instead of `apps`.
    for (const doc of parseAllDocuments(readFileSync(EXAMPLE_RBAC, 'utf8')).map((d) => d.toJS())) {
      doc.metadata.namespace = NS
      for (const subject of doc.subjects ?? []) subject.namespace = NS
      const collection =
        doc.kind === 'ServiceAccount' ? `/api/v1/namespaces/${NS}/serviceaccounts` : `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/${doc.kind === 'Role' ? 'roles' : 'rolebindings'}`
      await cp.ok('POST', collection, doc)
    }
    const token = await serviceAccountToken(cp, NS, 'relight-sidecar', false)
    const file = join(cp.dir, 'example-rbac.yaml')
    writeFileSync(file, ['providers:', '  kubernetes:', `    kubeconfig: ${cp.kubeconfigFor('relight-sidecar', token)}`, `    namespaces: [${NS}]`, ''].join('\n'))
    const check = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(check.status, 0, check.stdout + check.stderr)
    assert.match(check.stdout, /ok +kubernetes: RBAC: every permission the sidecar needs is granted in namespace "shop"/)
  })

  it("deploy/kubernetes's `kubectl exec … check` passes against the running sidecar of its relight.yaml", async (t) => {
    // deploy/kubernetes/base/relight.yaml with ports and state directory moved, its environment
    // as the pod sets it, and the token the example's RBAC grants (the previous test applied it)
    // as its kubeconfig (in the pod: in-cluster).
    const [listen, log] = [await freePort(), await freePort()]
    const token = await serviceAccountToken(cp, NS, 'relight-sidecar', false)
    const config = readFileSync(DEPLOY_CONFIG, 'utf8')
      .replace('127.0.0.1:9123', `127.0.0.1:${listen}`)
      .replace('127.0.0.1:9124', `127.0.0.1:${log}`)
      .replace('/var/lib/relight', join(cp.dir, 'edge-state'))
      .replace('  kubernetes:\n', `  kubernetes:\n    kubeconfig: ${cp.kubeconfigFor('relight-sidecar-edge', token)}\n`)
    const file = join(cp.dir, 'edge-relight.yaml')
    writeFileSync(file, config)
    const env = { POD_NAMESPACE: NS, RELIGHT_ADMIN_TOKEN: testSecret() }
    Object.assign(process.env, env) // startSidecarProcess passes this process's environment on
    t.after(() => {
      for (const k of Object.keys(env)) delete process.env[k]
    })
    const sidecar = await startSidecarProcess(file)
    t.after(async () => {
      sidecar.child.kill('SIGTERM')
      await sidecar.exited
    })
    await sidecar.waitFor((l) => l.msg === 'relight-sidecar listening', 'the edge sidecar to listen', 30_000)
    const before = sidecar.lines().length
    const check = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, ...env } })
    assert.equal(check.status, 0, check.stdout + check.stderr)
    assert.match(check.stdout, new RegExp(`running sidecar: pid ${sidecar.pid}\\b.*healthz on 127\\.0\\.0\\.1:${listen}: ok`))
    assert.match(check.stdout, /live kubernetes: up, \d+ backend\(s\)/)
    assert.deepEqual(sidecar.lines().slice(before).filter((l) => /access.log|connection/i.test(String(l.msg))), [], 'check disturbed nothing')
  })
})
