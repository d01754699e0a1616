/**
 * For the Kubernetes shared-decision tests on recorded answers: a provider on the recorded
 * client whose view is fed by hand (as its informers would), and the workload `web` in any state.
 */
import pino from 'pino'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import type { Workload } from '../../sidecar/providers/kubernetes/workloads.js'
import type { RecordedKubernetes } from './kubernetes-recorded.js'

export const WEB_ID = 'deployment/shop/web'
export const WEB_PATH = '/apis/apps/v1/namespaces/shop/deployments/web'
export const WEB_PATCH = `${WEB_PATH}?fieldManager=relight-sidecar`

export function webWorkload(rv: string, replicas: number, token?: string): Workload {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'web', namespace: 'shop', uid: 'web-uid', resourceVersion: rv, annotations: { 'relight.domain': 'web.example.com', ...(token ? { 'relight.activity': token } : {}) } },
    spec: { replicas, selector: { matchLabels: { app: 'web' } } },
  }
}

/** A provider whose view already listed `web` and is live (fed by hand, no informer requests). */
export function fedProvider(k8s: RecordedKubernetes, w: Workload, clock = { t: 1000 }): KubernetesProvider {
  const p = new KubernetesProvider(kubernetesConfigSchema.parse({ namespaces: ['shop'], identity: 'edge-1' }), pino({ level: 'silent' }), { client: k8s.client, now: () => clock.t })
  p.view.expect(3)
  p.view.relistWorkloads('deployment', () => true, [w])
  p.view.relistPods(() => true, [])
  for (const key of ['deployment@shop', 'statefulset@shop', 'pods@shop']) p.view.connected(key, true)
  return p
}

/** The bodies of the PATCHes sent to `web`, parsed. */
export function recordPatches(k8s: RecordedKubernetes, answer: (body: any, n: number) => { status: number; body: unknown }): any[] {
  const sent: any[] = []
  k8s.api
    .intercept({ path: WEB_PATCH, method: 'PATCH' })
    .reply((opts) => {
      const body = JSON.parse(String(opts.body))
      sent.push(body)
      const a = answer(body, sent.length)
      return { statusCode: a.status, data: JSON.stringify(a.body), responseOptions: { headers: { 'content-type': 'application/json' } } }
    })
    .persist()
  return sent
}
