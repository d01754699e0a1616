/**
 * Renders a kustomization the way `kubectl kustomize` does, for the subset deploy/kubernetes
 * uses (resources, namespace, configMapGenerator with files, images), so the manifests can be
 * applied through API calls where there is no kubectl. Any other field is refused: a
 * kustomization that grows a feature must grow it here too (the test cross-checks against
 * `kubectl kustomize` where kubectl exists).
 */
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, statSync } from 'node:fs'
import { basename, join } from 'node:path'
import { parse, parseAllDocuments } from 'yaml'

export type Manifest = Record<string, any>

const KNOWN = new Set(['apiVersion', 'kind', 'namespace', 'resources', 'configMapGenerator', 'images'])
const CLUSTER_SCOPED = new Set(['Namespace', 'ClusterRole', 'ClusterRoleBinding', 'CustomResourceDefinition', 'PriorityClass', 'StorageClass'])

/** Go's json.Marshal of a map: keys sorted, <, >, & and U+2028/2029 escaped. */
function goJson(value: unknown): string {
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) {
    const entries = Object.keys(value as object)
      .sort()
      .map((k) => `${goJson(k)}:${goJson((value as Record<string, unknown>)[k])}`)
    return `{${entries.join(',')}}`
  }
  return JSON.stringify(value).replace(/[<>&\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
}

/**
 * kustomize's name suffix for a generated ConfigMap (api/hasher: sha256 of `{data, kind, name}`
 * as JSON, 10 characters, vowels avoided). Its name lookup (`yaml.Lookup("metadata/name")`, one
 * path segment) finds nothing, so kustomize 5 hashes an empty name: only the data counts.
 */
export function configMapHash(data: Record<string, string>): string {
  const hex = createHash('sha256').update(goJson({ data, kind: 'ConfigMap', name: '' })).digest('hex')
  const swap: Record<string, string> = { '0': 'g', '1': 'h', '3': 'k', a: 'm', e: 't' }
  return [...hex.slice(0, 10)].map((c) => swap[c] ?? c).join('')
}

function podSpecs(m: Manifest): Manifest[] {
  if (m.kind === 'Pod') return [m.spec]
  if (m.spec?.template?.spec) return [m.spec.template.spec]
  return []
}

export function renderKustomization(dir: string): Manifest[] {
  const file = ['kustomization.yaml', 'kustomization.yml', 'Kustomization'].map((f) => join(dir, f)).find((f) => existsSync(f))
  if (!file) throw new Error(`${dir}: no kustomization.yaml`)
  const k = parse(readFileSync(file, 'utf8')) as Manifest
  for (const key of Object.keys(k)) if (!KNOWN.has(key)) throw new Error(`${file}: "${key}" is not supported by test/helpers/kustomize.ts`)
  const out: Manifest[] = []
  for (const r of (k.resources ?? []) as string[]) {
    const path = join(dir, r)
    if (statSync(path).isDirectory()) out.push(...renderKustomization(path))
    else for (const d of parseAllDocuments(readFileSync(path, 'utf8'))) if (d.contents) out.push(d.toJS() as Manifest)
  }
  const renamed = new Map<string, string>()
  for (const g of (k.configMapGenerator ?? []) as { name: string; files: string[]; [other: string]: unknown }[]) {
    for (const key of Object.keys(g)) if (key !== 'name' && key !== 'files') throw new Error(`${file}: configMapGenerator.${key} is not supported`)
    const data: Record<string, string> = {}
    for (const f of g.files) data[basename(f)] = readFileSync(join(dir, f), 'utf8')
    const name = `${g.name}-${configMapHash(data)}`
    renamed.set(g.name, name)
    out.push({ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name }, data })
  }
  for (const m of out) {
    for (const spec of podSpecs(m)) {
      for (const v of spec.volumes ?? []) if (v.configMap && renamed.has(v.configMap.name)) v.configMap.name = renamed.get(v.configMap.name)
    }
  }
  for (const image of (k.images ?? []) as { name: string; newName?: string; newTag?: string }[]) {
    for (const m of out) {
      for (const spec of podSpecs(m)) {
        for (const c of [...(spec.initContainers ?? []), ...(spec.containers ?? [])]) {
          const [name, tag] = splitImage(c.image as string)
          if (name !== image.name) continue
          c.image = `${image.newName ?? name}${image.newTag !== undefined ? `:${image.newTag}` : tag ? `:${tag}` : ''}`
        }
      }
    }
  }
  if (k.namespace) {
    for (const m of out) {
      if (CLUSTER_SCOPED.has(m.kind)) continue
      m.metadata.namespace = k.namespace
      if (m.kind === 'RoleBinding' || m.kind === 'ClusterRoleBinding') {
        for (const s of m.subjects ?? []) if (s.kind === 'ServiceAccount') s.namespace = k.namespace
      }
    }
  }
  return out
}

function splitImage(image: string): [string, string | undefined] {
  const slash = image.lastIndexOf('/')
  const colon = image.lastIndexOf(':')
  return colon > slash ? [image.slice(0, colon), image.slice(colon + 1)] : [image, undefined]
}
