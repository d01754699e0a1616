/**
 * list(): the annotated workloads and, for those scaled up, their pods. From the view while it
 * is live (0 requests: the informers' own lists after each reconnect are the truth); from the
 * API while it is not (at start, before the informers listed, and during an outage).
 */
import { mapLimit } from '../../core/map-limit.js'
import type { KubeClient } from './client.js'
import type { KubernetesView } from './view.js'
import { listPods } from './workload-wake.js'
import type { WorkloadOps } from './workload-patch.js'
import { collectionPath, isAnnotated, type PodRecord, specReplicas, type Workload, type WorkloadKind, type WorkloadList, WORKLOAD_KINDS } from './workloads.js'

const POD_LIST_CONCURRENCY = 8

export interface Listed {
  readonly kind: WorkloadKind
  readonly workload: Workload
  readonly pods: PodRecord[]
}

export function listFromView(view: KubernetesView): Listed[] {
  return [...view.entries.values()].map((e) => ({ kind: e.kind, workload: e.workload, pods: specReplicas(e.workload) > 0 ? view.podsOf(e) : [] }))
}

/** The annotated workloads of the namespaces (undefined: all), without pods. */
export async function listWorkloads(client: KubeClient, namespaces: readonly (string | undefined)[], prefix: string, signal: AbortSignal): Promise<{ kind: WorkloadKind; workload: Workload }[]> {
  const lists = await Promise.all(
    namespaces.flatMap((ns) =>
      WORKLOAD_KINDS.map(async (kind) => {
        const list = await client.json<WorkloadList>('GET', collectionPath(kind, ns), { signal })
        return list.items.filter((w) => isAnnotated(w, prefix)).map((workload) => ({ kind, workload }))
      }),
    ),
  )
  return lists.flat()
}

export async function listFromApi(ops: WorkloadOps, namespaces: readonly (string | undefined)[], signal: AbortSignal): Promise<Listed[]> {
  const known = await listWorkloads(ops.client, namespaces, ops.prefix, signal)
  // Pods only for workloads scaled up: the others have none to route to.
  return mapLimit(known, POD_LIST_CONCURRENCY, async (k) => ({ ...k, pods: specReplicas(k.workload) > 0 ? (await listPods(ops, k.kind, k.workload, signal)).pods : [] }))
}
