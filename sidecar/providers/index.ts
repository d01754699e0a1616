/**
 * The provider side of the composition root (used by daemon.ts and main.ts only): builds the
 * configured providers from the runtime table (plugins.ts) and runs the kinds' lifecycle hooks,
 * so that nothing above names a provider kind.
 */
import type { Logger } from 'pino'
import type { Instance } from '../config/instances.js'
import type { Config } from '../config/schema.js'
import { stateDir } from '../config/state-dir.js'
import type { Provider } from '../core/provider.js'
import { type PreflightOptions as SidecarPreflightOptions, preflight as sidecarPreflight } from '../startup/preflight.js'
import type { ClaimedElsewhere } from './kit/labels.js'
import type { ProviderPlugin } from './plugin.js'
import { PROVIDER_PLUGINS } from './plugins.js'

export interface ProviderOptions {
  /** Directory that relative paths in the config are resolved against (the config file's). */
  readonly baseDir: string
}

type Blocks = Readonly<Record<string, readonly Instance<object>[] | undefined>>

export function createProviders(config: Config, logger: Logger, options: ProviderOptions): Provider[] {
  const providers: Provider[] = []
  const blocks = config.providers as Blocks
  // Kinds in table order, instances in config order: the order ranks providers when two declare one host.
  for (const plugin of PROVIDER_PLUGINS) {
    for (const block of blocks[plugin.kind] ?? []) {
      const log = logger.child({ provider: block.id })
      for (const key of block.aliased ?? []) {
        const now = plugin.oldNames?.[key] ?? key
        log.warn({ key, now }, `providers.${plugin.kind}.${key} is deprecated; write ${now} (same meaning)`)
      }
      providers.push(
        plugin.create(block, {
          logger: log,
          baseDir: options.baseDir,
          defaults: config.defaults,
          stateDir: stateDir(config, options.baseDir),
          claimedElsewhere: claimedElsewhere(plugin.kind),
        }),
      )
    }
  }
  return providers
}

/** What every other kind claims (its `claims` hook): engine objects a provider of `kind` must leave alone. */
export function claimedElsewhere(kind: string): ClaimedElsewhere {
  const others = PROVIDER_PLUGINS.filter((p) => p.kind !== kind && p.claims !== undefined)
  return (labels) => {
    for (const other of others) {
      const why = other.claims?.(labels)
      if (why !== undefined) return why
    }
    return undefined
  }
}

export interface PreflightOptions extends SidecarPreflightOptions {
  /**
   * Process groups a sidecar that died left running; default: what each kind's `leftovers` hook
   * finds in `stateDir` (none without one).
   */
  readonly leftoverGroups?: ReadonlySet<number>
}

/**
 * Every reason `serve` would refuse to start: the sidecar's own checks (startup/preflight.ts),
 * then each kind's `preflight` hook on its blocks, in table order.
 */
export async function preflight(config: Config, options: PreflightOptions = {}): Promise<string[]> {
  const problems = await sidecarPreflight(config, options)
  const leftovers = options.leftoverGroups ?? leftoverGroups(options.stateDir)
  const blocks = config.providers as Blocks
  for (const plugin of PROVIDER_PLUGINS) {
    if (plugin.preflight) problems.push(...(await plugin.preflight(blocks[plugin.kind] ?? [], { leftovers, ...(options.runningSidecar !== undefined ? { runningSidecar: options.runningSidecar } : {}) })))
  }
  return problems
}

/** What a sidecar that died left running, by every kind's `leftovers` hook. */
function leftoverGroups(dir: string | undefined): Set<number> {
  const groups = new Set<number>()
  if (dir === undefined) return groups
  for (const plugin of PROVIDER_PLUGINS) for (const group of plugin.leftovers?.(dir) ?? []) groups.add(group)
  return groups
}

/** The kind's reload-in-place hook (its `applyConfig`), or undefined when a changed block gets a new instance. */
export function reconfigureInPlace(kind: string): ((provider: Provider, block: unknown) => object) | undefined {
  const plugin = PROVIDER_PLUGINS.find((p): p is ProviderPlugin => p.kind === kind)
  const apply = plugin?.applyConfig
  return apply ? (provider, block) => apply(provider, block as never) : undefined
}
