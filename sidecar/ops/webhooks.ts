/**
 * Webhooks: lifecycle events POSTed as signed JSON to operator endpoints. Delivery runs off the
 * request path (the emitter only queues), retries with exponential backoff, and never holds more
 * than a bounded queue per webhook: when a receiver stays down, the oldest events are dropped
 * and counted. The body is the event exactly as the admin events stream sends it.
 *
 *   POST <url>
 *   content-type: application/json
 *   x-relight-event: wake.ready
 *   x-relight-delivery: <random UUID per event: the same on its retries, never reused, also
 *                       after a restart (event ids restart at 1 with the process)>
 *   x-relight-signature: t=<unix seconds of this attempt>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
 *
 * The timestamp is signed, so a receiver that checks its age (the README's recipe: 5 minutes)
 * refuses a captured delivery replayed later.
 */
import { createHmac, randomUUID } from 'node:crypto'
import type { Logger } from 'pino'
import { request } from 'undici'
import type { LifecycleEvents, Stamped } from '../core/events.js'
import type { WebhookConfig } from './config.js'
import { atPowerOfTwo } from '../core/log-throttle.js'
import { withDeadline } from '../core/timers.js'

/** Events waiting per webhook; beyond it the oldest is dropped. */
export const WEBHOOK_QUEUE_LIMIT = 1000

export interface WebhookStats {
  delivered: number
  /** Events given up on after every attempt failed. */
  failed: number
  /** Events dropped unsent because the queue was full. */
  dropped: number
  /** Attempts that failed (each retry counts). */
  attemptFailures: number
}

export interface WebhookOptions {
  /** First retry delay; doubles per attempt up to 64×. */
  readonly backoffMs?: number
}

/** The `x-relight-signature` value for `body` sent at `unixSeconds`. */
export function signBody(secret: string, body: string, unixSeconds = Math.floor(Date.now() / 1000)): string {
  return `t=${unixSeconds},v1=${createHmac('sha256', secret).update(`${unixSeconds}.${body}`).digest('hex')}`
}

interface Queued {
  readonly event: Stamped
  readonly delivery: string
}

/** `wake.*` matches every wake event, `*` everything, anything else one type. */
export function matches(patterns: readonly string[], type: string): boolean {
  for (const p of patterns) {
    if (p === '*' || p === type) return true
    if (p.endsWith('.*') && type.startsWith(p.slice(0, -1))) return true
  }
  return false
}

class Webhook {
  readonly stats: WebhookStats = { delivered: 0, failed: 0, dropped: 0, attemptFailures: 0 }
  private readonly queue: Queued[] = []
  private running = false
  private failuresLogged = 0

  constructor(
    readonly index: number,
    private readonly config: WebhookConfig,
    private readonly backoffMs: number,
    private readonly signal: AbortSignal,
    private readonly log: Logger,
  ) {}

  offer(event: Stamped): void {
    if (!matches(this.config.events, event.type)) return
    if (this.queue.length >= WEBHOOK_QUEUE_LIMIT) {
      this.queue.shift()
      this.stats.dropped++
    }
    this.queue.push({ event, delivery: randomUUID() })
    if (!this.running) {
      this.running = true
      // A macrotask later: never on the stack of whatever emitted the event.
      setImmediate(() => void this.drain())
    }
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0 && !this.signal.aborted) {
        const next = this.queue.shift() as Queued
        await this.deliver(next)
      }
    } finally {
      this.running = false
    }
  }

  private async deliver({ event, delivery }: Queued): Promise<void> {
    const body = JSON.stringify(event)
    let problem = ''
    for (let attempt = 1; attempt <= this.config.attempts; attempt++) {
      const headers = {
        'content-type': 'application/json',
        'user-agent': 'relight-sidecar',
        'x-relight-event': event.type,
        'x-relight-delivery': delivery,
        'x-relight-signature': signBody(this.config.secret, body), // signed now: a retry is fresh
      }
      const bound = withDeadline(this.signal, this.config.timeout)
      try {
        const res = await request(this.config.url, {
          method: 'POST',
          headers,
          body,
          signal: bound.signal,
        })
        await res.body.dump()
        if (res.statusCode >= 200 && res.statusCode < 300) {
          this.stats.delivered++
          if (this.failuresLogged > 0) this.log.info({ webhook: this.index }, 'webhook delivered again')
          this.failuresLogged = 0
          return
        }
        problem = `answered ${res.statusCode}`
      } catch (err) {
        if (this.signal.aborted) return
        problem = (err as Error).message
      } finally {
        bound.clear()
      }
      this.stats.attemptFailures++
      if (attempt === this.config.attempts) break
      const wait = this.backoffMs * 2 ** Math.min(attempt - 1, 6)
      const stopped = await new Promise<boolean>((resolve) => {
        const timer = setTimeout(() => resolve(false), wait)
        this.signal.addEventListener('abort', () => {
          clearTimeout(timer)
          resolve(true)
        }, { once: true })
      })
      if (stopped) return
    }
    this.stats.failed++
    // 1st, 2nd, 4th, 8th… lost event logged: a dead receiver does not flood the log.
    this.failuresLogged++
    if (atPowerOfTwo(this.failuresLogged)) {
      this.log.warn({ webhook: this.index, url: redact(this.config.url), event: event.type, attempts: this.config.attempts, err: problem, lost: this.failuresLogged }, 'webhook delivery failed; event dropped')
    }
  }
}

export class Webhooks {
  private readonly hooks: Webhook[]
  private readonly closer = new AbortController()
  private readonly unsubscribe: () => void

  constructor(configs: readonly WebhookConfig[], events: LifecycleEvents, log: Logger, options: WebhookOptions = {}) {
    this.hooks = configs.map((c, i) => new Webhook(i, c, options.backoffMs ?? 1000, this.closer.signal, log))
    this.unsubscribe = events.subscribe((e) => {
      for (const hook of this.hooks) hook.offer(e)
    })
  }

  /** Per webhook (by its index in the config), for metrics. */
  stats(): readonly WebhookStats[] {
    return this.hooks.map((h) => h.stats)
  }

  /** Stop listening and abandon pending deliveries. Idempotent. */
  close(): void {
    this.unsubscribe()
    this.closer.abort()
  }
}

function redact(url: string): string {
  const u = new URL(url)
  return `${u.origin}${u.pathname}`
}
