/** The `kubernetes` entry of the provider table (providers/plugins.ts). */
import { labelSettings } from '../moby/labels.js'
import { definePlugin } from '../plugin.js'
import { kubernetesConfigSchema } from './config.js'
import { KubernetesProvider, KUBERNETES_SLEEP_MODES } from './provider.js'

export const kubernetesPlugin = definePlugin({
  kind: 'kubernetes',
  configSchema: kubernetesConfigSchema,
  sleepModes: KUBERNETES_SLEEP_MODES,
  settings: {
    carrier: 'annotation',
    name: (key, config) => `${config.annotation_prefix}.${key}`,
    read: (annotations, config) => {
      const problems: string[] = []
      return { settings: labelSettings(annotations, config.annotation_prefix, KUBERNETES_SLEEP_MODES, problems), problems }
    },
  },
  create: (config, context) => new KubernetesProvider(config, context.logger, { baseDir: context.baseDir, appPort: context.defaults.app_port }),
})
