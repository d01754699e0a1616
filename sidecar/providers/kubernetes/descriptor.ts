/** What the configuration knows of the `kubernetes` kind (providers/descriptors.ts). */
import type { SleepMode } from '../../core/provider.js'
import { defineDescriptor } from '../descriptor.js'
import { labelSettings } from '../kit/labels.js'
import { kubernetesConfigSchema } from './config.js'

export const KUBERNETES_SLEEP_MODES: readonly SleepMode[] = ['scale']

export const kubernetesDescriptor = defineDescriptor({
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
})
