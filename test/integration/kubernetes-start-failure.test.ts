/**
 * A crash-looping pod fails the wake with RELIGHT_ERR_BACKEND_EXITED at once, not at
 * wake_timeout (providers/kubernetes/start-failure.ts), on a real API server (test/k8s-control-plane)
 * with the stand-in kubelet reporting the pod's container in CrashLoopBackOff (CRASH_IMAGE).
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { isRelightError } from '../../sidecar/core/errors.js'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import { type ControlPlane, createNamespace, k8sSkip, startControlPlane, workload, workloadUrl } from '../helpers/k8s.js'
import { CRASH_IMAGE, StandInKubelet } from '../helpers/kubelet.js'
import { freePort } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const NS = 'k8s-startfail'
const skip = k8sSkip()

describe('kubernetes: a crash-looping pod fails the wake (real API server)', { skip, timeout: 180_000 }, () => {
  let cp: ControlPlane
  let kubelet: StandInKubelet
  let provider: KubernetesProvider | undefined
  const stop = new AbortController()

  before(async () => {
    cp = await startControlPlane()
    await createNamespace(cp, NS)
    kubelet = await StandInKubelet.start(cp, NS)
  })
  after(async () => {
    stop.abort()
    await provider?.close()
    await kubelet?.close()
    await cp?.close()
  })

  it('wake rejects with BACKEND_EXITED naming CrashLoopBackOff, well before the wake timeout', async () => {
    const body = workload('Deployment', 'crasher', NS, await freePort(), { 'relight.domain': 'crasher.k8s.test' }) as { spec: { template: { spec: { containers: { image: string }[] } } } }
    body.spec.template.spec.containers[0]!.image = CRASH_IMAGE
    await cp.ok('POST', workloadUrl('Deployment', NS), body)
    provider = new KubernetesProvider(kubernetesConfigSchema.parse({ kubeconfig: cp.kubeconfig, namespaces: [NS], identity: 'k8s-startfail' }), pino({ level: 'silent' }), { baseDir: cp.dir })
    provider.watch(() => undefined, stop.signal)
    const p = provider
    await until(() => p.view.live && p.view.entries.has(`deployment/${NS}/crasher`), 'the view lists the workload', 30_000)
    const started = Date.now()
    await assert.rejects(p.wake(`deployment/${NS}/crasher`, AbortSignal.timeout(60_000)), (err) => {
      assert.ok(isRelightError(err, 'RELIGHT_ERR_BACKEND_EXITED'), String(err))
      assert.match((err as Error).message, /container app: CrashLoopBackOff \(last exit code 1\)/)
      return true
    })
    assert.ok(Date.now() - started < 30_000, `failed after ${Date.now() - started} ms, not at the 60 s timeout`)
    // The kubelet counts a crash when the API server has answered its status write; the provider's
    // watch can deliver that status first, so wait for the count rather than read it at once.
    await until(() => kubelet.counts.crashed >= 1, 'the stand-in kubelet counted its crash-looping pod', 10_000)
    assert.equal(kubelet.counts.crashed, 1)
  })
})
