/**
 * wake and recordActivity on recorded answers (providers/kubernetes/workload-wake.ts,
 * workload-activity.ts; issue 21 §3, §4.6): every wake writes a token, in ONE merge PATCH with the
 * replicas when at 0, alone when already up; a token write answered with replicas 0 says `asleep`.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { Pod } from '../../sidecar/providers/kubernetes/workloads.js'
import { recordedKubernetes } from '../helpers/kubernetes-recorded.js'
import { fedProvider, recordPatches, WEB_ID, webWorkload } from '../helpers/kubernetes-shared.js'
import { until } from '../helpers/wait.js'

const A = 'v1 edge-2 aaaaaaaaaaaaaaaa 0'
const TOKEN = /^v1 edge-1 [0-9a-f]{16} (\d+)$/

function readyPod(): Pod {
  return {
    metadata: { name: 'web-abc-1', namespace: 'shop', labels: { app: 'web', 'pod-template-hash': 'abc' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-abc', controller: true }] },
    status: { podIP: '127.0.0.9', conditions: [{ type: 'Ready', status: 'True' }] },
  }
}

describe('kubernetes wake and recordActivity', () => {
  const k8s = recordedKubernetes()

  it('a wake that finds the workload up still writes a token (and nothing else), and waits on the view, not on a pod list', async () => {
    const p = fedProvider(k8s, webWorkload('10', 3, A))
    p.view.podEvent('ADDED', readyPod())
    const sent = recordPatches(k8s, (body) => ({ status: 200, body: webWorkload('11', 3, body.metadata.annotations['relight.activity']) }))
    const info = await p.wake(WEB_ID, AbortSignal.timeout(5000))
    assert.equal(sent.length, 1)
    assert.deepEqual(Object.keys(sent[0]), ['metadata'], 'no spec: the replica count (3, e.g. an HPA) is left alone')
    assert.match(sent[0].metadata.annotations['relight.activity'], TOKEN)
    assert.equal(info.state, 'running')
    assert.deepEqual(info.upstreams, ['127.0.0.9:8080'])
    assert.equal(p.shared.observe(WEB_ID)?.version, sent[0].metadata.annotations['relight.activity'], 'the own write is what the view observes')
  })

  it('a wake from 0 is one PATCH with token and awake count; a token-only wake whose answer says 0 (slept meanwhile) scales up in a second one', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    // The view thought it up; the token write's answer shows another sidecar scaled it down.
    const sent = recordPatches(k8s, (body, n) => ({ status: 200, body: webWorkload(String(10 + n), n === 1 ? 0 : body.spec.replicas, body.metadata.annotations['relight.activity']) }))
    const waking = p.wake(WEB_ID, AbortSignal.timeout(5000))
    await until(() => sent.length === 2, 'the second PATCH')
    p.view.podEvent('ADDED', readyPod())
    await waking
    assert.equal(sent.length, 2)
    assert.equal(sent[0].spec, undefined)
    assert.equal(sent[1].spec.replicas, 1)
    assert.match(sent[1].metadata.annotations['relight.activity'], TOKEN)
  })

  it('recordActivity: one token-only PATCH carrying ago_ms; the answer at 0 replicas says asleep', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    const sent = recordPatches(k8s, (body, n) => ({ status: 200, body: webWorkload(String(10 + n), n === 1 ? 1 : 0, body.metadata.annotations['relight.activity']) }))
    const first = await p.shared.recordActivity(WEB_ID, 1234, AbortSignal.timeout(5000))
    assert.equal(first.state, 'awake')
    assert.equal(TOKEN.exec(sent[0].metadata.annotations['relight.activity'])?.[1], '1234')
    assert.deepEqual(Object.keys(sent[0]), ['metadata'])
    assert.equal(first.state === 'awake' && first.observation.version, sent[0].metadata.annotations['relight.activity'])
    assert.equal(first.state === 'awake' && first.observation.agoMs, 1234)
    assert.deepEqual(await p.shared.recordActivity(WEB_ID, 0, AbortSignal.timeout(5000)), { state: 'asleep' })
  })
})
