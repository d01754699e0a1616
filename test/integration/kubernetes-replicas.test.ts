/**
 * Against a real Kubernetes API server (test/k8s-control-plane) with the stand-in kubelet:
 * two sidecars in front of one cluster share each workload's activity in its `relight.activity` annotation, so
 * traffic through one keeps the other from scaling down, and silence ends in one scale-down.
 * Then the provider contract suite.
 */
import assert from 'node:assert/strict'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import { isRelightError } from '../../sidecar/core/errors.js'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { type ControlPlane, createNamespace, k8sSkip, replicasOf, serviceAccountToken, startControlPlane, workload, workloadUrl } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const NS = 'team'
const skip = k8sSkip()

let cp: ControlPlane
let kubelet: StandInKubelet
if (!skip) {
  before(async () => {
    cp = await startControlPlane()
    await createNamespace(cp, NS)
    kubelet = await StandInKubelet.start(cp, NS)
  })
  after(async () => {
    await kubelet?.close()
    await cp?.close()
  })
}

/** Counts what a sidecar's provider answered to the core's conditional scale-downs (a spy on the real provider's port). */
function spySleeps(provider: KubernetesProvider): { done: number; refused: number } {
  const counts = { done: 0, refused: 0 }
  const shared = provider.shared as { sleepIf: KubernetesProvider['shared']['sleepIf'] }
  const real = shared.sleepIf.bind(shared)
  shared.sleepIf = async (id, unchangedSince, signal) => {
    const answer = await real(id, unchangedSince, signal)
    if (answer.result === 'slept') counts.done++
    else counts.refused++
    return answer
  }
  return counts
}

describe('kubernetes: two sidecars share the scale-down decision', { skip, timeout: 120_000 }, () => {
  const sidecars: TestSidecar[] = []
  const spies: { done: number; refused: number }[] = []
  const key = 'kubernetes:deployment/team/shared'

  async function auth(sc: TestSidecar): Promise<number> {
    const res = await request(`${sc.url}/_relight/auth`, { headers: { host: 'shared.k8s.test', accept: 'application/json' } })
    await res.body.dump()
    return res.statusCode
  }

  before(async () => {
    const port = await freePort()
    await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'shared', NS, port, { 'relight.domain': 'shared.k8s.test', 'relight.idle_timeout': '1500ms' }))
    for (const name of ['sidecar-a', 'sidecar-b']) {
      const sc = await startTestSidecar(
        ['min_idle_timeout: 100ms', 'providers:', '  kubernetes:', `    kubeconfig: ${cp.kubeconfig}`, `    namespaces: [${NS}]`, `    identity: ${name}`, ''].join('\n'),
        { accessLog: false },
      )
      sidecars.push(sc)
      spies.push(spySleeps(sc.sidecar.registry.providers[0] as KubernetesProvider))
    }
  })

  after(async () => {
    await Promise.all(sidecars.map((s) => s.close()))
  })

  /** Wake the Deployment through A and wait until B routes it too (each test starts from here). */
  async function bothRouting(): Promise<void> {
    const [a, b] = sidecars as [TestSidecar, TestSidecar]
    assert.equal(await auth(a), 200)
    // B learns from its watch that the Deployment runs, and routes it too.
    await until(() => b.sidecar.registry.get(key)?.phase === 'running', 'B to see the Deployment running')
  }

  it('traffic through one sidecar keeps the other from scaling down', async () => {
    await bothRouting()
    const a = sidecars[0] as TestSidecar
    const done = spies.map((s) => s.done)
    // Traffic through A only, for three of B's idle timeouts (1.5 s): B, idle itself, sees A's
    // activity tokens in the Deployment's annotation and never scales it down.
    const started = Date.now()
    await until(async () => {
      assert.equal(await auth(a), 200)
      assert.equal(await replicasOf(cp, 'Deployment', NS, 'shared'), 1)
      return Date.now() - started > 4500
    }, 'three idle timeouts of traffic through A', 30_000, 200)
    assert.deepEqual(spies.map((s) => s.done), done, 'no scale-down while A had traffic')
    const d = await cp.ok<{ metadata: { annotations: Record<string, string> } }>('GET', workloadUrl('Deployment', NS, 'shared'))
    assert.match(d.metadata.annotations['relight.activity'] ?? '', /^v1 sidecar-a [0-9a-f]{16} \d+$/, 'the last activity token is A\'s')
  })

  it('silence: exactly one sidecar scales the Deployment to 0, and both see it asleep', async () => {
    await bothRouting()
    // The truth from the engine: the Deployment's own watch, counting spec.replicas going to 0.
    const stop = new AbortController()
    const downs = { count: 0 }
    const following = (async () => {
      let last = -1
      let buffer = ''
      const stream = await cp.stream(`${workloadUrl('Deployment', NS)}?watch=1&fieldSelector=metadata.name%3Dshared`, stop.signal)
      for await (const chunk of stream) {
        buffer += chunk.toString('utf8')
        for (let nl = buffer.indexOf('\n'); nl >= 0; nl = buffer.indexOf('\n')) {
          const event = JSON.parse(buffer.slice(0, nl)) as { object: { spec?: { replicas?: number } } }
          buffer = buffer.slice(nl + 1)
          const replicas = event.object.spec?.replicas ?? 0
          if (replicas === 0 && last > 0) downs.count++
          last = replicas
        }
      }
    })().catch(() => undefined)
    await until(async () => (await replicasOf(cp, 'Deployment', NS, 'shared')) === 0, 'the Deployment to be scaled to 0', 20_000, 100)
    await until(() => sidecars.every((s) => s.sidecar.registry.get(key)?.phase === 'asleep'), 'both sidecars to see it asleep')
    await kubelet.waitGone('shared-')
    stop.abort()
    await following
    assert.equal(downs.count, 1, `one scale-down in the engine (sleepIf answers: ${JSON.stringify(spies)})`)
    // Either sidecar wakes it again.
    assert.equal(await auth(sidecars[1] as TestSidecar), 200)
    assert.equal(await replicasOf(cp, 'Deployment', NS, 'shared'), 1)
  })
})

