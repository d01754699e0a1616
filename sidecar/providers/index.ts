/** Builds the configured providers. The only place that knows every provider kind. */
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { Provider } from '../core/provider.js'
import { DockerProvider } from './docker/provider.js'
import { PodmanProvider } from './podman/provider.js'
import { ProcessProvider } from './process/provider.js'
import { SlicerProvider } from './slicer/provider.js'

export interface ProviderOptions {
  /** Directory that relative paths in the config are resolved against (the config file's). */
  readonly baseDir: string
}

export function createProviders(config: Config, logger: Logger, options: ProviderOptions): Provider[] {
  const providers: Provider[] = []
  const p = config.providers
  // In config order within a kind; the order ranks providers when two declare one host.
  for (const c of p.process ?? []) providers.push(new ProcessProvider(c, logger.child({ provider: c.id }), { baseDir: options.baseDir }))
  for (const c of p.docker ?? []) providers.push(new DockerProvider(c, logger.child({ provider: c.id }), { appPort: config.defaults.app_port }))
  for (const c of p.podman ?? []) providers.push(new PodmanProvider(c, logger.child({ provider: c.id }), { defaults: config.defaults }))
  for (const c of p.slicer ?? []) providers.push(new SlicerProvider(c, logger.child({ provider: c.id }), { baseDir: options.baseDir }))
  return providers
}
