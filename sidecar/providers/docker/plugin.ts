/** The `docker` entry of the provider table (providers/plugins.ts). */
import { definePlugin } from '../plugin.js'
import { dockerConfigSchema } from './config.js'
import { labelSettings } from '../moby/labels.js'
import { DockerProvider } from './provider.js'

const SLEEP_MODES = ['stop', 'pause'] as const

export const dockerPlugin = definePlugin({
  kind: 'docker',
  configSchema: dockerConfigSchema,
  sleepModes: SLEEP_MODES,
  oldNames: { port: 'app_port' },
  settings: {
    carrier: 'label',
    name: (key, config) => `${config.label_prefix}.${key}`,
    read: (labels, config) => {
      const problems: string[] = []
      return { settings: labelSettings(labels, config.label_prefix, SLEEP_MODES, problems), problems }
    },
  },
  create: (config, context) => new DockerProvider(config, context.logger, { appPort: context.defaults.app_port }),
})
