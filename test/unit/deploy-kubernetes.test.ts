/**
 * deploy/kubernetes as shipped: the snippet is `relight-sidecar snippet` (written by the build,
 * never by hand), the kustomization renders as `kubectl kustomize` does (where kubectl exists),
 * the config is valid with the pod's environment, the Role grants what the sidecar checks for,
 * and the edge pod is what the README's table says.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { parseConfig } from '../../sidecar/config/load.js'
import { PERMISSIONS } from '../../sidecar/providers/kubernetes/rbac.js'
import { type Manifest, renderKustomization } from '../helpers/kustomize.js'
import { testSecret } from '../helpers/secret.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const BASE = join(ROOT, 'deploy/kubernetes/base')
const OVERLAY = join(ROOT, 'deploy/kubernetes/overlays/single-namespace')
const byName = (a: Manifest, b: Manifest) => `${a.kind}/${a.metadata.name}`.localeCompare(`${b.kind}/${b.metadata.name}`)

/** The README's edge-pod table, computed from the rendered manifests. */
export function edgeTable(manifests: Manifest[]): string {
  const d = manifests.find((m) => m.kind === 'Deployment') as Manifest
  const pdb = manifests.find((m) => m.kind === 'PodDisruptionBudget') as Manifest
  const spec = d.spec.template.spec
  const [sidecar, caddy] = spec.containers as [Manifest, Manifest]
  assert.deepEqual(caddy.securityContext, sidecar.securityContext, 'the table describes one securityContext for both containers')
  const res = (c: Manifest) => `requests ${c.resources.requests.cpu} CPU / ${c.resources.requests.memory}, limit ${c.resources.limits.memory}`
  const cmd = (probe: Manifest) => `\`${(probe.exec.command as string[]).join(' ').replace(' --config /etc/relight/relight.yaml', '')}\``
  const sc = (c: Manifest) => `uid ${c.securityContext.runAsUser}, read-only root, no privilege escalation, capabilities dropped: ${c.securityContext.capabilities.drop.join(', ')}`
  const anti = spec.affinity.podAntiAffinity.preferredDuringSchedulingIgnoredDuringExecution[0].podAffinityTerm.topologyKey
  return [
    '| edge pod | as shipped |',
    '|---|---|',
    `| replicas | ${d.spec.replicas}, preferably on different nodes (pod anti-affinity on \`${anti}\`); PodDisruptionBudget \`minAvailable: ${pdb.spec.minAvailable}\` |`,
    `| containers | \`${sidecar.name}\` (\`${sidecar.image}\`) first, then \`${caddy.name}\` (\`${caddy.image}\`, port ${caddy.ports[0].containerPort}); Service \`relight-edge\` port 80 → ${caddy.ports[0].containerPort} |`,
    `| service account | \`${spec.serviceAccountName}\` with the Role in \`rbac.yaml\` |`,
    `| sidecar start | postStart ${cmd(sidecar.lifecycle.postStart)} holds Caddy back until the sidecar answers |`,
    `| sidecar probes | startup ${cmd(sidecar.startupProbe)}; readiness and liveness ${cmd(sidecar.livenessProbe)} |`,
    `| caddy probes | readiness and liveness: TCP on port \`${caddy.readinessProbe.tcpSocket.port}\` (${caddy.ports[0].containerPort}) |`,
    `| resources | sidecar ${res(sidecar)}; caddy ${res(caddy)} |`,
    `| security | non-root pod, seccomp \`${spec.securityContext.seccompProfile.type}\`; each container ${sc(sidecar)} |`,
    `| admin token | env \`RELIGHT_ADMIN_TOKEN\` from Secret \`${sidecar.env.find((e: Manifest) => e.name === 'RELIGHT_ADMIN_TOKEN').valueFrom.secretKeyRef.name}\`, key \`token\` (metrics, status page, admin API) |`,
    `| TLS | none in the pod: Caddy serves HTTP on ${caddy.ports[0].containerPort}; \`/data\` is an emptyDir per replica (see "TLS" in [deploy/kubernetes/README.md](deploy/kubernetes/README.md#tls)) |`,
  ].join('\n')
}

describe('deploy/kubernetes', () => {
  it('relight.caddy is the output of `relight-sidecar snippet` (npm run build writes it)', () => {
    const snippet = spawnSync(process.execPath, [join(ROOT, 'dist/sidecar/main.js'), 'snippet'], { encoding: 'utf8' })
    assert.equal(snippet.status, 0, snippet.stderr)
    assert.equal(readFileSync(join(BASE, 'relight.caddy'), 'utf8'), snippet.stdout, 'deploy/kubernetes/base/relight.caddy differs from `relight-sidecar snippet`: run npm run build and commit it')
  })

  it('renders as `kubectl kustomize` does (base and overlay)', (t) => {
    const probe = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8', timeout: 30_000 })
    if (probe.status !== 0) {
      t.skip('kubectl is not installed: the renderer is not cross-checked here')
      return
    }
    for (const dir of [BASE, OVERLAY]) {
      const out = spawnSync('kubectl', ['kustomize', dir], { encoding: 'utf8', timeout: 60_000 })
      assert.equal(out.status, 0, out.stderr)
      const theirs = parseAllDocuments(out.stdout).map((d) => d.toJS() as Manifest)
      assert.deepEqual(renderKustomization(dir).sort(byName), theirs.sort(byName), dir)
    }
  })

  it('the config is valid with the pod environment, and names what is missing without it', () => {
    const cm = renderKustomization(OVERLAY).find((m) => m.kind === 'ConfigMap' && m.metadata.name.startsWith('relight-sidecar-config-')) as Manifest
    const token = testSecret()
    const config = parseConfig(cm.data['relight.yaml'], 'relight.yaml', { POD_NAMESPACE: 'apps', RELIGHT_ADMIN_TOKEN: token })
    assert.deepEqual(config.providers.kubernetes?.[0]?.namespaces, ['apps'])
    assert.equal(config.admin?.token, token)
    assert.throws(() => parseConfig(cm.data['relight.yaml'], 'relight.yaml', {}), /RELIGHT_ADMIN_TOKEN/)
  })

  it('the Role grants every permission the sidecar checks for', () => {
    const role = renderKustomization(BASE).find((m) => m.kind === 'Role') as Manifest
    for (const p of PERMISSIONS) {
      const resource = p.subresource ? `${p.resource}/${p.subresource}` : p.resource
      const granted = (role.rules as Manifest[]).some((r) => r.apiGroups.includes(p.group) && r.resources.includes(resource) && r.verbs.includes(p.verb))
      assert.ok(granted, `rbac.yaml must grant ${p.verb} on ${resource} (${p.group || 'core'})`)
    }
  })

  it('the edge pod is what the README says', () => {
    const manifests = renderKustomization(OVERLAY)
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const table = edgeTable(manifests)
    assert.ok(readme.includes(table), `README.md must carry this table (from the manifests):\n${table}`)
    const caddy = manifests.find((m) => m.kind === 'Deployment')?.spec.template.spec.containers[1]
    assert.match(caddy.image, /^caddy:\d+\.\d+\.\d+$/, 'the Caddy tag is pinned')
  })
})
