/**
 * Kubernetes provider against answers recorded from a real kube-apiserver 1.20
 * (test/fixtures/kubernetes), replayed with undici's MockAgent: discovery, wake, sleep with the
 * activity token, RBAC and credential errors in words, and the informer's relist on 410 Gone.
 * The same flows run against the live API server in test/integration/kubernetes-*.test.ts.
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import pino from 'pino'
import { isRelightError } from '../../sidecar/core/errors.js'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { runInformer } from '../../sidecar/providers/kubernetes/informer.js'
import { checkPermissions } from '../../sidecar/providers/kubernetes/rbac.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'

const FIXTURES = new URL('../../../test/fixtures/kubernetes/', import.meta.url)
const fixture = (name: string): any => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'))
const text = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8')
const silent = pino({ level: 'silent' })

describe('kubernetes provider on recorded answers', () => {
  const k8s = recordedKubernetes()

  const provider = (extra: Record<string, unknown> = {}) =>
    new KubernetesProvider(kubernetesConfigSchema.parse({ namespaces: ['shop'], identity: 'edge-1', ...extra }), silent, { client: k8s.client })

  it('list(): annotated Deployments and StatefulSets, pods only for those scaled up', async () => {
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments', method: 'GET' }).reply(200, fixture('deployments.json'), JSON_HEADERS)
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/statefulsets', method: 'GET' }).reply(200, fixture('statefulsets.json'), JSON_HEADERS)
    k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Ddb', method: 'GET' }).reply(200, fixture('pods-db.json'), JSON_HEADERS)
    const list = await provider().list(AbortSignal.timeout(5000))
    assert.deepEqual(
      list.map((b) => [b.id, b.state, b.hosts, b.upstreams]),
      [
        ['deployment/shop/web', 'scaled_to_zero', ['web.example.com'], []],
        ['statefulset/shop/db', 'running', ['db.example.com'], ['127.0.0.182:8082']],
      ],
    )
    assert.equal(list[0]?.details?.awake_replicas, 2)
    assert.equal(list[0]?.settings.idle_timeout, 600_000)
    assert.equal(list[0]?.settings.sleep, 'scale')
  })

  it('auto_sleep_on_start: false keeps workloads that run at the first list up; route: service upstreams', async () => {
    const lists = () => {
      k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments', method: 'GET' }).reply(200, fixture('deployments.json'), JSON_HEADERS)
      k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/statefulsets', method: 'GET' }).reply(200, fixture('statefulsets.json'), JSON_HEADERS)
      k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Ddb', method: 'GET' }).reply(200, fixture('pods-db.json'), JSON_HEADERS)
    }
    lists()
    const pinned = await provider({ auto_sleep_on_start: false }).list(AbortSignal.timeout(5000))
    assert.equal(pinned.find((b) => b.id === 'statefulset/shop/db')?.settings.always_on, true)
    assert.equal(pinned.find((b) => b.id === 'deployment/shop/web')?.settings.always_on, undefined, 'at 0 replicas: sleeps as usual once woken')
    // namespaces: all → the cluster-wide collections.
    k8s.api.intercept({ path: '/apis/apps/v1/deployments', method: 'GET' }).reply(200, fixture('deployments.json'), JSON_HEADERS)
    k8s.api.intercept({ path: '/apis/apps/v1/statefulsets', method: 'GET' }).reply(200, { metadata: {}, items: [] }, JSON_HEADERS)
    const all = await provider({ namespaces: 'all' }).list(AbortSignal.timeout(5000))
    assert.deepEqual(all.map((b) => b.id), ['deployment/shop/web'])
    lists()
    const viaService = await provider({ route: 'service' }).list(AbortSignal.timeout(5000))
    assert.deepEqual(viaService.find((b) => b.id === 'statefulset/shop/db')?.upstreams, ['db.shop.svc.cluster.local:8082'])
  })

  it('wake(): ONE merge PATCH of the Deployment (activity token + awake count), then waits for a Ready pod', async () => {
    const web = (fixture('deployments.json').items as Workload[]).find((w) => w.metadata.name === 'web') as Workload
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web', method: 'GET' }).reply(200, web, JSON_HEADERS)
    const patches: { body: string; type: string; path: string }[] = []
    k8s.api.intercept({ path: (p) => p.startsWith('/apis/apps/v1/namespaces/shop/deployments/web'), method: 'PATCH' }).reply(200, (opts) => {
      patches.push({ path: opts.path, body: String(opts.body), type: String((opts.headers as Record<string, string>)['content-type']) })
      const sent = JSON.parse(String(opts.body)) as { metadata: { annotations: Record<string, string> }; spec: { replicas: number } }
      return { ...web, metadata: { ...web.metadata, resourceVersion: '900', annotations: { ...web.metadata.annotations, ...sent.metadata.annotations } }, spec: { ...web.spec, replicas: sent.spec.replicas } }
    }, JSON_HEADERS)
    // The pods of `db`, relabelled as web's and owned by a ReplicaSet of web's: one Ready with an IP.
    const pods = fixture('pods-db.json')
    for (const p of pods.items) {
      p.metadata.labels = { app: 'web', 'pod-template-hash': '6d4b75cb6d' }
      p.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-6d4b75cb6d', uid: 'rs-uid', controller: true }]
    }
    k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb', method: 'GET' }).reply(200, pods, JSON_HEADERS)
    const p = provider()
    const info = await p.wake('deployment/shop/web', AbortSignal.timeout(5000))
    assert.equal(patches.length, 1, 'one write: no Lease, no scale subresource')
    assert.equal(patches[0]?.path, '/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=relight-sidecar')
    assert.equal(patches[0]?.type, 'application/merge-patch+json')
    assert.match(patches[0]?.body ?? '', /^\{"metadata":\{"annotations":\{"relight\.activity":"v1 edge-1 [0-9a-f]{16} 0"\}\},"spec":\{"replicas":2\}\}$/)
    assert.equal(info.state, 'running')
    assert.deepEqual(info.upstreams, ['127.0.0.182:8080'])
  })

  it('an RBAC denial says which verb on which resource; a wrong token says so; a missing workload is BACKEND_NOT_FOUND', async () => {
    const web = (fixture('deployments.json').items as Workload[]).find((w) => w.metadata.name === 'web')
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web', method: 'GET' }).reply(200, web, JSON_HEADERS)
    const forbidden = fixture('forbidden-scale.json')
    forbidden.message = String(forbidden.message).replace('deployments/scale', 'deployments').replace(' in API group', ' in API group')
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web?fieldManager=relight-sidecar', method: 'PATCH' }).reply(403, forbidden, JSON_HEADERS)
    const p = provider()
    await assert.rejects(p.wake('deployment/shop/web', AbortSignal.timeout(5000)), (e) => {
      assert.ok(isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
      assert.match(e.message, /^RBAC denies patch deployments "web" in namespace "shop" to the sidecar's identity: grant the verb "patch" on "deployments"/)
      assert.match(e.message, /User "system:serviceaccount:shop:nobody" cannot patch resource "deployments"/)
      return true
    })
    for (const kind of ['deployments', 'statefulsets']) k8s.api.intercept({ path: `/apis/apps/v1/namespaces/shop/${kind}`, method: 'GET' }).reply(401, fixture('unauthorized.json'), JSON_HEADERS)
    await assert.rejects(p.list(AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH') && /rejected the credentials from test kubeconfig \(401 Unauthorized\)/.test(e.message))
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/nope', method: 'GET' }).reply(404, fixture('deployment-404.json'), JSON_HEADERS)
    await assert.rejects(p.wake('deployment/shop/nope', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    await assert.rejects(p.wake('deployment/elsewhere/web', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND') && /watched namespaces/.test(e.message))
  })

  it('check: one SelfSubjectAccessReview per permission; each denial named in words', async () => {
    const allowed = fixture('access-review-allowed.json')
    k8s.api
      .intercept({ path: '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', method: 'POST' })
      .reply(201, (opts) => {
        const asked = JSON.parse(String(opts.body)) as { spec: { resourceAttributes: Record<string, string> } }
        const a = asked.spec.resourceAttributes
        const denied = a.resource === 'statefulsets' && a.verb === 'patch'
        return { ...allowed, spec: asked.spec, status: { allowed: !denied } }
      }, JSON_HEADERS)
      .persist()
    const results = await checkPermissions(k8s.client, ['shop'], AbortSignal.timeout(5000))
    assert.deepEqual(
      results.map((r) => `${r.ok ? 'ok' : 'PROBLEM'} ${r.message}`),
      [
        'PROBLEM RBAC: the sidecar may not patch statefulsets.apps in namespace "shop", needed for writing activity and scaling StatefulSets (wake and sleep) (see examples/kubernetes/rbac.yaml)',
      ],
    )
  })

  it('informer: a watch answered with 410 Gone lists again; other events are delivered in order', async () => {
    const path = '/apis/apps/v1/namespaces/shop/deployments'
    const list = fixture('deployments.json')
    k8s.api.intercept({ path, method: 'GET' }).reply(200, list, JSON_HEADERS)
    k8s.api.intercept({ path: (p) => p.startsWith(`${path}?`) && p.includes('watch=1'), method: 'GET' }).reply(200, text('watch-modified.ndjson') + text('watch-gone.ndjson'), JSON_HEADERS)
    k8s.api.intercept({ path, method: 'GET' }).reply(200, list, JSON_HEADERS)
    const controller = new AbortController()
    const seen: string[] = []
    const counters = { lists: 0, watches: 0, gone: 0, failures: 0 }
    await new Promise<void>((resolve) => {
      void runInformer<Workload>(
        k8s.client,
        path,
        {},
        {
          relisted: (items) => {
            seen.push(`list ${items.length}`)
            if (counters.lists === 2) resolve()
          },
          changed: (type, w) => seen.push(`${type} ${w.metadata.name} ${w.metadata.annotations?.['relight.domain']}`),
        },
        silent,
        controller.signal,
        counters,
      )
    })
    controller.abort()
    assert.deepEqual(seen, ['list 2', 'MODIFIED web web.example.com,www.example.com', 'list 2'])
    assert.equal(counters.gone, 1)
    k8s.api.intercept({ path: `${path}?resourceVersion=195`, method: 'GET' }).reply(410, fixture('list-gone.json'), JSON_HEADERS)
    await assert.rejects(k8s.client.json('GET', `${path}?resourceVersion=195`), (e) => isRelightError(e) && e.context.engine?.kind === 'status' && e.context.engine.status === 410 && e.context.engine.reason === 'Expired')
  })
})
