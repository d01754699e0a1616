/**
 * The one configuration schema. Defaults live here; unknown keys are errors everywhere.
 * Each provider owns the schema of its block (sidecar/providers/<kind>/config.ts); the
 * `providers` keys come from the descriptor table (sidecar/providers/descriptors.ts), which
 * loads no provider implementation.
 */
import { z } from 'zod'
import { heartbeatConfigSchema } from '../heartbeat/config.js'
import { PROVIDER_DESCRIPTORS } from '../providers/descriptors.js'
import { webhookConfigSchema } from '../ops/config.js'
import { dnsSchema, statefulSchema } from '../routing/stateful/config.js'
import { type Instance, instancesOf, maxAwake, uniqueInstanceIds } from './instances.js'
import { adminSchema } from './secrets.js'
import { byteSize, duration, durationAtLeast, listenAddress, readiness, settingFor, sleepMode, strategy, waitingPageTemplate } from './types.js'

export const defaultsSchema = z.strictObject({
  idle_timeout: duration.prefault('5m'),
  wake_timeout: settingFor('wake_timeout').prefault('30s'),
  sleep: sleepMode.default('stop'),
  fallback_sleep: sleepMode.default('pause'),
  strategy: strategy.default('blocking'),
  waiting_page_after: duration.prefault('2s'),
  app_port: z.number().int().min(1).max(65535).default(8080),
  readiness: readiness.default('tcp'),
  max_request_duration: settingFor('max_request_duration').prefault('24h'),
  waiting_page_template: waitingPageTemplate.optional(),
  awake_during: settingFor('awake_during').optional(),
  asleep_during: settingFor('asleep_during').optional(),
  // Idle policies (issue 26; README "When does a backend sleep?"). startup_grace: idle_timeout when absent.
  ignore: settingFor('ignore').default([]),
  ignore_status: settingFor('ignore_status').default(503),
  busy_cpu: settingFor('busy_cpu').optional(),
  startup_grace: settingFor('startup_grace').optional(),
  /** Awake, proxied by Caddy directly (snippet 4's relight_fast): off unless turned on. */
  fast_lane: settingFor('fast_lane').prefault('off'),
})

type Descriptors = (typeof PROVIDER_DESCRIPTORS)[number]

/** One key per entry of the descriptor table: one block or a list of blocks (instances, each with its own `id`). */
export const providersSchema = z
  .strictObject(
    Object.fromEntries(PROVIDER_DESCRIPTORS.map((p) => [p.kind, instancesOf(p.kind, p.configSchema, 'oldNames' in p ? p.oldNames : {}).optional()])) as unknown as {
      [P in Descriptors as P['kind']]: z.ZodOptional<z.ZodType<Instance<z.output<P['configSchema']>>[], unknown>>
    },
  )
  .superRefine(uniqueInstanceIds)

export const configSchema = z.strictObject({
  listen: listenAddress.default('127.0.0.1:9123'),
  /**
   * A second listener for everything but /_relight/auth: ask, healthz, metrics, the status page
   * and the admin API. With `listen` on a unix socket, this is what Caddy's on-demand `ask` and
   * Prometheus reach (neither speaks to a unix socket); /auth stays on the socket only Caddy opens.
   */
  ops_listen: listenAddress.optional(),
  /** Where Caddy's `log { output net … format json }` connects: unix:/path or host:port. */
  access_log: listenAddress.optional(),
  /** Concurrent access-log connections accepted (Caddy uses one, briefly two on a reload). */
  access_log_max_connections: z.number().int().min(1).max(64).default(4),
  /** Longer access-log lines are skipped without being buffered. */
  access_log_max_line: byteSize.pipe(z.number().int().min(4096, 'use at least 4KiB').max(16 << 20, 'use at most 16MiB')).prefault('256KiB'),
  /** Group given to the unix sockets (listen, access_log), mode 0660; without it they are 0600. */
  socket_group: z.string().min(1).optional(),
  base_domains: z.array(z.string()).default([]),
  min_idle_timeout: duration.prefault('30s'),
  resync_interval: duration.prefault('30s'),
  max_concurrent_wakes: z.number().int().min(1).max(1000).default(16),
  max_concurrent_sleeps: z.number().int().min(1).max(1000).default(4),
  /** Most backends awake at once across every provider (a group counts as one); absent: no cap. Each provider block may set its own. */
  max_awake: maxAwake.optional(),
  /** How long shutdown waits for sleeps and child processes before giving up. */
  shutdown_timeout: durationAtLeast(1000, '1s (children need time to stop)').prefault('30s'),
  /** Crash recovery records (children the sidecar started); default beside the sockets or /run/relight. */
  state_dir: z.string().min(1).optional(),
  /**
   * The fast lane's flag directory (core/fast-lane.ts), an absolute path Caddy's user can read
   * (`socket_group`); emptied at start. Needed when any backend has `fast_lane: on`.
   */
  fast_lane_dir: z.string().regex(/^\/./, 'expected an absolute path such as /run/relight/awake').optional(),
  log_level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  defaults: defaultsSchema.prefault({}),
  providers: providersSchema.prefault({}),
  /** Multi-node: POST this node's backends and their load to a router (caddy-relight-podman format). */
  heartbeat: heartbeatConfigSchema.optional(),
  /** Hosts routed like doors-caddy (pod-IP tokens, sticky cookie); see sidecar/routing/stateful. */
  stateful: statefulSchema.default([]),
  /** Resolver settings for stateful upstream hosts. */
  dns: dnsSchema.prefault({}),
  /** The admin API, metrics and status page: `token` or `token_file` (config/secrets.ts). */
  admin: adminSchema.optional(),
  /** Lifecycle events POSTed as signed JSON (sidecar/ops/webhooks.ts). */
  webhooks: z.array(webhookConfigSchema).default([]),
}).superRefine((c, ctx) => {
  if (c.defaults.fast_lane && c.fast_lane_dir === undefined) {
    ctx.addIssue({ code: 'custom', path: ['fast_lane_dir'], message: 'defaults.fast_lane is on: set fast_lane_dir (the flag directory Caddy\'s relight_fast snippet reads, e.g. /run/relight/awake)' })
  }
})

export type Config = z.output<typeof configSchema>
export type Defaults = z.output<typeof defaultsSchema>
export type ConfigInput = z.input<typeof configSchema>
