/**
 * What a provider kind contributes at run time: its descriptor (providers/descriptor.ts: what
 * the configuration knows) plus `create` and optional lifecycle hooks. One entry of the table in
 * providers/plugins.ts, which only the composition root (providers/index.ts, used by daemon.ts
 * and main.ts) imports. Nothing outside a provider's folder names its kind: start-up checks,
 * crash leftovers, reload in place and "this engine object is another provider's" go through the
 * hooks below.
 */
import type { Logger } from 'pino'
import type { z } from 'zod'
import type { Provider, SleepMode } from '../core/provider.js'
import type { ProviderDescriptor } from './descriptor.js'
import type { ClaimedElsewhere } from './kit/labels.js'

export type { SettingsCodec } from './descriptor.js'

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
  /** Engine objects another kind claims (its `claims` hook), e.g. a Swarm task's container; absent: none. */
  readonly claimedElsewhere?: ClaimedElsewhere
}

/** One parsed block of the kind, as `create` and the hooks get it. */
export type PluginBlock<S extends z.ZodType> = z.output<S> & { readonly id: string; readonly resync_interval?: number }

/** What the start-up checks know when they ask a kind about its blocks. */
export interface PreflightContext {
  /**
   * Process groups a sidecar that died left running (every kind's `leftovers`): crash recovery
   * ends them before anything starts, so what they hold is not "in use by another program".
   */
  readonly leftovers: ReadonlySet<number>
  /**
   * `check` on a live system: the pid of this config's running sidecar. What it and its children
   * hold is not "in use by another program", and a kind must then neither bind nor connect where
   * they listen (ops/live-sidecar.ts).
   */
  readonly runningSidecar?: number
}

export interface ProviderPlugin<K extends string = string, S extends z.ZodType = z.ZodType> extends ProviderDescriptor<K, S> {
  /** `config.resync_interval`, when set, becomes the provider's `resyncInterval`. */
  create(config: PluginBlock<S>, context: PluginContext): Provider
  /**
   * Start-up problems of this kind's blocks, one sentence each, which `check` prints and `serve`
   * refuses to start on (after the sidecar's own: state directory, sockets, listen addresses).
   */
  preflight?(blocks: readonly PluginBlock<S>[], context: PreflightContext): Promise<string[]>
  /** What a sidecar that died left running, from this kind's records in the state directory (`state_dir`, resolved). */
  leftovers?(stateDir: string): ReadonlySet<number>
  /**
   * On reload, take a changed block in place instead of replacing the instance (`provider` was
   * built by this kind's `create`); returns what changed, for the reload summary. Absent: a
   * changed block gets a new instance.
   */
  applyConfig?(provider: Provider, block: PluginBlock<S>): object
  /** Why an engine object (known by its labels) is this kind's and no other provider's to drive; undefined when it is not. */
  claims?(labels: Readonly<Record<string, string>>): string | undefined
}

/** Keeps the literal kind and the schema type of an entry. */
export function definePlugin<K extends string, S extends z.ZodType>(plugin: ProviderPlugin<K, S>): ProviderPlugin<K, S> {
  return plugin
}
