/**
 * Prometheus metrics (prom-client), one registry per sidecar. Counters of transitions follow the
 * lifecycle events; gauges (backends, in flight, provider up, access-log connections) are read
 * from the registry at scrape time, so the /auth hot path does no metrics work beyond one
 * integer increment (AuthOutcomes). Label values are provider ids, backend names, sleep modes
 * and fixed outcome words: cardinality grows with the number of backends and nothing else;
 * a removed backend's series are dropped.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry as PromRegistry } from 'prom-client'
import type { LifecycleEvents, SleepCause } from '../core/events.js'
import { type Provider, providerId, SLEEP_MODES } from '../core/provider.js'
import type { Registry } from '../core/registry.js'
import type { AuthOutcomes } from './auth-outcomes.js'
import type { WebhookStats } from './webhooks.js'

export interface MetricsSources {
  readonly registry: Registry
  readonly auth: AuthOutcomes
  /** Open access-log connections from Caddy; undefined when `access_log` is not configured. */
  readonly accessLogConnections?: () => number
  /** Failed heartbeat attempts so far; undefined without `heartbeat`. */
  readonly heartbeatFailures?: () => number
  readonly webhooks?: () => readonly WebhookStats[]
}

/** Names and help texts, also listed in the README (a test keeps them in step). */
export const METRIC_NAMES = [
  'relight_backends',
  'relight_wakes_total',
  'relight_wake_duration_seconds',
  'relight_sleeps_total',
  'relight_inflight_requests',
  'relight_backend_awake',
  'relight_auth_requests_total',
  'relight_provider_up',
  'relight_access_log_connections',
  'relight_heartbeat_failures_total',
  'relight_webhook_deliveries_total',
  'relight_webhook_attempt_failures_total',
  'relight_events_total',
  'relight_sleep_causes_total',
  'relight_wake_refusals_total',
  'relight_sleep_refusals_total',
] as const

const PHASES = ['running', 'sleeping', 'asleep', 'waking', 'probing'] as const
const SLEEP_RESULTS = ['done', 'refused', 'failed'] as const
const SLEEP_CAUSES = ['idle', 'operator', 'schedule', 'evicted'] as const satisfies readonly SleepCause[]
const WAKE_REFUSAL_CODES = ['RELIGHT_ERR_CAPACITY', 'RELIGHT_ERR_SCHEDULED_ASLEEP'] as const
/**
 * `reason` of relight_sleep_refusals_total: the rule that kept a backend awake (README "When does
 * a backend sleep?"). Bounded: a provider's refusal (its message varies) is `shared`, anything
 * else `other`; `not idle` (the ordinary case) is not counted.
 */
export const REFUSAL_REASONS = ['always_on', 'awake_during', 'inflight', 'waking', 'startup_grace', 'busy', 'shared', 'other'] as const

export function refusalReason(reason: string, code?: string): (typeof REFUSAL_REASONS)[number] {
  if (code === 'RELIGHT_ERR_SLEEP_REFUSED') return 'shared'
  const word = reason.split(':')[0] as (typeof REFUSAL_REASONS)[number]
  return REFUSAL_REASONS.includes(word) ? word : 'other'
}

/** The provider label: the provider instance's id (its kind unless configured otherwise). */
export const providerLabel = (provider: Provider): string => providerId(provider)

export class Metrics {
  readonly register = new PromRegistry()
  readonly stop: () => void

  constructor(events: LifecycleEvents, sources: MetricsSources) {
    const register = this.register
    const { registry } = sources
    collectDefaultMetrics({ register })
    // Gauges named *_total break Prometheus naming rules (promtool check metrics fails on them).
    for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) register.removeSingleMetric(name)

