/** The `slicer` entry of the provider table (providers/plugins.ts). */
import { definePlugin } from '../plugin.js'
import { slicerConfigSchema } from './config.js'
import { SlicerProvider } from './provider.js'
import { parseTags, TAG_PREFIX } from './tags.js'
import { SLICER_SLEEP_MODES } from './vm-sleep.js'

export const slicerPlugin = definePlugin({
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
  create: (config, context) => new SlicerProvider(config, context.logger, { baseDir: context.baseDir }),
})
