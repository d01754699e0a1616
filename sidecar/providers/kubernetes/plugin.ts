/** The `kubernetes` runtime entry (providers/plugins.ts): its descriptor and how an instance is built. */
import { definePlugin } from '../plugin.js'
import { kubernetesDescriptor } from './descriptor.js'
import { KubernetesProvider } from './provider.js'

export const kubernetesPlugin = definePlugin({
  ...kubernetesDescriptor,
  create: (config, context) => new KubernetesProvider(config, context.logger, { baseDir: context.baseDir, appPort: context.defaults.app_port }),
})
