/**
 * Hot reload (SIGHUP, `relight-sidecar reload`, POST /_relight/admin/reload): read and validate
 * the config file again; if it is invalid the running config stays and the problems are
 * reported; if it is valid only the difference is applied:
 *
 * - registry settings (defaults, min_idle_timeout, base_domains, resync_interval, caps): live,
 *   for every backend;
 * - provider instances, by id: added → listed and routable when the reload resolves; removed →
 *   their backends go (hosts answer 404) and the provider is closed (process apps are stopped);
 *   changed (its block, or `defaults`, which providers read) → taken in place when the kind
 *   has an `applyConfig` hook (process apps: diffed app by app), else replaced by a new instance
 *   without a routing gap (listed first, activity carried over);
 * - stateful sites, heartbeat and webhooks: rebuilt when their block changed;
 * - keys that need a restart (listen, ops_listen, access_log, socket_group, state_dir, admin,
 *   shutdown_timeout, log_level — pino's child loggers keep the level they were made with)
 *   keep their running value and are named in the log.
 */
import type { Logger } from 'pino'
import { loadSettledConfig } from './config/settled.js'
import type { Config } from './config/schema.js'
import { isRelightError } from './core/errors.js'
import { type Provider, providerId } from './core/provider.js'
import type { Registry } from './core/registry.js'

/** Keys that cannot change while the sidecar runs (sockets, directories, the admin API). */
export const RESTART_KEYS = [
  'listen',
  'ops_listen',
  'access_log',
  'access_log_max_connections',
  'access_log_max_line',
  'socket_group',
  'state_dir',
  'fast_lane_dir',
  'fast_lane_shared_pid_namespace',
  'admin',
  'shutdown_timeout',
  'log_level',
] as const

const REGISTRY_KEYS = ['defaults', 'base_domains', 'min_idle_timeout', 'resync_interval', 'max_concurrent_wakes', 'max_concurrent_sleeps', 'max_awake'] as const

/**
 * Every top-level key a reload applies while the sidecar runs. With RESTART_KEYS this covers the
 * whole schema (test/unit/reload-keys.test.ts walks it): a new key must be put in one of them.
 */
export const LIVE_KEYS = [...REGISTRY_KEYS, 'providers', 'stateful', 'dns', 'heartbeat', 'webhooks'] as const

export interface ReloadSummary {
  /** Provider ids added, removed, replaced by a new instance, or reconfigured in place. */
  readonly providers: { added: string[]; removed: string[]; replaced: string[]; reconfigured: string[] }
  /** Per provider reconfigured in place: what it changed (process: apps added/removed/updated/replaced). */
  readonly details: Record<string, unknown>
  /** Top-level keys applied live, and `max_awake (<provider id>)` for a provider block's cap. */
  readonly settings: string[]
  stateful: boolean
  heartbeat: boolean
  /** The webhooks were rebuilt (their delivery counters start again from 0). */
  webhooks: boolean
  /** Changed keys that keep their running value until a restart. */
  readonly restart_needed: string[]
  /** Provider changes that failed (the old instance stays). */
  readonly failed: string[]
}

export type ReloadResult = { readonly ok: true; readonly changed: boolean; readonly summary: ReloadSummary } | { readonly ok: false; readonly errors: readonly string[] }

export interface ReloaderDeps {
  /** The config file; reload is refused without one. */
  readonly file: string | undefined
  readonly registry: Registry
  readonly logger: Logger
  readonly current: () => Config
  /** Build providers for `config` (only the blocks present in it). */
  readonly createProviders: (config: Config) => Provider[]
  readonly closeProvider: (provider: Provider) => Promise<void>
  /**
   * How a provider of `kind` takes a changed block in place (its kind's `applyConfig` hook,
   * e.g. process apps: a diff per app), returning what changed; undefined when a changed block
   * gets a new instance. Absent: every changed block gets a new instance.
   */
  readonly reconfigure?: (kind: string) => ((provider: Provider, block: unknown) => object) | undefined
  readonly replaceStateful: (config: Config) => void
  readonly replaceHeartbeat: (config: Config) => void
  readonly replaceWebhooks: (config: Config) => void
  /** The config now in force. */
  readonly commit: (config: Config) => void
  readonly env?: NodeJS.ProcessEnv
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)

