/**
 * deploy/kubernetes against the real control plane (test/k8s-control-plane) and the real image:
 * the single-namespace overlay, rendered as `kubectl kustomize` does, applies through API calls;
 * `relight-sidecar check` run in the sidecar image with the edge pod's environment (its
 * service account token, env, mounts and securityContext) passes the RBAC the manifests grant,
 * and fails, naming the verb, once the Role loses one; serve then answers the pod's exec probes.
 */
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { promisify } from 'node:util'
import { testSecret } from '../helpers/secret.js'
import { dockerSkip } from '../helpers/docker.js'
import { type ControlPlane, createNamespace, k8sSkip, serviceAccountToken, startControlPlane } from '../helpers/k8s.js'
import { ROOT, sidecarImage } from '../helpers/images.js'
import { type Manifest, renderKustomization } from '../helpers/kustomize.js'
import { freePort } from '../helpers/net.js'
import { podRunFlags } from '../helpers/pod-env.js'

const run = promisify(execFile)
const OVERLAY = join(ROOT, 'deploy/kubernetes/overlays/single-namespace')
const NS = 'apps'

/** Where each kind is created (the kinds deploy/kubernetes holds). */
function collection(m: Manifest, policyV1: boolean): { path: string; body: Manifest } {
  const ns = m.metadata.namespace as string
  switch (m.kind) {
    case 'ServiceAccount':
      return { path: `/api/v1/namespaces/${ns}/serviceaccounts`, body: m }
    case 'ConfigMap':
      return { path: `/api/v1/namespaces/${ns}/configmaps`, body: m }
    case 'Service':
      return { path: `/api/v1/namespaces/${ns}/services`, body: m }
    case 'Role':
      return { path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/roles`, body: m }
    case 'RoleBinding':
      return { path: `/apis/rbac.authorization.k8s.io/v1/namespaces/${ns}/rolebindings`, body: m }
    case 'Deployment':
      return { path: `/apis/apps/v1/namespaces/${ns}/deployments`, body: m }
    case 'PodDisruptionBudget':
      // policy/v1 is served from Kubernetes 1.21; the kit's 1.20 has the same object as v1beta1.
      return policyV1
        ? { path: `/apis/policy/v1/namespaces/${ns}/poddisruptionbudgets`, body: m }
        : { path: `/apis/policy/v1beta1/namespaces/${ns}/poddisruptionbudgets`, body: { ...m, apiVersion: 'policy/v1beta1' } }
    default:
      throw new Error(`deploy/kubernetes grew a ${m.kind}: teach this test where it goes`)
  }
}

describe('deploy/kubernetes on a real control plane', { skip: k8sSkip() }, () => {
  let cp: ControlPlane
  let image: string
  let manifests: Manifest[]
  let dir: string
  const containers: string[] = []

  before(async () => {
    const skip = await dockerSkip()
    if (skip) throw new Error(skip)
    ;[cp, image] = await Promise.all([startControlPlane(), sidecarImage().then((b) => b.tag)])
    dir = join(cp.dir, 'pod')
    mkdirSync(dir)
    manifests = renderKustomization(OVERLAY)
  })
  after(async () => {
    for (const c of containers) await run('docker', ['rm', '-f', c]).catch(() => undefined)
    await cp?.close()
  })

  const deployment = () => manifests.find((m) => m.kind === 'Deployment') as Manifest
  const sidecarContainer = () => (deployment().spec.template.spec.containers as Manifest[]).find((c) => c.name === 'sidecar') as Manifest

  it('the overlay applies: every object is accepted by the API server', async () => {
    await createNamespace(cp, NS)
    const token = testSecret()
    await cp.ok('POST', `/api/v1/namespaces/${NS}/secrets`, { apiVersion: 'v1', kind: 'Secret', metadata: { name: 'relight-admin' }, stringData: { token } })
    const policyV1 = (await cp.api('GET', '/apis/policy/v1')).status === 200
    for (const m of manifests) {
      assert.equal(m.metadata.namespace, NS, `${m.kind}/${m.metadata.name} is in the overlay's namespace`)
      const { path, body } = collection(m, policyV1)
      await cp.ok('POST', path, body)
    }
    const d = await cp.ok<Manifest>('GET', `/apis/apps/v1/namespaces/${NS}/deployments/relight-edge`)
    assert.equal(d.spec.replicas, 2)
    assert.equal(d.spec.template.spec.serviceAccountName, 'relight-sidecar')
    const binding = await cp.ok<Manifest>('GET', `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/rolebindings/relight-sidecar`)
    assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'relight-sidecar', namespace: NS }])
  })

  /** `docker run` of the image with the sidecar container's environment; relight.yaml's two loopback ports made free ones. */
  async function sidecarRun(args: string[], options: { detach?: boolean } = {}): Promise<{ code: number; out: string }> {
    const saToken = await serviceAccountToken(cp, NS, 'relight-sidecar', false)
    const container = sidecarContainer()
    const volumes = deployment().spec.template.spec.volumes as Manifest[]
    const configDirs: Record<string, string> = {}
    const listen = await freePort()
    const accessLog = await freePort()
    for (const v of volumes.filter((v) => v.configMap)) {
      const cm = manifests.find((m) => m.kind === 'ConfigMap' && m.metadata.name === v.configMap.name) as Manifest
      const target = join(dir, v.name)
      mkdirSync(target, { recursive: true })
      for (const [file, text] of Object.entries(cm.data as Record<string, string>)) {
        const local = text.replace('listen: 127.0.0.1:9123', `listen: 127.0.0.1:${listen}`).replace('access_log: 127.0.0.1:9124', `access_log: 127.0.0.1:${accessLog}`)
        if (file === 'relight.yaml') assert.notEqual(local, text, 'the ports in relight.yaml moved: update this test')
        writeFileSync(join(target, file), local, { mode: 0o644 })
      }
      configDirs[v.name] = target
    }
    const { flags } = await podRunFlags(cp, { namespace: NS, podName: 'relight-edge-test-0', container, saToken, dir, configDirs })
    const docker = ['run', ...(options.detach ? ['-d'] : ['--rm']), ...flags, image, ...args]
    try {
      const { stdout, stderr } = await run('docker', docker, { timeout: 90_000 })
      if (options.detach) containers.push(stdout.trim())
      return { code: 0, out: stdout + stderr }
    } catch (err) {
      const e = err as { code?: number; stdout?: string; stderr?: string }
      return { code: typeof e.code === 'number' ? e.code : -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }
    }
  }

  it('check in the sidecar container (service account token, pod env, read-only root) passes the RBAC', async () => {
    const r = await sidecarRun(container().args.map((a: string) => (a === 'serve' ? 'check' : a)))
    assert.equal(r.code, 0, r.out)
    assert.match(r.out, /ok +kubernetes: RBAC: every permission the sidecar needs is granted in namespace "apps"/)
    assert.match(r.out, /all checks passed/)
  })

  it('check names the verb once the Role loses it', async () => {
    const path = `/apis/rbac.authorization.k8s.io/v1/namespaces/${NS}/roles/relight-sidecar`
    const role = await cp.ok<Manifest>('GET', path)
    const original = structuredClone(role.rules)
    role.rules = (role.rules as Manifest[]).filter((r) => !(r.resources.includes('deployments') && r.verbs.length === 1 && r.verbs[0] === 'patch'))
    await cp.ok('PUT', path, role)
    try {
      const r = await sidecarRun(container().args.map((a: string) => (a === 'serve' ? 'check' : a)))
      assert.equal(r.code, 1, r.out)
      assert.match(r.out, /PROBLEM {2}kubernetes: RBAC: the sidecar may not patch deployments\.apps in namespace "apps", needed for writing activity and scaling Deployments/)
    } finally {
      const now = await cp.ok<Manifest>('GET', path)
      await cp.ok('PUT', path, { ...now, rules: original })
    }
  })

  it("serve in the same environment answers the pod's postStart hook and exec probes", async () => {
    const c = sidecarContainer()
    const r = await sidecarRun(c.args as string[], { detach: true })
    assert.equal(r.code, 0, r.out)
    const id = containers.at(-1) as string
    const exec = async (command: string[]) => {
      try {
        const { stdout, stderr } = await run('docker', ['exec', id, ...command], { timeout: 90_000 })
        return { code: 0, out: stdout + stderr }
      } catch (err) {
        const e = err as { code?: number; stdout?: string; stderr?: string }
        return { code: e.code ?? -1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` }
      }
    }
    const hook = await exec(c.lifecycle.postStart.exec.command)
    assert.equal(hook.code, 0, hook.out)
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      const answer = await exec(c[probe].exec.command)
      assert.equal(answer.code, 0, `${probe}: ${answer.out}`)
      assert.match(answer.out, /^healthy: http:\/\/127\.0\.0\.1:\d+: 0 backend\(s\), access_log /, probe)
    }
  })

  function container(): Manifest {
    return sidecarContainer()
  }
})
