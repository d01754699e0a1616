/** The `process` entry of the provider table (providers/plugins.ts). Settings come only from the YAML app entries. */
import { definePlugin } from '../plugin.js'
import { processConfigSchema } from './config.js'
import { ProcessProvider } from './provider.js'

export const processPlugin = definePlugin({
  kind: 'process',
  configSchema: processConfigSchema,
  sleepModes: ['stop', 'pause'],
  create: (config, context) => new ProcessProvider(config, context.logger, { baseDir: context.baseDir, ...(context.stateDir !== undefined ? { stateDir: context.stateDir } : {}) }),
})