/** One provider block of the config, with the kind it belongs to. */
interface Block {
  readonly kind: string
  readonly block: { readonly id: string }
}

/** Every provider block by instance id (ids are unique across kinds: the config checks it). */
function blocksById(config: Config): Map<string, Block> {
  const out = new Map<string, Block>()
  for (const [kind, blocks] of Object.entries(config.providers as Record<string, readonly { id: string }[] | undefined>)) {
    for (const block of blocks ?? []) out.set(block.id, { kind, block })
  }
  return out
}

/** A config with one provider block only (to build that instance). */
function onlyBlock(config: Config, b: Block): Config {
  return { ...config, providers: { [b.kind]: [b.block] } } as unknown as Config
}

/** `config` with the blocks of `kept` (by id, same kind) in place of its own. */
function withBlocks(config: Config, kept: ReadonlyMap<string, Block>): Config {
  const providers: Record<string, unknown> = { ...(config.providers as Record<string, unknown>) }
  for (const [kind, blocks] of Object.entries(providers)) {
    if (!Array.isArray(blocks)) continue
    providers[kind] = blocks.map((b: { id: string }) => kept.get(b.id)?.block ?? b)
  }
  return { ...config, providers } as unknown as Config
}

export class Reloader {
  private running: Promise<ReloadResult> | undefined
  private queued: Promise<ReloadResult> | undefined
  /**
   * Instances whose replacement failed: they run on their old block and the old `defaults`, so
   * the next reload tries again even when neither differs from what is recorded.
   */
  private readonly stale = new Set<string>()

  constructor(private readonly deps: ReloaderDeps) {}

  /** Reload now; a reload asked for while one runs runs once after it (coalesced). */
  reload(): Promise<ReloadResult> {
    if (!this.running) {
      this.running = this.run().finally(() => {
        this.running = undefined
      })
      return this.running
    }
    this.queued ??= this.running.then(
      () => {
        this.queued = undefined
        return this.reload()
      },
      () => {
        this.queued = undefined
        return this.reload()
      },
    )
    return this.queued
  }

  private async run(): Promise<ReloadResult> {
    const { logger, file } = this.deps
    if (file === undefined) {
      const errors = ['the sidecar was started without a config file; nothing to reload']
      logger.error({ errors }, 'config reload refused')
      return { ok: false, errors }
    }
    let next: Config
    try {
      // Only a whole file: not while a program still writes it (config/settled.ts).
      next = await loadSettledConfig(file, this.deps.env ?? process.env, logger)
    } catch (err) {
      const errors = isRelightError(err, 'RELIGHT_ERR_CONFIG') && 'problems' in err ? [...(err.problems as string[])] : [(err as Error).message]
      logger.error({ file, errors }, 'config reload refused: the file is invalid; the running configuration stays')
      return { ok: false, errors }
    }
    try {
      return await this.apply(next)
    } catch (err) {
      // Never thrown at a signal handler: what was applied before the failure stays applied.
      const errors = [`applying the new configuration failed: ${(err as Error).message}`]
      logger.error({ err, errors }, 'config reload failed part-way')
      return { ok: false, errors }
    }
  }

