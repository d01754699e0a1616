/** What the configuration knows of the `process` kind (providers/descriptors.ts). Settings come only from the YAML app entries. */
import { defineDescriptor } from '../descriptor.js'
import { processConfigSchema } from './config.js'

export const processDescriptor = defineDescriptor({
  kind: 'process',
  configSchema: processConfigSchema,
  sleepModes: ['stop', 'pause'],
})
