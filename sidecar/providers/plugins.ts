/**
 * The runtime table: each kind of providers/descriptors.ts with its `create` and lifecycle
 * hooks, in the descriptors' order. Only the composition root (providers/index.ts) imports it.
 */
import type { ProviderKind } from './descriptors.js'
import { PROVIDER_DESCRIPTORS } from './descriptors.js'
import { dockerPlugin } from './docker/plugin.js'
import { kubernetesPlugin } from './kubernetes/plugin.js'
import type { ProviderPlugin } from './plugin.js'
import { podmanPlugin } from './podman/plugin.js'
import { processPlugin } from './process/plugin.js'
import { slicerPlugin } from './slicer/plugin.js'
import { swarmPlugin } from './swarm/plugin.js'

/** Every kind must have its runtime (a missing one is a type error). */
const BY_KIND: { readonly [K in ProviderKind]: ProviderPlugin<K> } = {
  process: processPlugin,
  docker: dockerPlugin,
  podman: podmanPlugin,
  slicer: slicerPlugin,
  kubernetes: kubernetesPlugin,
  swarm: swarmPlugin,
}

export const PROVIDER_PLUGINS: readonly ProviderPlugin[] = PROVIDER_DESCRIPTORS.map((d) => BY_KIND[d.kind] as ProviderPlugin)

export type { ProviderKind }
