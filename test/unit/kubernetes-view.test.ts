/**
 * The Kubernetes view (providers/kubernetes/view.ts; issue 21 §4.2), driven directly with
 * informer events and a scripted monotonic clock: own writes are recognised (also when their
 * MODIFIED arrives before the PATCH answers), a token change moves seenAt and carries ago_ms,
 * a reconnect resets every seenAt and tells the listeners, waiters resolve from the cache.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { KubernetesView } from '../../sidecar/providers/kubernetes/view.js'
import type { Pod, Workload } from '../../sidecar/providers/kubernetes/workloads.js'

const ID = 'deployment/shop/web'
const inScope = () => true

function web(rv: string, replicas: number, token?: string, status: Record<string, number> = {}): Workload {
  return {
    metadata: { name: 'web', namespace: 'shop', resourceVersion: rv, annotations: { 'relight.domain': 'web.example.com', ...(token ? { 'relight.activity': token } : {}) } },
    spec: { replicas, selector: { matchLabels: { app: 'web' } } },
    status,
  }
}

function pod(name: string, ready: boolean): Pod {
  return {
    metadata: { name, namespace: 'shop', labels: { app: 'web', 'pod-template-hash': 'abc' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-abc', controller: true }] },
    status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }] },
  }
}

/** A view fed by 3 collections (deployments, statefulsets, pods), all listed at `t`. */
function liveView(clock: { t: number }): KubernetesView {
  const view = new KubernetesView('relight', () => clock.t)
  view.expect(3)
  view.relistWorkloads('deployment', inScope, [web('10', 1, 'v1 b 1111111111111111 0')])
  view.relistPods(inScope, [])
  for (const key of ['deployment@shop', 'statefulset@shop', 'pods@shop']) view.connected(key, true)
  return view
}

describe('kubernetes view', () => {
  it('own writes are silent (MODIFIED before or after the PATCH answer); a controller status write after them is foreign but moves nothing', () => {
    const clock = { t: 1000 }
    const view = liveView(clock)
    clock.t = 2000
    // MODIFIED first, answer second.
    const w1 = view.ownWrite(ID, 'v1 a 2222222222222222 0', undefined)
    assert.equal(view.workloadEvent('deployment', 'MODIFIED', web('11', 1, 'v1 a 2222222222222222 0')).change, 'own')
    view.settle('deployment', ID, w1, web('11', 1, 'v1 a 2222222222222222 0'))
    assert.equal(view.observe(ID)?.version, 'v1 a 2222222222222222 0')
    assert.equal(view.observe(ID)?.seenAt, 2000)
    // Answer first, MODIFIED second (recognised by the answer's resourceVersion).
    clock.t = 3000
    const w2 = view.ownWrite(ID, 'v1 a 3333333333333333 0', 3)
    view.settle('deployment', ID, w2, web('13', 3, 'v1 a 3333333333333333 0'))
    assert.equal(view.workloadEvent('deployment', 'MODIFIED', web('13', 3, 'v1 a 3333333333333333 0')).change, 'own')
    // The controller's status write (observedGeneration) that follows: foreign, same token: seenAt stays.
    clock.t = 4000
    assert.equal(view.workloadEvent('deployment', 'MODIFIED', web('14', 3, 'v1 a 3333333333333333 0', { observedGeneration: 4 })).change, 'foreign')
    assert.equal(view.observe(ID)?.seenAt, 3000)
    // A write of ours with another token does not make another sidecar's MODIFIED ours.
    view.ownWrite(ID, 'v1 a 4444444444444444 0', undefined)
    assert.equal(view.workloadEvent('deployment', 'MODIFIED', web('15', 3, 'v1 b 5555555555555555 0')).change, 'foreign')
  })

  it("another sidecar's token moves seenAt to now and carries its ago_ms; an equal token moves nothing", () => {
    const clock = { t: 1000 }
    const view = liveView(clock)
    assert.deepEqual(view.observe(ID), { version: 'v1 b 1111111111111111 0', seenAt: 1000, agoMs: 0, live: true })
    clock.t = 5000
    view.workloadEvent('deployment', 'MODIFIED', web('20', 1, 'v1 b 6666666666666666 750'))
    assert.deepEqual(view.observe(ID), { version: 'v1 b 6666666666666666 750', seenAt: 5000, agoMs: 750, live: true })
    clock.t = 9000
    view.workloadEvent('deployment', 'MODIFIED', web('21', 1, 'v1 b 6666666666666666 750'))
    assert.equal(view.observe(ID)?.seenAt, 5000)
  })

  it('a failure makes the view not live; the re-list resets every seenAt and tells onReconnect once; distrust needs a re-list too', () => {
    const clock = { t: 1000 }
    const view = liveView(clock)
    let reconnects = 0
    view.onReconnect(() => reconnects++)
    let distrusted = 0
    view.onDistrust(() => distrusted++)
    clock.t = 2000
    view.connected('pods@shop', false)
    assert.equal(view.observe(ID)?.live, false)
    clock.t = 60_000
    view.connected('pods@shop', true)
    assert.deepEqual(view.observe(ID), { version: 'v1 b 1111111111111111 0', seenAt: 60_000, agoMs: 0, live: true })
    assert.equal(reconnects, 1)
    view.distrust()
    assert.equal(view.observe(ID)?.live, false)
    assert.equal(distrusted, 1)
    clock.t = 70_000
    for (const key of ['deployment@shop', 'statefulset@shop', 'pods@shop']) view.connected(key, true)
    assert.equal(view.observe(ID)?.seenAt, 70_000)
    assert.equal(reconnects, 2)
  })

  it('waitFor resolves from pod events on the cache (no request) and rejects with the signal', async () => {
    const view = liveView({ t: 0 })
    let asked = 0
    const ready = view.waitFor(ID, (e, pods) => (asked++, e && pods.some((p) => p.ready) ? pods.length : undefined), AbortSignal.timeout(5000))
    // Another workload's pod does not ask this waiter again.
    const other = pod('api-xyz-1', true)
    other.metadata.labels = { app: 'api', 'pod-template-hash': 'xyz' }
    view.podEvent('ADDED', other)
    assert.equal(asked, 1, 'asked once (at the start), not for an unrelated pod')
    view.podEvent('ADDED', pod('web-abc-1', false))
    assert.equal(view.waiting, 1)
    view.podEvent('MODIFIED', pod('web-abc-1', true))
    assert.equal(await ready, 1)
    assert.equal(view.waiting, 0)
    const stop = new AbortController()
    const never = view.waitFor(ID, () => undefined, stop.signal)
    stop.abort(new Error('wake_timeout'))
    await assert.rejects(never, /wake_timeout/)
    assert.equal(view.waiting, 0)
  })
})
