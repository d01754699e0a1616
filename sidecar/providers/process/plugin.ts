/**
 * The `process` runtime entry (providers/plugins.ts): its descriptor, how an instance is built,
 * and its lifecycle hooks: the app ports checked at start-up, the process groups a sidecar that
 * died left (records in `<state_dir>/process`), and reload in place (a diff per app).
 */
import { definePlugin } from '../plugin.js'
import { leftoverGroups, recordsDir } from './child-records.js'
import { processDescriptor } from './descriptor.js'
import { appPortProblems } from './preflight.js'
import { ProcessProvider } from './provider.js'

export const processPlugin = definePlugin({
  ...processDescriptor,
  create: (config, context) => new ProcessProvider(config, context.logger, { baseDir: context.baseDir, ...(context.stateDir !== undefined ? { stateDir: context.stateDir } : {}) }),
  preflight: (blocks, context) => appPortProblems(blocks, context.leftovers, context.runningSidecar),
  leftovers: (stateDir) => leftoverGroups(recordsDir(stateDir)),
  // `provider` was built by `create` above.
  applyConfig: (provider, block) => (provider as ProcessProvider).applyConfig(block),
})
