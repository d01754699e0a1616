/** The `docker` runtime entry (providers/plugins.ts): its descriptor and how an instance is built. */
import { definePlugin } from '../plugin.js'
import { dockerDescriptor } from './descriptor.js'
import { DockerProvider } from './provider.js'

export const dockerPlugin = definePlugin({
  ...dockerDescriptor,
  create: (config, context) =>
    new DockerProvider(config, context.logger, { appPort: context.defaults.app_port, ...(context.claimedElsewhere ? { claimedElsewhere: context.claimedElsewhere } : {}) }),
})
