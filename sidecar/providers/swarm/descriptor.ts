/** What the configuration knows of the `swarm` kind (providers/descriptors.ts). */
import type { SleepMode } from '../../core/provider.js'
import { defineDescriptor } from '../descriptor.js'
import { labelSettings } from '../kit/labels.js'
import { swarmConfigSchema } from './config.js'

export const SWARM_SLEEP_MODES: readonly SleepMode[] = ['scale']

export const swarmDescriptor = defineDescriptor({
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
})
