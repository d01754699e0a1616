/** The `podman` entry of the provider table (providers/plugins.ts). */
import { labelSettings } from '../moby/labels.js'
import { definePlugin } from '../plugin.js'
import { podmanConfigSchema } from './config.js'
import { PODMAN_SLEEP_MODES, PodmanProvider } from './provider.js'

export const podmanPlugin = definePlugin({
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
  create: (config, context) => new PodmanProvider(config, context.logger, { defaults: context.defaults }),
})
