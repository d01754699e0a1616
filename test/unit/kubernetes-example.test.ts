/** examples/kubernetes as shipped: manifests parse, the Role grants what the sidecar asks for (the edge is in deploy/kubernetes). */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments } from 'yaml'
import { PERMISSIONS } from '../../sidecar/providers/kubernetes/rbac.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const dir = `${ROOT}examples/kubernetes/`

function docs(file: string): any[] {
  const parsed = parseAllDocuments(readFileSync(`${dir}${file}`, 'utf8'))
  for (const d of parsed) assert.deepEqual(d.errors, [], `${file}: ${d.errors.map((e) => e.message).join('; ')}`)
  return parsed.map((d) => d.toJS())
}

describe('examples/kubernetes', () => {
  it('the Role grants every permission the sidecar checks for', () => {
    const role = docs('rbac.yaml').find((d) => d.kind === 'Role')
    const grants = (group: string, resource: string, verb: string) =>
      role.rules.some((r: { apiGroups: string[]; resources: string[]; verbs: string[] }) => r.apiGroups.includes(group) && r.resources.includes(resource) && r.verbs.includes(verb))
    for (const p of PERMISSIONS) {
      const resource = p.subresource ? `${p.resource}/${p.subresource}` : p.resource
      assert.ok(grants(p.group, resource, p.verb), `rbac.yaml must grant ${p.verb} on ${resource} (${p.group || 'core'})`)
    }
  })

  it('app.yaml: an annotated Deployment at 0 replicas', () => {
    const app = docs('app.yaml')[0]
    assert.equal(app.kind, 'Deployment')
    assert.equal(app.spec.replicas, 0)
    assert.equal(app.metadata.annotations['relight.domain'], 'hello.example.com')
  })
})
