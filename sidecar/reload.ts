/**
 * Hot reload (SIGHUP, `relight-sidecar reload`, POST /_relight/admin/reload): read and validate
 * the config file again; if it is invalid the running config stays and the problems are
 * reported; if it is valid only the difference is applied:
 *
 * - registry settings (defaults, min_idle_timeout, base_domains, resync_interval, caps): live,
 *   for every backend;
 * - providers, one instance per kind (the kind is its id until several instances per kind
 *   exist): added → listed and routable when the reload resolves; removed → their backends go
 *   (hosts answer 404) and the provider is closed (process apps are stopped); changed → process
 *   apps are diffed app by app (ProcessProvider.applyConfig), other providers are replaced by a
 *   new instance without a routing gap (listed first, activity carried over);
 * - stateful sites and heartbeat: rebuilt when their block changed;
 * - keys that need a restart (listen, access_log, socket_group, state_dir, admin,
 *   shutdown_timeout, log_level — pino's child loggers keep the level they were made with)
 *   keep their running value and are named in the log.
 */
import type { Logger } from 'pino'
import { loadConfig } from './config/load.js'
import type { Config } from './config/schema.js'
import { isRelightError } from './core/errors.js'
import type { Provider } from './core/provider.js'
import type { Registry } from './core/registry.js'

/** Keys that cannot change while the sidecar runs (sockets, directories, the admin API). */
export const RESTART_KEYS = ['listen', 'access_log', 'socket_group', 'state_dir', 'admin', 'shutdown_timeout', 'log_level'] as const

const REGISTRY_KEYS = ['defaults', 'base_domains', 'min_idle_timeout', 'resync_interval', 'max_concurrent_wakes', 'max_concurrent_sleeps'] as const

export interface ReloadSummary {
  /** Provider kinds (ids) added, removed, replaced by a new instance, or reconfigured in place. */
  readonly providers: { added: string[]; removed: string[]; replaced: string[]; reconfigured: string[] }
  /** Per provider reconfigured in place: what it changed (process: apps added/removed/updated/replaced). */
  readonly details: Record<string, unknown>
  /** Top-level keys applied live. */
  readonly settings: string[]
  stateful: boolean
  heartbeat: boolean
  /** Changed keys that keep their running value until a restart. */
  readonly restart_needed: string[]
  /** Provider changes that failed (the old instance stays). */
  readonly failed: string[]
}

export type ReloadResult = { readonly ok: true; readonly changed: boolean; readonly summary: ReloadSummary } | { readonly ok: false; readonly errors: readonly string[] }

/** A provider that takes a new config block in place (process apps: a diff per app). */
interface Reconfigurable {
  applyConfig(block: never): object
}

function reconfigurable(p: Provider): p is Provider & Reconfigurable {
  return typeof (p as Partial<Reconfigurable>).applyConfig === 'function'
}

export interface ReloaderDeps {
  /** The config file; reload is refused without one. */
  readonly file: string | undefined
  readonly registry: Registry
  readonly logger: Logger
  readonly current: () => Config
  /** Build providers for `config` (only the blocks present in it). */
  readonly createProviders: (config: Config) => Provider[]
  readonly closeProvider: (provider: Provider) => Promise<void>
  readonly replaceStateful: (config: Config) => void
  readonly replaceHeartbeat: (config: Config) => void
  /** The config now in force. */
  readonly commit: (config: Config) => void
  readonly env?: NodeJS.ProcessEnv
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b)

type Kind = keyof Config['providers']

/** What a provider instance is built from: its block, and the defaults some providers read. */
function providerInputs(config: Config, kind: Kind): unknown {
  const block = config.providers[kind]
  if (kind === 'docker') return [block, config.defaults.app_port]
  if (kind === 'podman') return [block, config.defaults]
  return block
}

export class Reloader {
  private running: Promise<ReloadResult> | undefined
  private queued: Promise<ReloadResult> | undefined

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
      next = loadConfig(file, this.deps.env)
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
      restart_needed: [...restartNeeded],
      failed: [],
    }

    const registryChanged = REGISTRY_KEYS.filter((k) => !same(current[k], config[k]))
    if (registryChanged.length > 0) {
      registry.applySettings(config) // before provider changes: new backends get the new defaults
      summary.settings.push(...registryChanged)
    }

    const kinds = new Set([...Object.keys(current.providers), ...Object.keys(config.providers)] as Kind[])
    const byKind = (kind: string) => registry.providers.find((p) => p.kind === kind)
    const only = (kind: Kind): Config => ({ ...config, providers: { [kind]: config.providers[kind] } })
    await Promise.all(
      [...kinds].map(async (kind) => {
        const before = current.providers[kind]
        const after = config.providers[kind]
        const running = byKind(kind)
        if (after === undefined && before === undefined) return
        if (after === undefined) {
          if (!running) return
          registry.removeProvider(running)
          summary.providers.removed.push(kind)
          void this.deps.closeProvider(running) // children stop with their grace period
          return
        }
        if (!running) {
          const [created] = this.deps.createProviders(only(kind))
          if (!created) return
          await registry.addProvider(created)
          summary.providers.added.push(kind)
          return
        }
        if (same(providerInputs(current, kind), providerInputs(config, kind))) return
        if (reconfigurable(running)) {
          summary.details[kind] = running.applyConfig(after as never)
          summary.providers.reconfigured.push(kind)
          await registry.resync(running)
          await registry.wakeAlwaysOn(running)
          return
        }
        const [created] = this.deps.createProviders(only(kind))
        if (!created) return
        try {
          await registry.replaceProvider(running, created)
          summary.providers.replaced.push(kind)
          void this.deps.closeProvider(running)
        } catch (err) {
          summary.failed.push(`${kind}: ${(err as Error).message}`)
          logger.warn({ provider: kind, err: (err as Error).message }, 'the reconfigured provider cannot be listed; keeping the running one')
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
    this.deps.commit(config)

    if (restartNeeded.length > 0) {
      logger.warn({ keys: restartNeeded }, `changed keys that need a restart to apply (the running values stay): ${restartNeeded.join(', ')}`)
    }
    const p = summary.providers
    const changed =
      summary.settings.length + p.added.length + p.removed.length + p.replaced.length + p.reconfigured.length > 0 || summary.stateful || summary.heartbeat
    logger.info({ ...summary, changed }, changed ? 'config applied' : 'config applied: nothing changed')
    return { ok: true, changed, summary }
  }
}
