/**
 * Against a real Kubernetes API server (test/k8s-control-plane) with the stand-in kubelet:
 * two sidecars in front of one cluster share each workload's last activity in a Lease, so
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
import type { SleepContext, SleepMode } from '../../sidecar/core/provider.js'
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

/** Counts what a sidecar's provider answered to the core's sleep requests (a spy on the real provider). */
function spySleeps(provider: KubernetesProvider): { done: number; refused: number } {
  const counts = { done: 0, refused: 0 }
  const real = provider.sleep.bind(provider)
  provider.sleep = async (id: string, mode: SleepMode, signal: AbortSignal, context?: SleepContext) => {
    try {
      await real(id, mode, signal, context)
      counts.done++
    } catch (err) {
      if (isRelightError(err, 'RELIGHT_ERR_SLEEP_REFUSED')) counts.refused++
      throw err
    }
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
    // Traffic through A only until B, past its idle timeout, asks to sleep and is refused.
    await until(async () => {
      assert.equal(await auth(a), 200)
      assert.equal(await replicasOf(cp, 'Deployment', NS, 'shared'), 1)
      return (spies[1]?.refused ?? 0) >= 1
    }, `B to ask to scale down and be refused (${JSON.stringify(spies)})`, 30_000, 200)
    assert.deepEqual(spies.map((s) => s.done), done, 'no scale-down while A had traffic')
    const lease = await cp.ok<{ spec: { holderIdentity: string; renewTime: string } }>('GET', `/apis/coordination.k8s.io/v1/namespaces/${NS}/leases/relight-deployment-shared`)
    assert.equal(lease.spec.holderIdentity, 'sidecar-a')
    assert.ok(Date.now() - Date.parse(lease.spec.renewTime) < 1500, `renewed recently: ${lease.spec.renewTime}`)
  })

  it('silence: exactly one sidecar scales the Deployment to 0, and both see it asleep', async () => {
    await bothRouting()
    const done = (spies[0]?.done ?? 0) + (spies[1]?.done ?? 0)
    await until(async () => (await replicasOf(cp, 'Deployment', NS, 'shared')) === 0, 'the Deployment to be scaled to 0', 20_000, 100)
    await until(() => sidecars.every((s) => s.sidecar.registry.get(key)?.phase === 'asleep'), 'both sidecars to see it asleep')
    await kubelet.waitGone('shared-')
    assert.equal((spies[0]?.done ?? 0) + (spies[1]?.done ?? 0) - done, 1, `one scale-down: ${JSON.stringify(spies)}`)
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
