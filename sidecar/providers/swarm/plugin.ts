/** The `swarm` entry of the provider table (providers/plugins.ts). */
import { labelSettings } from '../moby/labels.js'
import { definePlugin } from '../plugin.js'
import { swarmConfigSchema } from './config.js'
import { SWARM_SLEEP_MODES, SwarmProvider } from './provider.js'

export const swarmPlugin = definePlugin({
  kind: 'swarm',
  configSchema: swarmConfigSchema,
  sleepModes: SWARM_SLEEP_MODES,
  settings: {
    carrier: 'service label',
    name: (key, config) => `${config.label_prefix}.${key}`,
    read: (labels, config) => {
      const problems: string[] = []
      return { settings: labelSettings(labels, config.label_prefix, SWARM_SLEEP_MODES, problems), problems }
    },
  },
  create: (config, context) => new SwarmProvider(config, context.logger),
})
