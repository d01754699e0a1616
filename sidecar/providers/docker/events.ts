/**
 * Following `/events` with reconnect and exponential backoff (500 ms doubling to 30 s, reset
 * once a stream is established). Each (re)connection calls `connected` first: events may have
 * been missed while disconnected, so the owner asks the registry for a resync.
 */
import type { Logger } from 'pino'
import { isRelightError } from '../../core/errors.js'
import type { DockerContainers, EngineEvent, Filters } from './containers.js'
import { delay } from '../../core/timers.js'

export interface FollowOptions {
  readonly filters: Filters
  readonly connected: () => void
  /** Handled one at a time, in stream order. */
  readonly onEvent: (event: EngineEvent) => Promise<void>
  readonly log: Logger
  readonly minBackoffMs?: number
  readonly maxBackoffMs?: number
}


/** A stream up this long counts as healthy again. */
const STABLE_MS = 10_000

export async function followEvents(api: DockerContainers, options: FollowOptions, signal: AbortSignal): Promise<void> {
  const min = options.minBackoffMs ?? 500
  const max = options.maxBackoffMs ?? 30_000
  let backoff = min
  let failures = 0
  while (!signal.aborted) {
    try {
      const stream = await api.events(options.filters, signal)
      if (failures > 0) options.log.info({ after_failures: failures }, 'event stream reconnected')
      const connectedAt = Date.now()
      options.connected()
      for await (const event of stream) {
        if (signal.aborted) break
        await options.onEvent(event).catch((err: unknown) => {
          options.log.warn({ err: (err as Error).message, action: event.Action, container: event.Actor?.ID }, 'event handling failed; the next resync corrects it')
        })
      }
      // Only a stream that stayed up resets the backoff: an engine that accepts and closes at
      // once must not get a reconnect (and a full resync) twice a second.
      if (Date.now() - connectedAt >= STABLE_MS) {
        backoff = min
        failures = 0
      }
      if (!signal.aborted) options.log.warn('event stream ended; reconnecting')
    } catch (err) {
      if (signal.aborted) break
      failures++
      const message = isRelightError(err) ? err.message : String(err)
      // Log the first failure and then every tenth, so a long outage does not flood the log.
      if (failures === 1 || failures % 10 === 0) options.log.warn({ err: message, failures, retry_ms: backoff }, 'event stream failed; reconnecting')
    }
    await delay(backoff, signal)
    backoff = Math.min(max, backoff * 2)
  }
}
