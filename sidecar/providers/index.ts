/** Builds the configured providers. The only place that knows every provider kind. */
import type { Logger } from 'pino'
import type { Config } from '../config/schema.js'
import type { Provider } from '../core/provider.js'
import { DockerProvider } from './docker/provider.js'
import { KubernetesProvider } from './kubernetes/provider.js'
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
  if (p.process) providers.push(new ProcessProvider(p.process, logger.child({ provider: 'process' }), { baseDir: options.baseDir }))
  if (p.docker) providers.push(new DockerProvider(p.docker, logger.child({ provider: 'docker' }), { appPort: config.defaults.app_port }))
  if (p.podman) providers.push(new PodmanProvider(p.podman, logger.child({ provider: 'podman' }), { defaults: config.defaults }))
  if (p.slicer) providers.push(new SlicerProvider(p.slicer, logger.child({ provider: 'slicer' }), { baseDir: options.baseDir }))
  if (p.kubernetes) providers.push(new KubernetesProvider(p.kubernetes, logger.child({ provider: 'kubernetes' }), { baseDir: options.baseDir, appPort: config.defaults.app_port }))
  return providers
}
