/**
 * What the sidecar needs to be allowed, and `check`'s answer in words: one
 * SelfSubjectAccessReview per permission and namespace (every authenticated identity may ask).
 */
import type { CheckResult } from '../../core/provider.js'
import type { KubeClient } from './client.js'

export interface Permission {
  readonly group: string
  readonly resource: string
  readonly subresource?: string
  readonly verb: string
  /** What breaks without it, in words. */
  readonly why: string
}

export const PERMISSIONS: readonly Permission[] = [
  { group: 'apps', resource: 'deployments', verb: 'list', why: 'discovering annotated Deployments' },
  { group: 'apps', resource: 'deployments', verb: 'watch', why: 'following Deployment changes' },
  { group: 'apps', resource: 'deployments', verb: 'get', why: 'reading a Deployment afresh before a scale-down' },
  { group: 'apps', resource: 'deployments', verb: 'patch', why: 'writing activity and scaling Deployments (wake and sleep)' },
  { group: 'apps', resource: 'statefulsets', verb: 'list', why: 'discovering annotated StatefulSets' },
  { group: 'apps', resource: 'statefulsets', verb: 'watch', why: 'following StatefulSet changes' },
  { group: 'apps', resource: 'statefulsets', verb: 'get', why: 'reading a StatefulSet afresh before a scale-down' },
  { group: 'apps', resource: 'statefulsets', verb: 'patch', why: 'writing activity and scaling StatefulSets (wake and sleep)' },
  { group: '', resource: 'pods', verb: 'list', why: 'finding ready pods (upstreams)' },
  { group: '', resource: 'pods', verb: 'watch', why: 'waiting for pods to be ready' },
]

interface AccessReview {
  status?: { allowed?: boolean; denied?: boolean; reason?: string; evaluationError?: string }
}

export function permissionName(p: Permission): string {
  return `${p.resource}${p.subresource ? `/${p.subresource}` : ''}${p.group ? `.${p.group}` : ''}`
}

/**
 * One result per namespace: ok when everything is allowed, else one PROBLEM per denied
 * permission, saying which verb on which resource and what it is for.
 */
export async function checkPermissions(client: KubeClient, namespaces: readonly (string | undefined)[], signal: AbortSignal): Promise<CheckResult[]> {
  const results: CheckResult[] = []
  for (const namespace of namespaces) {
    const where = namespace === undefined ? 'in all namespaces' : `in namespace "${namespace}"`
    const answers = await Promise.all(
      PERMISSIONS.map(async (p) => {
        const review = await client.json<AccessReview>('POST', '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: {
                ...(namespace !== undefined ? { namespace } : {}),
                group: p.group,
                resource: p.resource,
                ...(p.subresource ? { subresource: p.subresource } : {}),
                verb: p.verb,
              },
            },
          },
          signal,
        })
        return { p, allowed: review.status?.allowed === true }
      }),
    )
    const denied = answers.filter((a) => !a.allowed)
    if (denied.length === 0) {
      results.push({ ok: true, message: `RBAC: every permission the sidecar needs is granted ${where}` })
      continue
    }
    for (const { p } of denied) {
      results.push({ ok: false, message: `RBAC: the sidecar may not ${p.verb} ${permissionName(p)} ${where}, needed for ${p.why} (see examples/kubernetes/rbac.yaml)` })
    }
  }
  return results
}
