/** The `podman` runtime entry (providers/plugins.ts): its descriptor and how an instance is built. */
import { definePlugin } from '../plugin.js'
import { podmanDescriptor } from './descriptor.js'
import { PodmanProvider } from './provider.js'

export const podmanPlugin = definePlugin({
  ...podmanDescriptor,
  create: (config, context) =>
    new PodmanProvider(config, context.logger, { defaults: context.defaults, ...(context.claimedElsewhere ? { claimedElsewhere: context.claimedElsewhere } : {}) }),
})
