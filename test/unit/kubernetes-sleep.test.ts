/**
 * sleepIf on recorded answers (providers/kubernetes/workload-sleep.ts; issue 21 §4.6): a changed
 * token in the view costs no request; the fresh read decides and bounds; the scale-down PATCH
 * carries the read's resourceVersion; a 409 is judged again.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'
import { fedProvider, recordPatches, WEB_ID, WEB_PATH, webWorkload } from '../helpers/kubernetes-shared.js'

const A = 'v1 edge-1 aaaaaaaaaaaaaaaa 0'
const B = 'v1 edge-2 bbbbbbbbbbbbbbbb 0'
const CONFLICT = { kind: 'Status', status: 'Failure', reason: 'Conflict', code: 409, message: 'Operation cannot be fulfilled on deployments.apps "web": the object has been modified; please apply your changes to the latest version and try again' }

describe('kubernetes sleepIf', () => {
  const k8s = recordedKubernetes()

  it('the view already shows another token: changed, and no request at all', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, B))
    const answer = await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000))
    assert.equal(answer.result, 'changed')
    assert.equal(answer.result === 'changed' && answer.observation.version, B)
    assert.equal(p.view.live, true, 'no request failed (one would have distrusted the view)')
  })

  it('the fresh read shows a newer token: changed (seen now), no PATCH', async () => {
    const clock = { t: 1000 }
    const p = fedProvider(k8s, webWorkload('10', 1, A), clock)
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('12', 1, B), JSON_HEADERS)
    const sent = recordPatches(k8s, () => ({ status: 500, body: {} }))
    clock.t = 7000
    const answer = await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000))
    assert.deepEqual(answer, { result: 'changed', observation: { version: B, seenAt: 7000, agoMs: 0, live: true } })
    assert.deepEqual(sent, [])
  })

  it('a fresh read slower than 1 s: changed, and the view is not live until it is listed again', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('10', 1, A), JSON_HEADERS).delay(1500)
    const sent = recordPatches(k8s, () => ({ status: 500, body: {} }))
    const started = performance.now()
    const answer = await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000))
    assert.equal(answer.result, 'changed')
    assert.ok(performance.now() - started < 1400, 'bounded by the 1 s fresh-read limit')
    assert.equal(p.view.live, false)
    assert.equal(p.shared.observe(WEB_ID)?.live, false)
    assert.deepEqual(sent, [])
  })

  it('a fresh read the API server refuses (500, 403): changed, no PATCH, and the view stays live (the engine answers, it is not frozen)', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(500, { kind: 'Status', code: 500, message: 'etcdserver: request timed out' }, JSON_HEADERS)
    const sent = recordPatches(k8s, () => ({ status: 500, body: {} }))
    assert.equal((await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000))).result, 'changed')
    assert.equal(p.view.live, true)
    assert.deepEqual(sent, [])
  })

  it('unchanged: ONE PATCH with the read resourceVersion as precondition and replicas 0 ⇒ slept', async () => {
    const p = fedProvider(k8s, webWorkload('10', 2, A))
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('11', 2, A), JSON_HEADERS)
    const sent = recordPatches(k8s, () => ({ status: 200, body: webWorkload('12', 0, A) }))
    assert.deepEqual(await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000)), { result: 'slept' })
    assert.deepEqual(sent, [{ metadata: { resourceVersion: '11' }, spec: { replicas: 0 } }])
  })

  it('409 with the token unchanged (a controller status write): read again and retry with the new resourceVersion', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('11', 1, A), JSON_HEADERS)
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('13', 1, A), JSON_HEADERS)
    const sent = recordPatches(k8s, (_body, n) => (n === 1 ? { status: 409, body: CONFLICT } : { status: 200, body: webWorkload('14', 0, A) }))
    assert.deepEqual(await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000)), { result: 'slept' })
    assert.deepEqual(sent.map((b) => b.metadata.resourceVersion), ['11', '13'])
  })

  it('409 because another sidecar wrote a token: changed, and no second PATCH', async () => {
    const p = fedProvider(k8s, webWorkload('10', 1, A))
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('11', 1, A), JSON_HEADERS)
    k8s.api.intercept({ path: WEB_PATH, method: 'GET' }).reply(200, webWorkload('12', 1, B), JSON_HEADERS)
    const sent = recordPatches(k8s, () => ({ status: 409, body: CONFLICT }))
    const answer = await p.shared.sleepIf(WEB_ID, A, AbortSignal.timeout(5000))
    assert.equal(answer.result, 'changed')
    assert.equal(answer.result === 'changed' && answer.observation.version, B)
    assert.equal(sent.length, 1)
  })
})
