/**
 * The provider table: every provider kind the sidecar knows, in the order their instances are
 * built (which ranks them when two declare one host: the config file's own processes first).
 * The config schema of `providers` and the providers built at start come from it.
 *
 * Adding a provider: its folder (config.ts, provider.ts, plugin.ts, …) and one entry here.
 */
import { dockerPlugin } from './docker/plugin.js'
import { kubernetesPlugin } from './kubernetes/plugin.js'
import { podmanPlugin } from './podman/plugin.js'
import { processPlugin } from './process/plugin.js'
import { slicerPlugin } from './slicer/plugin.js'
import { swarmPlugin } from './swarm/plugin.js'

export const PROVIDER_PLUGINS = [processPlugin, dockerPlugin, podmanPlugin, slicerPlugin, kubernetesPlugin, swarmPlugin] as const

export type ProviderKind = (typeof PROVIDER_PLUGINS)[number]['kind']
