/** What the configuration knows of the `slicer` kind (providers/descriptors.ts). */
import type { SleepMode } from '../../core/provider.js'
import { defineDescriptor } from '../descriptor.js'
import { slicerConfigSchema } from './config.js'
import { parseTags, TAG_PREFIX } from './tags.js'

export const SLICER_SLEEP_MODES: readonly SleepMode[] = ['pause', 'suspend', 'stop']

export const slicerDescriptor = defineDescriptor({
  kind: 'slicer',
  configSchema: slicerConfigSchema,
  oldNames: { watch_interval: 'resync_interval' },
  sleepModes: SLICER_SLEEP_MODES,
  settings: {
    carrier: 'tag',
    name: (key) => `${TAG_PREFIX}${key}`,
    read: (tags) => {
      const parsed = parseTags(Object.entries(tags).map(([name, value]) => `${name}=${value}`))
      return { settings: parsed.settings, problems: parsed.problems }
    },
  },
})