describe('kubernetes: credentials', { skip, timeout: 60_000 }, () => {
  it('in-cluster: the service account token file is used, and read again after a 401 (rotated token)', async () => {
    const sa = 'in-cluster'
    const token = await serviceAccountToken(cp, NS, sa)
    await cp.ok('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: 'in-cluster-admin' },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'cluster-admin' },
      subjects: [{ kind: 'ServiceAccount', name: sa, namespace: NS }],
    })
    const dir = join(cp.dir, 'serviceaccount')
    mkdirSync(dir)
    // The sidecar starts with a token the API server no longer accepts (rotated since)...
    writeFileSync(join(dir, 'token'), 'expired-token')
    writeFileSync(join(dir, 'ca.crt'), readFileSync(cp.ca))
    writeFileSync(join(dir, 'namespace'), NS)
    const { port } = new URL(cp.url)
    const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ identity: 'pod' }), pino({ level: 'silent' }), {
      env: { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: port },
      serviceAccountDir: dir,
    })
    try {
      const signal = AbortSignal.timeout(30_000)
      await assert.rejects(provider.list(signal), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH') && /in-cluster service account \(401 Unauthorized\)/.test(e.message))
      // ...and the kubelet writes the fresh one into the file: the next 401 reads it again.
      writeFileSync(join(dir, 'token'), token)
      const listed = await provider.list(signal)
      assert.ok(listed.some((b) => b.id.startsWith('deployment/team/')), 'the namespace comes from the service account folder')
    } finally {
      await provider.close()
    }
  })

  it('a kubeconfig with a client certificate (no token) lists, wakes and sleeps', async () => {
    const port = await freePort()
    await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'certified', NS, port, { 'relight.domain': 'certified.k8s.test' }))
    const kubeconfig = await cp.certKubeconfig('edge-cert', 'system:masters')
    const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ kubeconfig, namespaces: [NS], identity: 'cert' }), pino({ level: 'silent' }), { baseDir: cp.dir })
    try {
      const signal = AbortSignal.timeout(30_000)
      const listed = await provider.list(signal)
      assert.equal(listed.find((b) => b.id === 'deployment/team/certified')?.state, 'scaled_to_zero')
      const woken = await provider.wake('deployment/team/certified', signal)
      assert.equal(woken.state, 'running')
      await provider.sleep('deployment/team/certified', 'scale', signal)
      assert.equal(await replicasOf(cp, 'Deployment', NS, 'certified'), 0)
    } finally {
      await provider.close()
    }
  })
})

if (skip) {
  describe('provider contract: kubernetes', { skip }, () => undefined)
} else {
  runProviderContract('kubernetes (real API server, stand-in kubelet)', {
    timeout: 30_000,
    make: async () => {
      const port = await freePort()
      await cp.ok('POST', workloadUrl('StatefulSet', NS), workload('StatefulSet', 'contract', NS, port, { 'relight.domain': 'contract.k8s.test' }))
      const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ kubeconfig: cp.kubeconfig, namespaces: [NS], identity: 'contract' }), pino({ level: 'silent' }), { baseDir: cp.dir })
      return {
        provider,
        id: 'statefulset/team/contract',
        cleanup: async () => {
          await provider.close()
        },
      }
    },
  })
}
