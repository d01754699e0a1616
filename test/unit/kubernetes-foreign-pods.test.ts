/**
 * Kubernetes provider: a Ready pod of another workload whose labels match a workload's selector
 * is not routed to. Recorded-API set-up from test/helpers/kubernetes-recorded.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import { JSON_HEADERS, recordedKubernetes } from '../helpers/kubernetes-recorded.js'

const silent = pino({ level: 'silent' })

const deployment = (name: string, replicas: number, selector: Record<string, string>, annotations: Record<string, string>) => ({
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: '10', annotations },
  spec: { replicas, selector: { matchLabels: selector }, template: { spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] } } },
})
const pod = (name: string, ip: string, labels: Record<string, string>, owner: string) => ({
  metadata: { name, namespace: 'shop', labels, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: owner, uid: `uid-${owner}`, controller: true }] },
  status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
})

describe('kubernetes: pods of other workloads', () => {
  const k8s = recordedKubernetes('test')

  it('F1: a Ready pod of ANOTHER workload whose labels match the selector is not an upstream', async () => {
    // `web` selects app=web; the canary Deployment `web-canary` (selector app=web,track=canary)
    // has pods labelled app=web,track=canary: they match web's selector too.
    const web = deployment('web', 1, { app: 'web' }, { 'relight.domain': 'web.example.com' })
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments', method: 'GET' }).reply(200, { metadata: { resourceVersion: '11' }, items: [web] }, JSON_HEADERS)
    k8s.api.intercept({ path: '/apis/apps/v1/namespaces/shop/statefulsets', method: 'GET' }).reply(200, { metadata: { resourceVersion: '11' }, items: [] }, JSON_HEADERS)
    k8s.api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb', method: 'GET' }).reply(
      200,
      {
        metadata: { resourceVersion: '12' },
        items: [pod('web-5d9f-aaaaa', '127.0.0.10', { app: 'web', 'pod-template-hash': '5d9f' }, 'web-5d9f'), pod('web-canary-77b-bbbbb', '127.0.0.66', { app: 'web', track: 'canary' }, 'web-canary-77b')],
      },
      JSON_HEADERS,
    )
    const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ namespaces: ['shop'], identity: 'edge-1' }), silent, { client: k8s.client })
    const [b] = await provider.list(AbortSignal.timeout(5000))
    assert.deepEqual(b?.upstreams, ['127.0.0.10:8080'], 'only the pods web owns (through its ReplicaSet) are routed')
  })
})
