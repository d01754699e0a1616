/** The `slicer` runtime entry (providers/plugins.ts): its descriptor and how an instance is built. */
import { definePlugin } from '../plugin.js'
import { slicerDescriptor } from './descriptor.js'
import { SlicerProvider } from './provider.js'

export const slicerPlugin = definePlugin({
  ...slicerDescriptor,
  create: (config, context) => new SlicerProvider(config, context.logger, { baseDir: context.baseDir }),
})
