import { z } from 'zod'
import { backendSettingsShape, noBusyCpu, onlySleepModes } from '../../config/types.js'

const dnsLabel = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/

/**
 * `providers.kubernetes`: Deployments and StatefulSets annotated `<annotation_prefix>.domain`,
 * scaled between 0 and their awake count through the `scale` subresource.
 *
 * Credentials: `kubeconfig` (a file; token or client certificate, CA), else the in-cluster
 * service account (token and CA under /var/run/secrets/kubernetes.io/serviceaccount,
 * KUBERNETES_SERVICE_HOST/PORT), else $KUBECONFIG or ~/.kube/config.
 */
export const kubernetesConfigSchema = z
  .strictObject({
    /** Path of a kubeconfig file (`~/` expanded). Default: in-cluster, else $KUBECONFIG, else ~/.kube/config. */
    kubeconfig: z.string().min(1).optional(),
    /** Context of the kubeconfig to use. Default: its current-context. */
    context: z.string().min(1).optional(),
    /** `all` (needs cluster-wide list/watch), or the namespaces to watch. Default: the kubeconfig's or service account's namespace. */
    namespaces: z
      .union([
        z.literal('all'),
        z
          .array(z.string().regex(dnsLabel, 'a namespace name (lower-case letters, digits, "-")'))
          .min(1, 'list at least one namespace, or write namespaces: all'),
      ])
      .optional(),
    /** Annotations are `<annotation_prefix>.domain`, `<annotation_prefix>.port`… */
    annotation_prefix: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, 'letters, digits, "_", "-", "."').default('relight'),
    /** Upstreams: each ready pod's IP (`pods`), or the workload's Service by its cluster DNS name (`service`). */
    route: z.enum(['pods', 'service']).default('pods'),
    /** Cluster DNS suffix for `route: service`. */
    cluster_domain: z.string().regex(/^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$/, 'a DNS suffix such as cluster.local').default('cluster.local'),
    /** Port when the workload has no `<prefix>.port` annotation and its pods declare no single container port. Default: defaults.app_port. */
    port: z.number().int().min(1).max(65535).optional(),
    /**
     * true: annotated workloads running when the sidecar starts sleep after idle_timeout like any
     * other. false: they are left running until someone else scales them to 0.
     */
    auto_sleep_on_start: z.boolean().default(true),
    /** This sidecar's name in the shared Leases (holderIdentity). Default: $POD_NAME, else hostname/pid. */
    identity: z.string().min(1).max(128).optional(),
    ...backendSettingsShape,
  })
  .superRefine(onlySleepModes(['scale'], 'kubernetes workloads'))
  .superRefine(noBusyCpu('kubernetes'))

export type KubernetesConfig = z.output<typeof kubernetesConfigSchema>
