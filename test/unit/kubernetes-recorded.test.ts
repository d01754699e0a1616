/**
 * Kubernetes provider against answers recorded from a real kube-apiserver 1.20
 * (test/fixtures/kubernetes), replayed with undici's MockAgent: discovery, wake, sleep with the
 * shared Lease, RBAC and credential errors in words, and the informer's relist on 410 Gone.
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
import { type Lease, SCALE_DOWN_ANNOTATION, SharedActivity, microTime } from '../../sidecar/providers/kubernetes/leases.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'

const FIXTURES = new URL('../../../test/fixtures/kubernetes/', import.meta.url)
const fixture = (name: string): any => JSON.parse(readFileSync(new URL(name, FIXTURES), 'utf8'))
const text = (name: string): string => readFileSync(new URL(name, FIXTURES), 'utf8')
const silent = pino({ level: 'silent' })
const WEB = { kind: 'deployment' as const, namespace: 'shop', name: 'web' }
const LEASE_PATH = '/apis/coordination.k8s.io/v1/namespaces/shop/leases/relight-deployment-web'

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

  it('wake(): PATCHes the scale subresource to the awake count, then waits for a Ready pod', async () => {
    const web = (fixture('deployments.json').items as Workload[]).find((w) => w.metadata.name === 'web')
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web', method: 'GET' }).reply(200, web, JSON_HEADERS)
    const order: string[] = []
    let patch: { body: string; type: string } | undefined
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web/scale', method: 'PATCH' }).reply(200, (opts) => {
      patch = { body: String(opts.body), type: String((opts.headers as Record<string, string>)['content-type']) }
      order.push('scale')
      return fixture('scale-patch.json')
    }, JSON_HEADERS)
    // The pods of `db`, relabelled as web's and owned by a ReplicaSet of web's: one Ready with an IP.
    const pods = fixture('pods-db.json')
    for (const p of pods.items) {
      p.metadata.labels = { app: 'web', 'pod-template-hash': '6d4b75cb6d' }
      p.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'web-6d4b75cb6d', uid: 'rs-uid', controller: true }]
    }
    k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb', method: 'GET' }).reply(200, pods, JSON_HEADERS)
    // The wake is recorded in the Lease (created here), before the scale-up.
    k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(404, () => {
      order.push('lease read')
      return fixture('lease-404.json')
    }, JSON_HEADERS)
    let created: Lease | undefined
    k8s.api.intercept({ path: '/apis/coordination.k8s.io/v1/namespaces/shop/leases', method: 'POST' }).reply(201, (opts) => {
      order.push('lease write')
      created = JSON.parse(String(opts.body)) as Lease
      return created
    }, JSON_HEADERS)
    const p = provider()
    const before = Date.now()
    const info = await p.wake('deployment/shop/web', AbortSignal.timeout(5000))
    assert.deepEqual(patch, { body: '{"spec":{"replicas":2}}', type: 'application/merge-patch+json' })
    assert.deepEqual(order, ['lease read', 'lease write', 'scale'])
    const renewed = Date.parse(created?.spec?.renewTime ?? '')
    assert.ok(renewed >= before - 1 && renewed <= Date.now(), `renewTime ${created?.spec?.renewTime}`)
    assert.equal(info.state, 'running')
    assert.deepEqual(info.upstreams, ['127.0.0.182:8080'])
  })

  it('an RBAC denial says which verb on which resource; a wrong token says so; a missing workload is BACKEND_NOT_FOUND', async () => {
    const web = (fixture('deployments.json').items as Workload[]).find((w) => w.metadata.name === 'web')
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web', method: 'GET' }).reply(200, web, JSON_HEADERS)
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/web/scale', method: 'PATCH' }).reply(403, fixture('forbidden-scale.json'), JSON_HEADERS)
    const p = provider()
    await assert.rejects(p.wake('deployment/shop/web', AbortSignal.timeout(5000)), (e) => {
      assert.ok(isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
      assert.match(e.message, /^RBAC denies patch deployments\/scale "web" in namespace "shop" to the sidecar's identity: grant the verb "patch" on "deployments\/scale"/)
      assert.match(e.message, /User "system:serviceaccount:shop:nobody" cannot patch resource "deployments\/scale"/)
      return true
    })
    for (const kind of ['deployments', 'statefulsets']) k8s.api.intercept({ path: `/apis/apps/v1/namespaces/shop/${kind}`, method: 'GET' }).reply(401, fixture('unauthorized.json'), JSON_HEADERS)
    await assert.rejects(p.list(AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH') && /rejected the credentials from test kubeconfig \(401 Unauthorized\)/.test(e.message))
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments/nope', method: 'GET' }).reply(404, fixture('deployment-404.json'), JSON_HEADERS)
    await assert.rejects(p.wake('deployment/shop/nope', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    await assert.rejects(p.wake('deployment/elsewhere/web', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND') && /watched namespaces/.test(e.message))
  })

  describe('shared activity in a Lease', () => {
    const now = Date.parse('2026-11-30T13:10:00Z')
    const lease = (renewTime: string, annotations?: Record<string, string>): Lease => {
      const l = fixture('lease.json') as Lease
      return { ...l, metadata: { ...l.metadata, ...(annotations ? { annotations } : {}) }, spec: { ...l.spec, renewTime } }
    }

    it('refuses a scale-down when another sidecar saw traffic within idle_timeout', async () => {
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:09:30.000000Z'), JSON_HEADERS)
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      await assert.rejects(shared.claimScaleDown(WEB, 60_000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /edge-1 saw traffic 30 s ago/.test(e.message))
    })

    it('claims with the resourceVersion it read: a concurrent write (409) refuses, a clean write allows', async () => {
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      const stale = lease('2026-11-30T13:00:00.123000Z')
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, stale, JSON_HEADERS)
      let put: Lease | undefined
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(409, (opts) => {
        put = JSON.parse(String(opts.body)) as Lease
        return fixture('lease-conflict.json')
      }, JSON_HEADERS)
      await assert.rejects(shared.claimScaleDown(WEB, 60_000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /at the same moment/.test(e.message))
      assert.equal(put?.metadata.resourceVersion, stale.metadata.resourceVersion, 'the write carries the resourceVersion read')
      assert.equal(put?.metadata.annotations?.[SCALE_DOWN_ANNOTATION], `edge-2 ${microTime(now)}`)
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, stale, JSON_HEADERS)
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(200, stale, JSON_HEADERS)
      await shared.claimScaleDown(WEB, 60_000, AbortSignal.timeout(5000))
    })

    it('a scale-down another sidecar marked since the last traffic refuses; a missing Lease is created', async () => {
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:00:00.000000Z', { [SCALE_DOWN_ANNOTATION]: 'edge-1 2026-11-30T13:09:59.000000Z' }), JSON_HEADERS)
      await assert.rejects(shared.claimScaleDown(WEB, 30_000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /edge-1 scaled it down 1 s ago/.test(e.message))
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(404, fixture('lease-404.json'), JSON_HEADERS)
      let created: Lease | undefined
      k8s.api.intercept({ path: '/apis/coordination.k8s.io/v1/namespaces/shop/leases', method: 'POST' }).reply(201, (opts) => {
        created = JSON.parse(String(opts.body)) as Lease
        return fixture('lease.json')
      }, JSON_HEADERS)
      await shared.claimScaleDown(WEB, 30_000, AbortSignal.timeout(5000))
      assert.equal(created?.metadata.name, 'relight-deployment-web')
      assert.equal(created?.metadata.annotations?.[SCALE_DOWN_ANNOTATION], `edge-2 ${microTime(now)}`)
    })

    it('renew: newest activity wins, a 409 is read again and retried; a failed write refuses sleeps until one succeeds', async () => {
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      const at = Date.parse('2026-11-30T13:05:00Z')
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:00:00.000000Z'), JSON_HEADERS)
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(409, fixture('lease-conflict.json'), JSON_HEADERS)
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:01:00.000000Z'), JSON_HEADERS)
      let put: Lease | undefined
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(200, (opts) => {
        put = JSON.parse(String(opts.body)) as Lease
        return put
      }, JSON_HEADERS)
      await shared.renew(WEB, at, AbortSignal.timeout(5000))
      assert.equal(put?.spec?.renewTime, '2026-11-30T13:05:00.000000Z')
      assert.equal(put?.spec?.holderIdentity, 'edge-2')
      // Older than what is recorded: nothing to write.
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:06:00.000000Z'), JSON_HEADERS)
      await shared.renew(WEB, at, AbortSignal.timeout(5000))
      // Denied: the write fails, and until a write succeeds no scale-down is allowed.
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(403, fixture('forbidden-scale.json'), JSON_HEADERS)
      await assert.rejects(shared.renew(WEB, now, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH'))
      await assert.rejects(shared.claimScaleDown(WEB, 1000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /last write of its shared activity failed/.test(e.message))
    })

    it('a renewTime or scale-down mark far in the future (skewed clock, hand edit) counts as absent: no sleep blocked until then, the next renew replaces it', async () => {
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      const future = lease('2099-01-01T00:00:00.000000Z', { [SCALE_DOWN_ANNOTATION]: 'edge-1 2099-01-01T00:00:00.000000Z' })
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, future, JSON_HEADERS)
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(200, future, JSON_HEADERS)
      await shared.claimScaleDown(WEB, 60_000, AbortSignal.timeout(5000))
      // Within max(idle_timeout, 5 min) ahead: still counts (ordinary clock skew).
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, lease('2026-11-30T13:14:00.000000Z'), JSON_HEADERS)
      await assert.rejects(shared.claimScaleDown(WEB, 60_000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED'))
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(200, future, JSON_HEADERS)
      let put: Lease | undefined
      k8s.api.intercept({ path: LEASE_PATH, method: 'PUT' }).reply(200, (opts) => {
        put = JSON.parse(String(opts.body)) as Lease
        return put
      }, JSON_HEADERS)
      await shared.renew(WEB, now - 1000, AbortSignal.timeout(5000), undefined, 60_000)
      assert.equal(put?.spec?.renewTime, microTime(now - 1000), 'the future value is replaced, not kept as the newest')
      assert.equal(put?.metadata.annotations?.[SCALE_DOWN_ANNOTATION], undefined)
    })

    it('the API cannot be read: never scale down', async () => {
      const shared = new SharedActivity(k8s.client, 'edge-2', () => now)
      k8s.api.intercept({ path: LEASE_PATH, method: 'GET' }).reply(403, fixture('forbidden-scale.json'), JSON_HEADERS)
      await assert.rejects(shared.claimScaleDown(WEB, 1000, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_REFUSED') && /cannot read its shared activity/.test(e.message))
    })
  })

  it('check: one SelfSubjectAccessReview per permission; each denial named in words', async () => {
    const allowed = fixture('access-review-allowed.json')
    k8s.api
      .intercept({ path: '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', method: 'POST' })
      .reply(201, (opts) => {
        const asked = JSON.parse(String(opts.body)) as { spec: { resourceAttributes: Record<string, string> } }
        const a = asked.spec.resourceAttributes
        const denied = a.resource === 'leases' || (a.resource === 'statefulsets' && a.subresource === 'scale')
        return { ...allowed, spec: asked.spec, status: { allowed: !denied } }
      }, JSON_HEADERS)
      .persist()
    const results = await checkPermissions(k8s.client, ['shop'], AbortSignal.timeout(5000))
    assert.deepEqual(
      results.map((r) => `${r.ok ? 'ok' : 'PROBLEM'} ${r.message}`),
      [
        'PROBLEM RBAC: the sidecar may not patch statefulsets/scale.apps in namespace "shop", needed for scaling StatefulSets (wake and sleep) (see examples/kubernetes/rbac.yaml)',
        'PROBLEM RBAC: the sidecar may not get leases.coordination.k8s.io in namespace "shop", needed for reading the activity other sidecars share (see examples/kubernetes/rbac.yaml)',
        'PROBLEM RBAC: the sidecar may not create leases.coordination.k8s.io in namespace "shop", needed for sharing activity with other sidecars (see examples/kubernetes/rbac.yaml)',
        'PROBLEM RBAC: the sidecar may not update leases.coordination.k8s.io in namespace "shop", needed for sharing activity and deciding scale-downs (see examples/kubernetes/rbac.yaml)',
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
