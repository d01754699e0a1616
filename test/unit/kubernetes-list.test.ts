/**
 * list() (providers/kubernetes/workload-list.ts): from the view while it is live (0 requests: the
 * informers' lists are the truth), from the API while it is not.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'
import { fedProvider, WEB_ID, webWorkload } from '../helpers/kubernetes-shared.js'

describe('kubernetes list', () => {
  const k8s = recordedKubernetes()

  it('live view: answered from the cache with no request; not live: from the API', async () => {
    const p = fedProvider(k8s, webWorkload('10', 0))
    // No interceptor: any request would fail the list.
    assert.deepEqual((await p.list(AbortSignal.timeout(5000))).map((b) => [b.id, b.state]), [[WEB_ID, 'scaled_to_zero']])
    p.view.connected('pods@shop', false)
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments', method: 'GET' }).reply(200, { metadata: {}, items: [webWorkload('11', 0), { ...webWorkload('12', 0), metadata: { ...webWorkload('12', 0).metadata, name: 'api' } }] }, JSON_HEADERS)
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/statefulsets', method: 'GET' }).reply(200, { metadata: {}, items: [] }, JSON_HEADERS)
    assert.deepEqual((await p.list(AbortSignal.timeout(5000))).map((b) => b.id), [WEB_ID, 'deployment/shop/api'])
  })
})