    new Gauge({
      name: 'relight_backends',
      help: 'Backends known, by provider and phase (running, sleeping, asleep, waking, probing).',
      labelNames: ['provider', 'state'],
      registers: [register],
      collect() {
        this.reset()
        const counts = new Map<string, Map<string, number>>()
        for (const p of registry.providers) counts.set(providerLabel(p), new Map(PHASES.map((s) => [s, 0])))
        for (const b of registry.all()) {
          const provider = providerLabel(b.provider)
          let byPhase = counts.get(provider)
          if (!byPhase) counts.set(provider, (byPhase = new Map(PHASES.map((s) => [s, 0]))))
          byPhase.set(b.phase, (byPhase.get(b.phase) ?? 0) + 1)
        }
        for (const [provider, byPhase] of counts) for (const [state, n] of byPhase) this.set({ provider, state }, n)
      },
    })
    new Gauge({
      name: 'relight_inflight_requests',
      help: 'Requests authorised and not yet reported finished by the access log, per backend.',
      labelNames: ['provider', 'backend'],
      registers: [register],
      collect() {
        this.reset()
        for (const b of registry.all()) this.set({ provider: providerLabel(b.provider), backend: b.info.name }, b.inflight)
      },
    })
    new Gauge({
      name: 'relight_backend_awake',
      help: '1 while the backend is awake (phase running: it answers requests), 0 while it sleeps, wakes or is put to sleep. One series per backend.',
      labelNames: ['provider', 'backend'],
      registers: [register],
      collect() {
        this.reset()
        for (const b of registry.all()) this.set({ provider: providerLabel(b.provider), backend: b.info.name }, b.phase === 'running' ? 1 : 0)
      },
    })
    new Gauge({
      name: 'relight_provider_up',
      help: '1 when the provider\'s last list succeeded, else 0.',
      labelNames: ['provider'],
      registers: [register],
      collect() {
        this.reset()
        for (const p of registry.providers) this.set({ provider: providerLabel(p) }, registry.status.get(providerId(p))?.ok === true ? 1 : 0)
      },
    })
    new Gauge({
      name: 'relight_access_log_connections',
      help: 'Open access-log connections from Caddy (0 when access_log is not configured).',
      registers: [register],
      collect() {
        this.set(sources.accessLogConnections?.() ?? 0)
      },
    })
    new Counter({
      name: 'relight_heartbeat_failures_total',
      help: 'Heartbeat attempts that failed (0 without heartbeat).',
      registers: [register],
      collect() {
        this.reset()
        this.inc(sources.heartbeatFailures?.() ?? 0)
      },
    })
    new Counter({
      name: 'relight_auth_requests_total',
      help: 'Answers of /_relight/auth by outcome: routed, woken, waiting_page, stateful, or the error (host_unknown, wake_timeout…).',
      labelNames: ['outcome'],
      registers: [register],
      collect() {
        this.reset()
        for (const [outcome, n] of sources.auth.snapshot()) this.inc({ outcome }, n)
      },
    })
    new Counter({
      name: 'relight_webhook_deliveries_total',
      help: 'Webhook events by result: delivered, failed (every attempt failed), dropped (queue full).',
      labelNames: ['webhook', 'result'],
      registers: [register],
      collect() {
        this.reset()
        sources.webhooks?.().forEach((s, i) => {
          this.inc({ webhook: String(i), result: 'delivered' }, s.delivered)
          this.inc({ webhook: String(i), result: 'failed' }, s.failed)
          this.inc({ webhook: String(i), result: 'dropped' }, s.dropped)
        })
      },
    })
    new Counter({
      name: 'relight_webhook_attempt_failures_total',
      help: 'Webhook POST attempts that failed (each retry counts).',
      labelNames: ['webhook'],
      registers: [register],
      collect() {
        this.reset()
        sources.webhooks?.().forEach((s, i) => this.inc({ webhook: String(i) }, s.attemptFailures))
      },
    })

