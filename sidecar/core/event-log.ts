/**
 * The log lines of backend and provider transitions, written from the lifecycle events (the one
 * source metrics, the events stream and the status page read too). Fields as before the events
 * existed: `backend` (name) and `provider` on every backend line.
 */
import type { Logger } from 'pino'
import type { LifecycleEvents, Stamped } from './events.js'

export function logEvents(events: LifecycleEvents, log: Logger): () => void {
  const down = new Set<string>()
  return events.subscribe((e: Stamped) => {
    switch (e.type) {
      case 'wake.started':
        if (log.isLevelEnabled('debug')) log.debug({ backend: e.name, provider: e.provider, from: e.from }, 'waking')
        return
      case 'wake.ready':
        log.info({ backend: e.name, provider: e.provider, from: e.from, ms: e.duration_ms }, 'woke')
        return
      case 'wake.failed':
        // A refusal during a restart backoff repeats for every request: the provider logged the crash.
        if (e.code === 'RELIGHT_ERR_RESTART_BACKOFF') {
          if (log.isLevelEnabled('debug')) log.debug({ backend: e.name, provider: e.provider, code: e.code, err: e.reason, ms: e.duration_ms }, 'wake failed')
          return
        }
        log.warn({ backend: e.name, provider: e.provider, code: e.code, err: e.reason, ms: e.duration_ms }, 'wake failed')
        return
      case 'wake.refused':
        log.info({ backend: e.name, provider: e.provider, code: e.code, reason: e.reason, retry_after_s: e.retry_after_s }, 'wake refused')
        return
      case 'sleep.done':
        log.info({ backend: e.name, provider: e.provider, mode: e.mode, ms: e.duration_ms, cause: e.cause, ...(e.reason ? { reason: e.reason } : {}) }, 'asleep')
        return
      case 'sleep.refused':
        // "not idle": the sweep lost a race with a request; not worth a line.
        if (e.reason === 'not idle') return
        // Every detail the event has (the admin API and webhooks carry the same): a busy refusal's cpu_pct.
        log.info({ backend: e.name, provider: e.provider, mode: e.mode, reason: e.reason, ...(e.code !== undefined ? { code: e.code } : {}), ...(e.cpu_pct !== undefined ? { cpu_pct: e.cpu_pct } : {}) }, 'sleep refused')
        return
      case 'sleep.failed':
        log.warn({ backend: e.name, provider: e.provider, code: e.code, err: e.reason }, 'sleep failed')
        return
      case 'backend.added':
        if (log.isLevelEnabled('debug')) log.debug({ backend: e.name, provider: e.provider, hosts: e.hosts, state: e.state }, 'discovered')
        return
      case 'backend.removed':
        log.info({ backend: e.name, provider: e.provider }, 'removed')
        return
      case 'backend.state':
        // Only changes the provider explained (exit codes…); plain state updates are debug.
        if (e.reason !== undefined) log.info({ backend: e.name, provider: e.provider, state: e.state, reason: e.reason }, 'state changed')
        else if (log.isLevelEnabled('debug')) log.debug({ backend: e.name, provider: e.provider, state: e.state }, 'state changed')
        return
      case 'provider.down':
        down.add(e.provider)
        log.warn({ provider: e.provider, code: e.code, err: e.reason }, 'provider list failed; keeping known backends')
        return
      case 'provider.up':
        if (down.delete(e.provider)) log.info({ provider: e.provider, backends: e.backends }, 'provider available again')
        return
      case 'config.applied':
        if (log.isLevelEnabled('debug')) log.debug({ providers: e.providers, backends: e.backends }, 'configuration applied')
        return
    }
  })
}
