/**
 * The provider kinds the sidecar knows, in the order their instances are built (which ranks
 * them when two declare one host: the config file's own processes first). config/schema.ts
 * builds `providers` from this table; providers/plugins.ts pairs each entry with its runtime.
 *
 * Adding a provider: its folder (config.ts, descriptor.ts, provider.ts, plugin.ts, …), one entry
 * here and one in providers/plugins.ts.
 */
import { dockerDescriptor } from './docker/descriptor.js'
import { kubernetesDescriptor } from './kubernetes/descriptor.js'
import { podmanDescriptor } from './podman/descriptor.js'
import { processDescriptor } from './process/descriptor.js'
import { slicerDescriptor } from './slicer/descriptor.js'
import { swarmDescriptor } from './swarm/descriptor.js'

export const PROVIDER_DESCRIPTORS = [processDescriptor, dockerDescriptor, podmanDescriptor, slicerDescriptor, kubernetesDescriptor, swarmDescriptor] as const

export type ProviderKind = (typeof PROVIDER_DESCRIPTORS)[number]['kind']
