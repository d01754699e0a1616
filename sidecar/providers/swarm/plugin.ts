/**
 * The `swarm` runtime entry (providers/plugins.ts): its descriptor, how an instance is built,
 * and its claim on task containers (Swarm replaces a task that stops, so the container providers
 * leave them to the service's scale).
 */
import { definePlugin } from '../plugin.js'
import { swarmDescriptor } from './descriptor.js'
import { isSwarmTask } from './labels.js'
import { SwarmProvider } from './provider.js'

export const swarmPlugin = definePlugin({
  ...swarmDescriptor,
  create: (config, context) => new SwarmProvider(config, context.logger),
  claims: (labels) => (isSwarmTask(labels) ? 'belongs to a Swarm service (providers.swarm drives it)' : undefined),
})
