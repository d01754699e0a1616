/**
 * The one write the Kubernetes provider makes (issue 21): a merge PATCH of the workload itself
 * (Deployment or StatefulSet), carrying the activity token annotation and/or `spec.replicas`,
 * optionally with `metadata.resourceVersion` as precondition (a stale one answers 409 Conflict).
 * `fieldManager=relight-sidecar` names the sidecar as the owner of what it writes.
 */
import { randomBytes } from 'node:crypto'
import type { Logger } from 'pino'
import { RelightError } from '../../core/errors.js'
import type { KubeClient } from './client.js'
import type { KubernetesView } from './view.js'
import { type Workload, type WorkloadRef, workloadId, workloadPath } from './workloads.js'

export const FIELD_MANAGER = 'relight-sidecar'

/** What every operation file needs: the client, the view, who we are. */
export interface WorkloadOps {
  readonly client: KubeClient
  readonly view: KubernetesView
  readonly identity: string
  readonly prefix: string
  readonly log: Logger
  readonly kind: string
}

/** `v1 <identity> <16 hex random> <ago_ms>` (docs/plans/issue-21-shared-decisions.md §4.5). */
export function newToken(identity: string, agoMs: number): string {
  return `v1 ${identity.replace(/\s+/g, '_')} ${randomBytes(8).toString('hex')} ${Math.max(0, Math.round(agoMs))}`
}

export interface PatchBody {
  readonly token?: string
  readonly replicas?: number
  /** Precondition: the write fails with 409 unless the object still has this resourceVersion. */
  readonly resourceVersion?: string
}

/** The merge-patch body, in the shape the API server receives it. */
export function patchBody(ops: Pick<WorkloadOps, 'view'>, body: PatchBody): Record<string, unknown> {
  const metadata: Record<string, unknown> = {}
  if (body.resourceVersion !== undefined) metadata.resourceVersion = body.resourceVersion
  if (body.token !== undefined) metadata.annotations = { [ops.view.annotation]: body.token }
  return {
    ...(Object.keys(metadata).length > 0 ? { metadata } : {}),
    ...(body.replicas !== undefined ? { spec: { replicas: body.replicas } } : {}),
  }
}

/** PATCH the workload; 404 is BACKEND_NOT_FOUND, anything else the client's error (409: `statusOf` 409). */
export async function patchWorkload(ops: WorkloadOps, ref: WorkloadRef, body: PatchBody, signal: AbortSignal): Promise<Workload> {
  try {
    return await ops.client.json<Workload>('PATCH', workloadPath(ref), {
      query: { fieldManager: FIELD_MANAGER },
      body: patchBody(ops, body),
      contentType: 'application/merge-patch+json',
      signal,
    })
  } catch (err) {
    if (ops.client.statusOf(err) === 404) throw notFound(ops, ref)
    throw err
  }
}

/** GET the workload; 404 is BACKEND_NOT_FOUND. */
export async function getWorkload(ops: WorkloadOps, ref: WorkloadRef, signal: AbortSignal): Promise<Workload> {
  try {
    return await ops.client.json<Workload>('GET', workloadPath(ref), { signal })
  } catch (err) {
    if (ops.client.statusOf(err) === 404) throw notFound(ops, ref)
    throw err
  }
}

export function notFound(ops: Pick<WorkloadOps, 'kind'>, ref: WorkloadRef, why = 'does not exist'): RelightError {
  return new RelightError('RELIGHT_ERR_BACKEND_NOT_FOUND', `${workloadId(ref)} ${why}`, { backend: workloadId(ref), provider: ops.kind })
}
