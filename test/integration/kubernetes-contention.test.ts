/**
 * The contention suite of issue 21, short form, on the test control plane (etcd, kube-apiserver,
 * kube-controller-manager 1.20) with the stand-in kubelet: three sidecar processes, each behind
 * its own real Caddy and its own counting, pausable TLS proxy to the API server (its own CA,
 * back-dated so a sidecar 120 s behind still trusts it), one Deployment, idle_timeout 4 s. Truth
 * from the test's own watch of the Deployment (test/helpers/contention.ts); the scenarios and what
 * they assert are in test/helpers/contention-suite.ts. Long form: `npm run soak:cluster`.
 */
import { after, before, describe } from 'node:test'
import { caddySkip } from '../helpers/caddy.js'
import { Cluster } from '../helpers/contention.js'
import { contentionTests } from '../helpers/contention-suite.js'
import { type ControlPlane, createNamespace, k8sSkip, startControlPlane } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'

const skip = k8sSkip() ?? caddySkip()
const IDLE_MS = 4000
const NS = 'contention'

describe('kubernetes contention: three sidecars, one Deployment', { skip, timeout: 540_000 }, () => {
  let cp: ControlPlane
  let kubelet: StandInKubelet
  let c: Cluster

  before(async () => {
    cp = await startControlPlane()
    await createNamespace(cp, NS)
    kubelet = await StandInKubelet.start(cp, NS)
    c = await Cluster.start({ engine: 'kubernetes', sidecars: 3, idleMs: IDLE_MS, cp, namespace: NS })
  })
  after(async () => {
    await c?.close()
    await kubelet?.close()
    await cp?.close()
  })

  contentionTests({ cluster: () => c, idleMs: IDLE_MS, api: 'API server' })
})
