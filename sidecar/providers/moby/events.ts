/**
 * The one `/events` follower of the Moby kit (Docker, Podman's libpod API, Swarm), on the shared
 * reconnect schedule (providers/kit/reconnect.ts): backoff 500 ms doubling to 30 s, reset once a
 * stream stayed up 10 s (an engine that accepts and closes at once must not get a reconnect, and
 * a full resync, twice a second); failures logged at the 1st, 2nd, 4th, 8th… so an outage does
 * not flood the log.
 * Each (re)connection calls `connected` first: events may have been missed while disconnected,
 * so the owner asks the registry for a resync. Events are handled one at a time, in order.
 */
import type { Logger } from 'pino'
import { toRelightError } from '../../core/errors.js'
import { EVENT_STREAM_BACKOFF, Reconnect } from '../kit/reconnect.js'
import type { EngineClient, Query } from './client.js'

/** A line of `GET /events` (Docker) or `GET /libpod/events` (Docker-shaped; `status` is libpod's older name of Action). */
export interface MobyEvent {
  readonly Type?: string
  readonly Action?: string
  readonly status?: string
  readonly id?: string
  readonly Actor?: { readonly ID?: string; readonly Attributes?: Record<string, string> }
  readonly time?: number
  readonly timeNano?: number
}

export interface FollowOptions<E extends MobyEvent> {
  /** Query of the `/events` request (filters, `stream: true` for libpod…). */
  readonly query: Query
  readonly connected: () => void
  /** Handled one at a time, in stream order; a failure is logged and the stream goes on. */
  readonly onEvent: (event: E) => Promise<void> | void
  readonly log: Logger
  /** Names the stream in log lines (`docker`, `podman`, `swarm`). */
  readonly engine: string
  readonly backoff?: { readonly firstMs: number; readonly maxMs: number; readonly stableMs: number }
}

/** Follow `/events` until the signal aborts, reconnecting by itself. Never rejects. */
export async function followEvents<E extends MobyEvent = MobyEvent>(client: EngineClient, options: FollowOptions<E>, signal: AbortSignal): Promise<void> {
  const policy = options.backoff ?? EVENT_STREAM_BACKOFF
  const retry = new Reconnect(policy)
  while (!signal.aborted) {
    let connectedAt: number | undefined
    try {
      const stream = await client.stream<E>('/events', { query: options.query, signal })
      connectedAt = Date.now()
      if (retry.failures > 0) options.log.info({ after_failures: retry.failures }, `${options.engine} event stream reconnected`)
      options.connected()
      for await (const event of stream) {
        if (signal.aborted) break
        if (!event || typeof event !== 'object') continue
        try {
          await options.onEvent(event)
        } catch (err) {
          options.log.warn({ err: (err as Error).message, action: event.Action ?? event.status, id: event.Actor?.ID ?? event.id }, 'event handling failed; the next resync corrects it')
        }
      }
      if (!signal.aborted) options.log.warn(`${options.engine} event stream ended; reconnecting`)
    } catch (err) {
      if (signal.aborted) break
      const error = toRelightError(err, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
      if (retry.failed()) options.log.warn({ code: error.code, err: error.message, failures: retry.failures, retry_ms: retry.delayMs }, `${options.engine} event stream failed; reconnecting`)
    }
    if (signal.aborted) break
    if (connectedAt !== undefined && Date.now() - connectedAt >= policy.stableMs) retry.reset()
    await retry.wait(signal)
  }
}
