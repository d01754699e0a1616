import { isIP } from 'node:net'
import { z } from 'zod'
import { duration } from '../config/types.js'

/** `heartbeat`: caddy-relight-podman's multi-node heartbeat (heartbeat_url, heartbeat_secret, node_ip). */
export const heartbeatConfigSchema = z.strictObject({
  /** The router's endpoint; receives a POST with this node's backends and load. */
  url: z.string().refine((u) => /^https?:\/\//.test(u) && URL.canParse(u), { message: 'expected an http:// or https:// URL' }),
  /** Sent as `Authorization: Bearer <secret>`; never logged. */
  secret: z.string().min(1, 'set a secret (e.g. "${HEARTBEAT_SECRET}")'),
  /** This node's address as the router reaches it. */
  node_ip: z.string().refine((ip) => isIP(ip) !== 0, { message: 'expected an IPv4 or IPv6 address' }),
  interval: duration.prefault('30s').refine((ms) => ms >= 100, { message: 'at least 100ms' }),
  /** Per-attempt limit for collecting figures and sending them. */
  timeout: duration.prefault('10s').refine((ms) => ms >= 100, { message: 'at least 100ms' }),
})

export type HeartbeatConfig = z.output<typeof heartbeatConfigSchema>
