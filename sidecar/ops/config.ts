/** Configuration of the operations features (webhooks); metrics and the status page need only `admin.token`. */
import { z } from 'zod'
import { duration, strongSecret } from '../config/types.js'
import { LIFECYCLE_EVENT_TYPES } from '../core/events.js'

const eventPattern = z.string().refine((p) => p === '*' || LIFECYCLE_EVENT_TYPES.some((t) => t === p || (p.endsWith('.*') && t.startsWith(p.slice(0, -1)))), {
  message: `expected an event type (${LIFECYCLE_EVENT_TYPES.join(', ')}), a prefix such as wake.*, or *`,
})

export const webhookConfigSchema = z.strictObject({
  /** Receives a POST per event. */
  url: z.string().refine((u) => /^https?:\/\//.test(u) && URL.canParse(u), { message: 'expected an http:// or https:// URL' }),
  /** Which events: types, `wake.*`-style prefixes, or `*`. */
  events: z.array(eventPattern).min(1, 'list at least one event type (or "*")'),
  /** HMAC-SHA256 key of the `x-relight-signature` header; never logged. */
  secret: strongSecret,
  /** Per-attempt limit. */
  timeout: duration.prefault('5s').refine((ms) => ms >= 100, { message: 'at least 100ms' }),
  /** Attempts per event before it is dropped (and counted). */
  attempts: z.number().int().min(1).max(20).default(5),
})

export type WebhookConfig = z.output<typeof webhookConfigSchema>
