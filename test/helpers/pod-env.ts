/**
 * A pod container's environment and files, reproduced for `docker run` of its image against the
 * test control plane: env from the container spec (fieldRef metadata.name/namespace, secretKeyRef
 * read through the API), the service account's token and CA where a kubelet mounts them, the
 * KUBERNETES_SERVICE_* variables pointing at the API server on loopback, and the container's
 * securityContext as docker flags.
 */
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { ControlPlane } from './k8s.js'
import type { Manifest } from './kustomize.js'

export interface PodRun {
  /** `docker run` flags (no image, no command). */
  readonly flags: string[]
  readonly env: Record<string, string>
}

export async function podRunFlags(cp: ControlPlane, options: { namespace: string; podName: string; container: Manifest; saToken: string; dir: string; configDirs: Record<string, string> }): Promise<PodRun> {
  const { container, namespace } = options
  const env: Record<string, string> = {}
  for (const e of (container.env ?? []) as Manifest[]) {
    if (e.value !== undefined) env[e.name] = String(e.value)
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.name') env[e.name] = options.podName
    else if (e.valueFrom?.fieldRef?.fieldPath === 'metadata.namespace') env[e.name] = namespace
    else if (e.valueFrom?.secretKeyRef) {
      const ref = e.valueFrom.secretKeyRef
      const secret = await cp.ok<{ data: Record<string, string> }>('GET', `/api/v1/namespaces/${namespace}/secrets/${ref.name}`)
      const value = secret.data[ref.key]
      if (value === undefined) throw new Error(`secret ${ref.name} has no key ${ref.key}`)
      env[e.name] = Buffer.from(value, 'base64').toString('utf8')
    } else throw new Error(`env ${e.name}: this valueFrom is not reproduced by test/helpers/pod-env.ts`)
  }
  const api = new URL(cp.url)
  env.KUBERNETES_SERVICE_HOST = api.hostname
  env.KUBERNETES_SERVICE_PORT = api.port
  const sa = join(options.dir, 'serviceaccount')
  mkdirSync(sa, { recursive: true })
  writeFileSync(join(sa, 'token'), options.saToken, { mode: 0o644 })
  writeFileSync(join(sa, 'namespace'), namespace, { mode: 0o644 })
  writeFileSync(join(sa, 'ca.crt'), (await import('node:fs')).readFileSync(cp.ca), { mode: 0o644 })
  const flags = ['--network', 'host', '-v', `${sa}:/var/run/secrets/kubernetes.io/serviceaccount:ro`]
  for (const [k, v] of Object.entries(env)) flags.push('-e', `${k}=${v}`)
  for (const m of (container.volumeMounts ?? []) as Manifest[]) {
    const host = options.configDirs[m.name]
    if (host) flags.push('-v', `${host}:${m.mountPath}:ro`)
    else flags.push('--tmpfs', `${m.mountPath}:uid=${container.securityContext?.runAsUser ?? 0},mode=0700`) // emptyDir
  }
  const sc = (container.securityContext ?? {}) as Manifest
  if (sc.runAsUser !== undefined) flags.push('--user', `${sc.runAsUser}:${sc.runAsGroup ?? sc.runAsUser}`)
  if (sc.readOnlyRootFilesystem) flags.push('--read-only')
  if (sc.allowPrivilegeEscalation === false) flags.push('--security-opt', 'no-new-privileges')
  for (const cap of (sc.capabilities?.drop ?? []) as string[]) flags.push('--cap-drop', cap)
  return { flags, env }
}
