/**
 * One set-up for the Kubernetes provider tests on recorded API answers: a MockAgent that refuses
 * the network, its pool for SERVER (`api`, to intercept on) and a KubeClient on it for namespace
 * `shop`, made fresh before each test and closed after it. Call `recordedKubernetes()` inside a describe().
 */
import { afterEach, beforeEach } from 'node:test'
import { MockAgent } from 'undici'
import { KubeClient } from '../../sidecar/providers/kubernetes/client.js'

export const SERVER = 'https://k8s.test'
export const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }

export interface RecordedKubernetes {
  agent: MockAgent
  api: ReturnType<MockAgent['get']>
  client: KubeClient
}

export function recordedKubernetes(source = 'test kubeconfig'): RecordedKubernetes {
  const k8s = {} as RecordedKubernetes
  beforeEach(() => {
    k8s.agent = new MockAgent()
    k8s.agent.disableNetConnect()
    k8s.api = k8s.agent.get(SERVER)
    k8s.client = new KubeClient({ server: SERVER, token: 't', namespace: 'shop', source }, { dispatcher: k8s.agent })
  })
  afterEach(async () => {
    await k8s.client.close()
    await k8s.agent.close()
  })
  return k8s
}
