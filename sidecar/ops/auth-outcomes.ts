/**
 * How `/_relight/auth` answered, counted for `relight_auth_requests_total{outcome}`. Plain
 * number fields: the hot path pays one increment, and the metrics endpoint reads them at scrape.
 */
import { type ErrorCode, RelightError, toRelightError } from '../core/errors.js'

export class AuthOutcomes {
  /** Awake backend: upstream answered at once (the hot path). */
  routed = 0
  /** Answered after a wake. */
  woken = 0
  /** A browser got the waiting page while its backend woke. */
  waiting_page = 0
  /** Routed by the stateful (doors-caddy) router. */
  stateful = 0
  /** Matched the backend's `ignore` rules while awake: routed, not counted as activity. */
  ignored = 0
  /** Matched the backend's `ignore` rules while asleep: answered `ignore_status`, not woken. */
  ignored_asleep = 0
  /** Refused or failed, by error code (`host_unknown`, `wake_timeout`…). */
  readonly errors = new Map<ErrorCode, number>()

  error(err: unknown): void {
    const code = (err instanceof RelightError ? err : toRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED')).code
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
  }

  /** Outcome label → count. */
  snapshot(): [string, number][] {
    const out: [string, number][] = [
      ['routed', this.routed],
      ['woken', this.woken],
      ['waiting_page', this.waiting_page],
      ['stateful', this.stateful],
      ['ignored', this.ignored],
      ['ignored_asleep', this.ignored_asleep],
    ]
    for (const [code, n] of this.errors) out.push([code.replace(/^RELIGHT_ERR_/, '').toLowerCase(), n])
    return out
  }
}
