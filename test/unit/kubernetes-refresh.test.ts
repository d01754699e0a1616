/**
 * refresh (providers/kubernetes/workload-refresh.ts): the request path's read while the view is
 * not live: GET the workload (and its pods when up); the view follows the read.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'
import { fedProvider, WEB_ID, WEB_PATH, webWorkload } from '../helpers/kubernetes-shared.js'

describe('kubernetes refresh', () => {
  const k8s = recordedKubernetes()

  it('asleep, awake (pods read into the view), gone', async () => {
    const clock = { t: 1000 }
    const p = fedProvider(k8s, webWorkload('10', 1, 'v1 a 1111111111111111 0'), clock)
    p.view.connected('pods@shop', false)
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('12', 0, 'v1 b 2222222222222222 0'), JSON_HEADERS)
    clock.t = 3000
    assert.equal(await p.shared.refresh(WEB_ID, AbortSignal.timeout(5000)), 'asleep')
    assert.deepEqual(p.shared.observe(WEB_ID), { version: 'v1 b 2222222222222222 0', seenAt: 3000, agoMs: 0, live: false })
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('13', 1, 'v1 b 2222222222222222 0'), JSON_HEADERS)
    const pod = {
      metadata: { name: 'web-abc-1', namespace: 'shop', labels: { app: 'web', 'pod-template-hash': 'abc' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'web-abc', controller: true }] },
      status: { podIP: '127.0.0.9', conditions: [{ type: 'Ready', status: 'True' }] },
    }
    k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb', method: 'GET' }).reply(200, { metadata: { resourceVersion: '13' }, items: [pod] }, JSON_HEADERS)
    assert.equal(await p.shared.refresh(WEB_ID, AbortSignal.timeout(5000)), 'awake')
    const entry = p.view.entries.get(WEB_ID)
    assert.deepEqual(entry && p.view.podsOf(entry).map((x) => x.ip), ['127.0.0.9'])
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(404, { kind: 'Status', code: 404, reason: 'NotFound' }, JSON_HEADERS)
    assert.equal(await p.shared.refresh(WEB_ID, AbortSignal.timeout(5000)), 'gone')
  })
})
