/**
 * Review of the multi-node providers (kubernetes, swarm): regression tests for the findings.
 * Each test asserts the behaviour the finding asks for, so it FAILS on ae3efc1.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { KubeClient } from '../../sidecar/providers/kubernetes/client.js'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'

const SERVER = 'https://k8s.test'
const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }
const silent = pino({ level: 'silent' })

const deployment = (name: string, replicas: number, selector: Record<string, string>, annotations: Record<string, string>) => ({
  metadata: { name, namespace: 'shop', uid: `uid-${name}`, resourceVersion: '10', annotations },
  spec: { replicas, selector: { matchLabels: selector }, template: { spec: { containers: [{ name: 'app', ports: [{ containerPort: 8080 }] }] } } },
})
const pod = (name: string, ip: string, labels: Record<string, string>, owner: string) => ({
  metadata: { name, namespace: 'shop', labels, ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: owner, uid: `uid-${owner}`, controller: true }] },
  status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] },
})

describe('review: kubernetes', () => {
  let agent: MockAgent
  let api: ReturnType<MockAgent['get']>
  let client: KubeClient
  beforeEach(() => {
    agent = new MockAgent()
    agent.disableNetConnect()
    api = agent.get(SERVER)
    client = new KubeClient({ server: SERVER, token: 't', namespace: 'shop', source: 'test' }, { dispatcher: agent })
  })
  afterEach(async () => {
    await client.close()
    await agent.close()
  })

  it('F1: a Ready pod of ANOTHER workload whose labels match the selector is not an upstream', async () => {
    // `web` selects app=web; the canary Deployment `web-canary` (selector app=web,track=canary)
    // has pods labelled app=web,track=canary: they match web's selector too.
    const web = deployment('web', 1, { app: 'web' }, { 'relight.domain': 'web.example.com' })
    api.intercept({ path: '/apis/apps/v1/namespaces/shop/deployments', method: 'GET' }).reply(200, { metadata: { resourceVersion: '11' }, items: [web] }, JSON_HEADERS)
    api.intercept({ path: '/apis/apps/v1/namespaces/shop/statefulsets', method: 'GET' }).reply(200, { metadata: { resourceVersion: '11' }, items: [] }, JSON_HEADERS)
    api.intercept({ path: '/api/v1/namespaces/shop/pods?labelSelector=app%3Dweb', method: 'GET' }).reply(
      200,
      {
        metadata: { resourceVersion: '12' },
        items: [pod('web-5d9f-aaaaa', '127.0.0.10', { app: 'web', 'pod-template-hash': '5d9f' }, 'web-5d9f'), pod('web-canary-77b-bbbbb', '127.0.0.66', { app: 'web', track: 'canary' }, 'web-canary-77b')],
      },
      JSON_HEADERS,
    )
    const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ namespaces: ['shop'], identity: 'edge-1' }), silent, { client })
    const [b] = await provider.list(AbortSignal.timeout(5000))
    assert.deepEqual(b?.upstreams, ['127.0.0.10:8080'], 'only the pods web owns (through its ReplicaSet) are routed')
  })
})
