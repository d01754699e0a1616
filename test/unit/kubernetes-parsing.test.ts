/** Kubernetes provider: config, credentials, annotations, selectors and BackendInfo (pure functions). */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { parseConfig } from '../../sidecar/config/load.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { WarnOnce, problemTopic } from '../../sidecar/core/warn-once.js'
import { readLabels } from '../../sidecar/providers/kit/labels.js'
import { describeMeaning, describePath } from '../../sidecar/providers/kubernetes/client.js'
import { fromKubeconfig, inCluster, loadCredentials } from '../../sidecar/providers/kubernetes/credentials.js'
import { agoOf } from '../../sidecar/providers/kubernetes/view.js'
import { newToken } from '../../sidecar/providers/kubernetes/workload-patch.js'
import {
  type BackendOptions,
  ownsPod,
  parseWorkloadId,
  podRecord,
  readFacts,
  selectorMatches,
  selectorString,
  toBackend,
  type Workload,
} from '../../sidecar/providers/kubernetes/workloads.js'
import { tempDir } from '../helpers/net.js'

const CA = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'

function deployment(annotations: Record<string, string>, replicas = 0, ports: number[] = [8080]): Workload {
  return {
    metadata: { name: 'web', namespace: 'shop', annotations },
    spec: {
      replicas,
      selector: { matchLabels: { app: 'web' } },
      template: { spec: { containers: [{ name: 'app', ports: ports.map((containerPort) => ({ containerPort })) }] } },
    },
  }
}

const OPTIONS: BackendOptions = { kind: 'deployment', prefix: 'relight', fallbackPort: 9999, route: 'pods', clusterDomain: 'cluster.local', baseSettings: { sleep: 'scale', fallback_sleep: 'scale' } }

describe('kubernetes: configuration', () => {
  it('accepts a full block, and names the key of each mistake', () => {
    const config = parseConfig(
      'providers:\n  kubernetes:\n    kubeconfig: ~/.kube/config\n    namespaces: [shop, blog]\n    route: service\n    idle_timeout: 10m\n    identity: edge-1\n',
    )
    assert.deepEqual(config.providers.kubernetes?.[0]?.namespaces, ['shop', 'blog'])
    assert.equal(config.providers.kubernetes?.[0]?.route, 'service')
    assert.equal(config.providers.kubernetes?.[0]?.annotation_prefix, 'relight')
    assert.equal(parseConfig('providers:\n  kubernetes:\n    namespaces: all\n').providers.kubernetes?.[0]?.namespaces, 'all')
    const problems = (yaml: string) => {
      try {
        parseConfig(yaml)
      } catch (err) {
        return (err as { problems: string[] }).problems.join('\n')
      }
      return ''
    }
    assert.match(problems('providers:\n  kubernetes:\n    sleep: stop\n'), /providers\.kubernetes\.sleep: kubernetes workloads sleep with scale/)
    assert.match(problems('providers:\n  kubernetes:\n    namespaces: [Shop]\n'), /providers\.kubernetes\.namespaces\[0\]: a namespace name/)
    assert.match(problems('providers:\n  kubernetes:\n    route: nodes\n'), /providers\.kubernetes\.route/)
    assert.match(problems('providers:\n  kubernetes:\n    namespace: shop\n'), /unknown key "namespace"/)
  })
})

