/**
 * What the configuration knows of a provider kind: its descriptor (kind, block schema, sleep
 * modes, settings codec, old key names). Pure data and parsers: importing a descriptor loads no
 * provider implementation, engine client or state file code, so config/schema.ts, `check`,
 * `reload` and every test that parses a config stay light. The runtime side (building the
 * provider, lifecycle hooks) is providers/plugin.ts, which only the composition root imports.
 */
import type { z } from 'zod'
import type { BackendSettings, SleepMode } from '../core/provider.js'
import type { SettingKey } from '../core/settings.js'

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

export interface ProviderDescriptor<K extends string = string, S extends z.ZodType = z.ZodType> {
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
}

/** Keeps the literal kind and the schema type of a descriptor (for the config's static type). */
export function defineDescriptor<K extends string, S extends z.ZodType>(descriptor: ProviderDescriptor<K, S>): ProviderDescriptor<K, S> {
  return descriptor
}
