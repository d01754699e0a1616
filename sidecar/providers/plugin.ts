/**
 * What a provider kind contributes to the sidecar: one entry of the table in plugins.ts. The
 * config schema (`providers.<kind>`, one block or a list of instances) and the set of providers
 * built at start come from that table; nothing else names a provider kind.
 */
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { BackendSettings, Provider, SleepMode } from '../core/provider.js'
import type { SettingKey } from '../core/settings.js'

/** What `create` gets besides its own block. */
export interface PluginContext {
  /** Already a child logger naming this instance (`provider: <id>`). */
  readonly logger: Logger
  /** Directory that relative paths in the config are resolved against (the config file's). */
  readonly baseDir: string
  /** Where what must survive a crash of the sidecar is kept (`state_dir`, resolved); absent: nowhere. */
  readonly stateDir?: string
  /** The `defaults` a provider may need to decide per backend (port, sleep modes in force). */
  readonly defaults: { readonly app_port: number; readonly sleep: SleepMode; readonly fallback_sleep: SleepMode }
}

/**
 * How a provider's backends carry per-backend settings in engine metadata (labels, tags,
 * annotations). Names and bounds come from the table in core/settings.ts (`readSettings`).
 */
export interface SettingsCodec<C> {
  /** What one piece of metadata is called in messages and docs: `label`, `tag`, `annotation`. */
  readonly carrier: string
  /** The metadata name of a setting under this instance's config, e.g. `relight.wake_timeout`. */
  name(key: SettingKey, config: C): string
  /** The settings in a backend's metadata (name → text); unusable ones are left out and described. */
  read(metadata: Readonly<Record<string, string>>, config: C): { readonly settings: BackendSettings; readonly problems: readonly string[] }
}

export interface ProviderPlugin<K extends string = string, S extends z.ZodType = z.ZodType> {
  /** `providers.<kind>` in the config, and `Provider.kind`. */
  readonly kind: K
  /** The schema of one block (without `id`, which every block accepts). */
  readonly configSchema: S
  /** Modes the provider's backends can sleep in, preferred first. */
  readonly sleepModes: readonly SleepMode[]
  /** Old names of the block's keys, `resync_interval` included (old → new, same meaning), still accepted and logged as deprecated. */
  readonly oldNames?: Readonly<Record<string, string>>
  /** Absent when settings come only from the YAML (process apps). */
  readonly settings?: SettingsCodec<z.output<S>>
  /** `config.resync_interval`, when set, becomes the provider's `resyncInterval`. */
  create(config: z.output<S> & { readonly id: string; readonly resync_interval?: number }, context: PluginContext): Provider
}

/** Keeps the literal kind and the schema type of an entry (for the config's static type). */
export function definePlugin<K extends string, S extends z.ZodType>(plugin: ProviderPlugin<K, S>): ProviderPlugin<K, S> {
  return plugin
}