describe('kubernetes: credentials', () => {
  it('reads a kubeconfig with a token and a CA file, relative to the file', () => {
    const tmp = tempDir('relight-kc-')
    try {
      writeFileSync(join(tmp.dir, 'ca.crt'), CA)
      const text = [
        'apiVersion: v1',
        'kind: Config',
        'clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443/", certificate-authority: ca.crt}}]',
        'users: [{name: u, user: {token: abc}}]',
        'contexts: [{name: x, context: {cluster: c, user: u, namespace: shop}}, {name: y, context: {cluster: c, user: u}}]',
        'current-context: x',
      ].join('\n')
      const creds = fromKubeconfig(text, join(tmp.dir, 'config'))
      assert.equal(creds.server, 'https://127.0.0.1:6443')
      assert.equal(creds.ca, CA)
      assert.equal(creds.token, 'abc')
      assert.equal(creds.namespace, 'shop')
      assert.equal(fromKubeconfig(text, join(tmp.dir, 'config'), 'y').namespace, 'default')
      assert.throws(() => fromKubeconfig(text, join(tmp.dir, 'config'), 'z'), /no context named "z"/)
    } finally {
      tmp.remove()
    }
  })

  it('reads a client certificate from -data fields, and refuses exec plugins with a reason', () => {
    const b64 = (s: string) => Buffer.from(s).toString('base64')
    const text = [
      'clusters: [{name: c, cluster: {server: "https://k8s.example:443", certificate-authority-data: ' + b64(CA) + '}}]',
      `users: [{name: u, user: {client-certificate-data: ${b64('CERT')}, client-key-data: ${b64('KEY')}}}, {name: e, user: {exec: {command: aws}}}]`,
      'contexts: [{name: x, context: {cluster: c, user: u}}, {name: ex, context: {cluster: c, user: e}}]',
      'current-context: x',
    ].join('\n')
    const creds = fromKubeconfig(text, '/k')
    assert.equal(creds.cert, 'CERT')
    assert.equal(creds.key, 'KEY')
    assert.equal(creds.ca, CA)
    assert.equal(creds.token, undefined)
    assert.throws(() => fromKubeconfig(text, '/k', 'ex'), /exec plugin or auth provider, which the sidecar does not run/)
  })

  it('uses the in-cluster service account when KUBERNETES_SERVICE_HOST is set', () => {
    const tmp = tempDir('relight-sa-')
    try {
      writeFileSync(join(tmp.dir, 'token'), 'sa-token\n')
      writeFileSync(join(tmp.dir, 'ca.crt'), CA)
      writeFileSync(join(tmp.dir, 'namespace'), 'shop')
      const creds = inCluster({ KUBERNETES_SERVICE_HOST: 'fd00::1', KUBERNETES_SERVICE_PORT: '443' }, tmp.dir)
      assert.equal(creds.server, 'https://[fd00::1]:443')
      assert.equal(creds.token, 'sa-token')
      assert.equal(creds.tokenFile, join(tmp.dir, 'token'))
      assert.equal(creds.namespace, 'shop')
      const picked = loadCredentials({ baseDir: '/', env: { KUBERNETES_SERVICE_HOST: '127.0.0.1' }, serviceAccountDir: tmp.dir })
      assert.equal(picked.source, 'in-cluster service account')
      assert.throws(
        () => loadCredentials({ baseDir: '/', env: { KUBECONFIG: join(tmp.dir, 'missing') } }),
        (e) => isRelightError(e, 'RELIGHT_ERR_CONFIG') && /no Kubernetes credentials/.test(e.message),
      )
    } finally {
      tmp.remove()
    }
  })
})

