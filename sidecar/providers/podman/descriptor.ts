/** What the configuration knows of the `podman` kind (providers/descriptors.ts). */
import type { SleepMode } from '../../core/provider.js'
import { defineDescriptor } from '../descriptor.js'
import { labelSettings } from '../kit/labels.js'
import { podmanConfigSchema } from './config.js'

export const PODMAN_SLEEP_MODES: readonly SleepMode[] = ['checkpoint', 'pause', 'stop']

export const podmanDescriptor = defineDescriptor({
  kind: 'podman',
  configSchema: podmanConfigSchema,
  oldNames: { watch_interval: 'resync_interval' },
  sleepModes: PODMAN_SLEEP_MODES,
  settings: {
    carrier: 'label',
    name: (key, config) => `${config.label_prefix}.${key}`,
    read: (labels, config) => {
      const problems: string[] = []
      return { settings: labelSettings(labels, config.label_prefix, PODMAN_SLEEP_MODES, problems), problems }
    },
  },
})
