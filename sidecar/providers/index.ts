/** Builds the configured providers from the provider table (plugins.ts). */
import type { Logger } from 'pino'
import type { Instance } from '../config/instances.js'
import type { Config } from '../config/schema.js'
import { stateDir } from '../config/state-dir.js'
import type { Provider } from '../core/provider.js'
import type { ProviderPlugin } from './plugin.js'
import { PROVIDER_PLUGINS } from './plugins.js'

export interface ProviderOptions {
  /** Directory that relative paths in the config are resolved against (the config file's). */
  readonly baseDir: string
}

export function createProviders(config: Config, logger: Logger, options: ProviderOptions): Provider[] {
  const providers: Provider[] = []
  const blocks = config.providers as Readonly<Record<string, readonly Instance<object>[] | undefined>>
  // Kinds in table order, instances in config order: the order ranks providers when two declare one host.
  for (const plugin of PROVIDER_PLUGINS as readonly ProviderPlugin[]) {
    for (const block of blocks[plugin.kind] ?? []) {
      const log = logger.child({ provider: block.id })
      for (const key of block.aliased ?? []) {
        const now = plugin.oldNames?.[key] ?? key
        log.warn({ key, now }, `providers.${plugin.kind}.${key} is deprecated; write ${now} (same meaning)`)
      }
      providers.push(plugin.create(block, { logger: log, baseDir: options.baseDir, defaults: config.defaults, stateDir: stateDir(config, options.baseDir) }))
    }
  }
  return providers
}