describe('kubernetes: annotations', () => {
  it('reads domain, port, replicas and settings with the same bounds as Docker labels', () => {
    const annotations = {
      'relight.domain': 'shop.example.com, *.shop.example.com',
      'relight.port': '3000',
      'relight.replicas': '3',
      'relight.idle_timeout': '10m',
      'relight.sleep': 'scale',
      'relight.strategy': 'waiting_page',
    }
    const facts = readFacts(deployment(annotations), OPTIONS)
    assert.deepEqual(facts.hosts, ['shop.example.com', '*.shop.example.com'])
    assert.equal(facts.port, 3000)
    assert.equal(facts.awakeReplicas, 3)
    assert.deepEqual(facts.settings, { idle_timeout: 600_000, sleep: 'scale', strategy: 'waiting_page' })
    assert.deepEqual(facts.problems, [])
    // Identical parsing to Docker labels for every shared key.
    const labels = readLabels(annotations, 'relight', ['scale'])
    assert.deepEqual(labels.settings, facts.settings)
    const bad = readFacts(deployment({ 'relight.domain': 'a.test', 'relight.port': '70000', 'relight.replicas': '0', 'relight.sleep': 'pause', 'relight.idle_timeout': '5' }), OPTIONS)
    assert.equal(bad.port, 8080, 'the single container port when the annotation is unusable')
    assert.equal(bad.awakeReplicas, 1)
    assert.equal(bad.problems.length, 4, bad.problems.join('\n'))
    assert.ok(bad.problems.some((p) => /relight\.replicas="0" is not a replica count/.test(p)))
    assert.ok(bad.problems.some((p) => /relight\.sleep="pause" must be scale/.test(p)))
    assert.equal(readFacts(deployment({ 'relight.domain': 'a.test' }, 0, [80, 443]), OPTIONS).port, 9999, 'several ports: the fallback')
  })

  it('builds BackendInfo: scaled_to_zero, starting, running with ready pod IPs, or the Service name', () => {
    const w = deployment({ 'relight.domain': 'shop.test' }, 0)
    const asleep = toBackend(w, [], OPTIONS)
    assert.equal(asleep.id, 'deployment/shop/web')
    assert.equal(asleep.state, 'scaled_to_zero')
    assert.deepEqual(asleep.upstreams, [])
    assert.deepEqual(asleep.settings, { sleep: 'scale', fallback_sleep: 'scale' })
    const up = { ...w, spec: { ...w.spec, replicas: 2 } }
    const pending = podRecord({ metadata: { name: 'web-1', namespace: 'shop', labels: { app: 'web' } }, status: { phase: 'Pending' } })
    assert.equal(toBackend(up, [pending], OPTIONS).state, 'starting')
    const ready = (name: string, ip: string, extra: object = {}) =>
      podRecord({ metadata: { name, namespace: 'shop', labels: { app: 'web' }, ...extra }, status: { phase: 'Running', podIP: ip, conditions: [{ type: 'Ready', status: 'True' }] } })
    const terminating = ready('web-3', '127.0.0.9', { deletionTimestamp: '2026-01-01T00:00:00Z' })
    const running = toBackend(up, [ready('web-2', '127.0.0.5'), ready('web-1', 'fd00::5'), pending, terminating], OPTIONS)
    assert.equal(running.state, 'running')
    assert.deepEqual(running.upstreams, ['127.0.0.5:8080', '[fd00::5]:8080'])
    assert.equal(running.details?.ready_pods, 2)
    const service = toBackend(up, [ready('web-2', '127.0.0.5')], { ...OPTIONS, route: 'service' })
    assert.deepEqual(service.upstreams, ['web.shop.svc.cluster.local:8080'])
    assert.equal(toBackend(up, [], { ...OPTIONS, alwaysOn: true }).settings.always_on, true)
  })

  it('ids and label selectors', () => {
    assert.deepEqual(parseWorkloadId('statefulset/shop/db'), { kind: 'statefulset', namespace: 'shop', name: 'db' })
    assert.equal(parseWorkloadId('relight-contract-no-such-backend'), undefined)
    assert.equal(parseWorkloadId('pod/shop/x'), undefined)
    const selector = { matchLabels: { app: 'web' }, matchExpressions: [{ key: 'tier', operator: 'In' as const, values: ['a', 'b'] }, { key: 'legacy', operator: 'DoesNotExist' as const }] }
    assert.equal(selectorString(selector), 'app=web,tier in (a,b),!legacy')
    assert.ok(selectorMatches(selector, { app: 'web', tier: 'a' }))
    assert.ok(!selectorMatches(selector, { app: 'web', tier: 'c' }))
    assert.ok(!selectorMatches(selector, { app: 'web', tier: 'a', legacy: 'y' }))
    assert.ok(!selectorMatches({}, { app: 'web' }), 'an empty selector matches nothing')
  })

  it('a pod is the workload\'s only when its controller ownerReference says so, not by its labels alone', () => {
    const pod = (labels: Record<string, string>, owner?: { kind: string; name: string; uid?: string }) =>
      podRecord({ metadata: { name: 'p', namespace: 'shop', labels, ...(owner ? { ownerReferences: [{ ...owner, controller: true }] } : {}) } })
    const web = deployment({ 'relight.domain': 'shop.test' }, 1)
    assert.ok(ownsPod('deployment', web, pod({ app: 'web', 'pod-template-hash': '5d9f' }, { kind: 'ReplicaSet', name: 'web-5d9f' })))
    assert.ok(!ownsPod('deployment', web, pod({ app: 'web', 'pod-template-hash': '77b' }, { kind: 'ReplicaSet', name: 'web-canary-77b' })), 'a canary ReplicaSet')
    assert.ok(!ownsPod('deployment', web, pod({ app: 'web' }, { kind: 'ReplicaSet', name: 'web-5d9f' })), 'no pod-template-hash')
    assert.ok(!ownsPod('deployment', web, pod({ app: 'web' })), 'a bare pod')
    const db: Workload = { ...web, metadata: { ...web.metadata, name: 'db', uid: 'uid-db' } }
    assert.ok(ownsPod('statefulset', db, pod({ app: 'web' }, { kind: 'StatefulSet', name: 'db', uid: 'uid-db' })))
    assert.ok(!ownsPod('statefulset', db, pod({ app: 'web' }, { kind: 'StatefulSet', name: 'db', uid: 'uid-old-db' })), 'a StatefulSet deleted and made again')
    assert.ok(!ownsPod('statefulset', db, pod({ app: 'web' }, { kind: 'StatefulSet', name: 'other', uid: 'uid-other' })))
  })

  it('warn-once keys are a workload and an annotation name, never a value: bounded, forgotten with the workload', () => {
    const warned = new WarnOnce()
    let logged = 0
    for (let i = 0; i < 10_000; i++) {
      const options = { ...OPTIONS, kind: 'deployment' as const }
      for (const p of readFacts(deployment({ 'relight.domain': 'shop.test', 'relight.replicas': `x${i % 2}` }), options).problems) if (warned.first('deployment/shop/web', problemTopic(p))) logged++
    }
    assert.equal(warned.size, 1)
    assert.equal(logged, 1, 'once per annotation, whatever its value')
    assert.equal(problemTopic('relight.idle_timeout="soon" must be a duration'), 'relight.idle_timeout')
    warned.forget('deployment/shop/web')
    assert.equal(warned.size, 0)
    assert.ok(warned.first('deployment/shop/web', 'relight.replicas'), 'made again: warns again')
  })

  it('says which verb on which resource a request needs', () => {
    const m = describePath('PATCH', '/apis/apps/v1/namespaces/shop/deployments/web/scale')
    assert.deepEqual(m, { verb: 'patch', resource: 'deployments/scale', namespace: 'shop', name: 'web' })
    assert.equal(describeMeaning(m), 'patch deployments/scale "web" in namespace "shop"')
    assert.equal(describeMeaning(describePath('GET', '/apis/apps/v1/deployments', { watch: 1 })), 'watch deployments (all namespaces)')
    assert.equal(describeMeaning(describePath('GET', '/api/v1/namespaces/shop/pods')), 'list pods in namespace "shop"')
    assert.equal(describeMeaning(describePath('PUT', '/apis/coordination.k8s.io/v1/namespaces/shop/leases/relight-deployment-web')), 'update leases "relight-deployment-web" in namespace "shop"')
  })

  it('activity tokens: v1 <identity> <16 hex> <ago_ms>; a reader takes ago_ms from the last field, 0 when absent or unreadable', () => {
    const token = newToken('edge 1/42', 1234.4)
    assert.match(token, /^v1 edge_1\/42 [0-9a-f]{16} 1234$/)
    assert.notEqual(newToken('edge-1', 0), newToken('edge-1', 0), 'each write is a new token')
    assert.equal(agoOf(token), 1234)
    assert.equal(agoOf(undefined), 0)
    assert.equal(agoOf('hand written'), 0)
    assert.equal(agoOf('v1 x y -5'), 0)
  })
})