    const wakes = new Counter({
      name: 'relight_wakes_total',
      help: 'Wakes by result (ready, failed).',
      labelNames: ['provider', 'backend', 'result'],
      registers: [register],
    })
    const wakeDuration = new Histogram({
      name: 'relight_wake_duration_seconds',
      help: 'Time from the start of a wake until the backend answered its readiness probe.',
      labelNames: ['provider'],
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
      registers: [register],
    })
    const sleeps = new Counter({
      name: 'relight_sleeps_total',
      help: 'Sleeps by mode and result (done, refused, failed).',
      labelNames: ['provider', 'backend', 'mode', 'result'],
      registers: [register],
    })
    const sleepCauses = new Counter({
      name: 'relight_sleep_causes_total',
      help: 'Sleeps done by cause: idle (idle_timeout), operator, schedule (asleep_during), evicted (max_awake).',
      labelNames: ['provider', 'backend', 'cause'],
      registers: [register],
    })
    const wakeRefusals = new Counter({
      name: 'relight_wake_refusals_total',
      help: 'Wakes refused by a policy, by code: RELIGHT_ERR_CAPACITY (max_awake), RELIGHT_ERR_SCHEDULED_ASLEEP (asleep_during, once per window).',
      labelNames: ['provider', 'backend', 'code'],
      registers: [register],
    })
    const refusals = new Counter({
      name: 'relight_sleep_refusals_total',
      help: 'Sleeps refused, by the rule that kept the backend awake (always_on, awake_during, inflight, waking, startup_grace, busy, shared, other).',
      labelNames: ['provider', 'backend', 'reason'],
      registers: [register],
    })
    const eventsTotal = new Counter({
      name: 'relight_events_total',
      help: 'Lifecycle events emitted, by type.',
      labelNames: ['type'],
      registers: [register],
    })

    this.stop = events.subscribe((e) => {
      eventsTotal.inc({ type: e.type })
      switch (e.type) {
        case 'wake.ready':
          wakes.inc({ provider: e.provider, backend: e.name, result: 'ready' })
          wakeDuration.observe({ provider: e.provider }, e.duration_ms / 1000)
          return
        case 'wake.failed':
          wakes.inc({ provider: e.provider, backend: e.name, result: 'failed' })
          return
        case 'sleep.done':
          sleeps.inc({ provider: e.provider, backend: e.name, mode: e.mode, result: 'done' })
          sleepCauses.inc({ provider: e.provider, backend: e.name, cause: e.cause })
          return
        case 'wake.refused':
          wakeRefusals.inc({ provider: e.provider, backend: e.name, code: e.code })
          return
        case 'sleep.refused':
          if (e.reason === 'not idle') return
          sleeps.inc({ provider: e.provider, backend: e.name, mode: e.mode, result: 'refused' })
          refusals.inc({ provider: e.provider, backend: e.name, reason: refusalReason(e.reason, e.code) })
          return
        case 'sleep.failed':
          sleeps.inc({ provider: e.provider, backend: e.name, mode: e.mode, result: 'failed' })
          return
        case 'backend.added':
          // Zero series from the start, so rate() and increase() see the first wake.
          wakes.inc({ provider: e.provider, backend: e.name, result: 'ready' }, 0)
          wakes.inc({ provider: e.provider, backend: e.name, result: 'failed' }, 0)
          return
        case 'backend.removed':
          for (const result of ['ready', 'failed']) wakes.remove({ provider: e.provider, backend: e.name, result })
          for (const mode of SLEEP_MODES) for (const result of SLEEP_RESULTS) sleeps.remove({ provider: e.provider, backend: e.name, mode, result })
          for (const cause of SLEEP_CAUSES) sleepCauses.remove({ provider: e.provider, backend: e.name, cause })
          for (const code of WAKE_REFUSAL_CODES) wakeRefusals.remove({ provider: e.provider, backend: e.name, code })
          for (const reason of REFUSAL_REASONS) refusals.remove({ provider: e.provider, backend: e.name, reason })
          return
        default:
          return
      }
    })
  }

  text(): Promise<string> {
    return this.register.metrics()
  }

  get contentType(): string {
    return this.register.contentType
  }
}
