/**
 * `relight-sidecar check` for Kubernetes: the API answers, the RBAC permissions (rbac.ts), the
 * shared-decision identity, and every annotated workload's unusable annotations.
 */
import type { CheckResult } from '../../core/provider.js'
import type { KubeClient } from './client.js'
import { checkPermissions } from './rbac.js'
import { listWorkloads } from './workload-list.js'

export interface CheckInput {
  readonly client: KubeClient
  readonly source: string | undefined
  readonly namespaces: readonly (string | undefined)[]
  readonly prefix: string
  readonly identity: string
  /** The unusable annotations of one workload, in words, prefixed with its id. */
  readonly problems: (k: { kind: 'deployment' | 'statefulset'; workload: import('./workloads.js').Workload }) => string[]
}

export async function checkKubernetes(input: CheckInput, signal: AbortSignal): Promise<CheckResult[]> {
  const { client } = input
  const results: CheckResult[] = []
  try {
    const v = await client.json<{ gitVersion?: string }>('GET', '/version', { signal })
    results.push({ ok: true, message: `Kubernetes ${v.gitVersion ?? '?'} answers at ${client.server}${input.source ? ` (${input.source})` : ''}` })
  } catch (err) {
    return [{ ok: false, message: `cannot use the Kubernetes API: ${(err as Error).message}` }]
  }
  try {
    results.push(...(await checkPermissions(client, input.namespaces, signal)))
  } catch (err) {
    results.push({ ok: false, message: `cannot ask the API server which permissions the sidecar has: ${(err as Error).message}` })
  }
  results.push({
    ok: true,
    message: `shared decisions: this sidecar writes its activity into the ${input.prefix}.activity annotation of each workload as "${input.identity}"; no clock is compared across hosts`,
  })
  try {
    for (const k of await listWorkloads(client, input.namespaces, input.prefix, signal)) for (const p of input.problems(k)) results.push({ ok: false, message: p })
  } catch {
    // list() already reported it
  }
  return results
}
