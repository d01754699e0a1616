/** What the configuration knows of the `docker` kind (providers/descriptors.ts). */
import { defineDescriptor } from '../descriptor.js'
import { labelSettings } from '../kit/labels.js'
import { dockerConfigSchema } from './config.js'

export const DOCKER_SLEEP_MODES = ['stop', 'pause'] as const

export const dockerDescriptor = defineDescriptor({
  kind: 'docker',
  configSchema: dockerConfigSchema,
  sleepModes: DOCKER_SLEEP_MODES,
  oldNames: { port: 'app_port' },
  settings: {
    carrier: 'label',
    name: (key, config) => `${config.label_prefix}.${key}`,
    read: (labels, config) => {
      const problems: string[] = []
      return { settings: labelSettings(labels, config.label_prefix, DOCKER_SLEEP_MODES, problems), problems }
    },
  },
})