  /** Apply a validated config. Exposed for tests that build configs in memory. */
  async apply(parsed: Config): Promise<ReloadResult> {
    const { registry, logger } = this.deps
    const current = this.deps.current()
    const restartNeeded = RESTART_KEYS.filter((k) => !same((current as Record<string, unknown>)[k], (parsed as Record<string, unknown>)[k]))
    // Keys that need a restart keep their running value.
    const next = { ...parsed } as Record<string, unknown>
    for (const k of restartNeeded) next[k] = (current as Record<string, unknown>)[k]
    const config = next as Config
    const summary: ReloadSummary = {
      providers: { added: [], removed: [], replaced: [], reconfigured: [] },
      details: {},
      settings: [],
      stateful: false,
      heartbeat: false,
      webhooks: false,
      restart_needed: [...restartNeeded],
      failed: [],
    }

    const registryChanged = REGISTRY_KEYS.filter((k) => !same(current[k], config[k]))
    if (registryChanged.length > 0) {
      registry.applySettings(config) // before provider changes: new backends get the new defaults
      summary.settings.push(...registryChanged)
    } else if (!same(current.providers, config.providers)) {
      registry.applyCaps(config) // a block's max_awake (added, changed, removed; a new block's)
    }

    // Providers, per instance id: what a provider is built from is its block and `defaults`.
    const before = blocksById(current)
    const after = blocksById(config)
    const byId = (id: string) => registry.providers.find((p) => providerId(p) === id)
    const defaultsChanged = !same(current.defaults, config.defaults)
    // A provider block's own cap: named in the summary (the block's other changes say little about it).
    for (const [id, now] of after) {
      const was = before.get(id)
      if (was !== undefined && was.kind === now.kind && !same(capOf(was.block), capOf(now.block))) summary.settings.push(`max_awake (${id})`)
    }
    /** Blocks whose new instance could not take over: the running instance keeps these. */
    const kept = new Map<string, Block>()
    await Promise.all(
      [...new Set([...before.keys(), ...after.keys()])].map(async (id) => {
        const was = before.get(id)
        const now = after.get(id)
        const running = byId(id)
        if (now === undefined || (was !== undefined && was.kind !== now.kind)) {
          this.stale.delete(id)
          if (running) {
            registry.removeProvider(running)
            summary.providers.removed.push(id)
            void this.deps.closeProvider(running) // process apps stop with their grace period
          }
          if (now === undefined) return
        }
        if (!running || was === undefined || was.kind !== now.kind) {
          const [created] = this.deps.createProviders(onlyBlock(config, now))
          if (!created) return
          try {
            await registry.addProvider(created)
            summary.providers.added.push(id)
          } catch (err) {
            summary.failed.push(`${id}: ${(err as Error).message}`)
            void this.deps.closeProvider(created)
          }
          return
        }
        if (same(was.block, now.block) && !defaultsChanged && !this.stale.has(id)) return
        const applyConfig = this.deps.reconfigure?.(now.kind)
        if (applyConfig) {
          if (same(was.block, now.block)) return // defaults only: the registry applied them
          summary.details[id] = applyConfig(running, now.block)
          summary.providers.reconfigured.push(id)
          await registry.providerReconfigured(running)
          return
        }
        const [created] = this.deps.createProviders(onlyBlock(config, now))
        if (!created) return
        try {
          await registry.replaceProvider(running, created)
          summary.providers.replaced.push(id)
          this.stale.delete(id)
          void this.deps.closeProvider(running)
        } catch (err) {
          summary.failed.push(`${id}: ${(err as Error).message}`)
          kept.set(id, was)
          this.stale.add(id)
          logger.warn({ provider: id, err: (err as Error).message }, 'the reconfigured provider cannot be listed; keeping the running one')
          void this.deps.closeProvider(created)
        }
      }),
    )

    if (!same([current.stateful, current.dns], [config.stateful, config.dns])) {
      this.deps.replaceStateful(config)
      summary.stateful = true
    }
    if (!same(current.heartbeat, config.heartbeat)) {
      this.deps.replaceHeartbeat(config)
      summary.heartbeat = true
    }
    if (!same(current.webhooks, config.webhooks)) {
      this.deps.replaceWebhooks(config)
      summary.webhooks = true
    }
    // Record what runs: a failed replacement keeps its old block, so reloading the same file
    // again sees the change and retries it.
    this.deps.commit(kept.size === 0 ? config : withBlocks(config, kept))

    if (restartNeeded.length > 0) {
      logger.warn({ keys: restartNeeded }, `changed keys that need a restart to apply (the running values stay): ${restartNeeded.join(', ')}`)
    }
    const p = summary.providers
    const changed =
      summary.settings.length + p.added.length + p.removed.length + p.replaced.length + p.reconfigured.length > 0 || summary.stateful || summary.heartbeat || summary.webhooks
    logger.info({ ...summary, changed }, changed ? 'config applied' : 'config applied: nothing changed')
    return { ok: true, changed, summary }
  }
}

/** A provider block's own max_awake, if any. */
function capOf(block: unknown): unknown {
  return typeof block === 'object' && block !== null ? (block as { max_awake?: unknown }).max_awake : undefined
}
