/** Schema of the top-level `stateful:` list (doors-caddy compatible session routing). */
import { Resolver as DnsResolver } from 'node:dns'
import { isIP } from 'node:net'
import { z } from 'zod'
import { duration } from '../../config/types.js'
import { isDnsName, normalizeHost } from '../../core/hosts.js'
import { LB_POLICIES } from './balancer.js'
import { Cidr } from './ip.js'
import { secretProblem } from './token.js'

/** Cookie names are RFC 6265 tokens. */
const COOKIE_NAME = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

export const statefulUpstreamSchema = z.strictObject({
  /** Covers every pod of this server: the fresh one and those still draining. */
  cidr: z
    .string()
    .transform((text) => text.trim())
    .refine((text) => Cidr.parse(text) !== undefined, { message: 'not a CIDR prefix such as 10.0.0.0/24 or fd00::/64' }),
  /** DNS name of the fresh deployment (or an IP literal). */
  host: z.string().transform((text, ctx) => {
    const t = text.trim()
    if (isIP(t) !== 0) return t
    const name = normalizeHost(t)
    if (!name || !isDnsName(name) || t.includes(':')) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a DNS name or an IP address (give the port in "port")` })
      return z.NEVER
    }
    return name
  }),
  port: z.number().int().min(1).max(65535),
})

export const statefulSiteSchema = z
  .strictObject({
    hosts: z
      .array(
        z.string().transform((text, ctx) => {
          const name = normalizeHost(text)
          if (!name || text.includes('*')) {
            ctx.addIssue({ code: 'custom', message: `"${text}" is not a host name (wildcards are not supported here)` })
            return z.NEVER
          }
          return name
        }),
      )
      .min(1, 'list at least one host'),
    /** AES key in standard base64 (16, 24 or 32 bytes), shared with the app: doors-caddy's `secret`. */
    secret: z.string().superRefine((secret, ctx) => {
      const problem = secretProblem(secret)
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem })
    }),
    /** Cookie holding the session's token (Doors: `ServerIDCookieName`). Required with several upstreams. */
    cookie_name: z.string().regex(COOKIE_NAME, 'not a valid cookie name').optional(),
    /** How new sessions (no usable cookie) spread over several upstreams. */
    lb_policy: z.enum(LB_POLICIES).default('random'),
    /** Longest time a DNS answer for an upstream host is used before asking again (caps its TTL). */
    dns_max_ttl: duration.prefault('10s'),
    upstreams: z.array(statefulUpstreamSchema).min(1, 'list at least one upstream { cidr, host, port }'),
  })
  .superRefine((site, ctx) => {
    if (site.upstreams.length > 1 && site.cookie_name === undefined) {
      ctx.addIssue({ code: 'custom', path: ['cookie_name'], message: 'required when there is more than one upstream (the cookie picks the server)' })
    }
    if (site.dns_max_ttl < 1000) {
      ctx.addIssue({ code: 'custom', path: ['dns_max_ttl'], message: 'use at least 1s' })
    }
  })

export const statefulSchema = z.array(statefulSiteSchema).superRefine((sites, ctx) => {
  const seen = new Map<string, number>()
  sites.forEach((site, i) =>
    site.hosts.forEach((host, j) => {
      const first = seen.get(host)
      if (first !== undefined) ctx.addIssue({ code: 'custom', path: [i, 'hosts', j], message: `"${host}" is already listed in stateful[${first}]` })
      else seen.set(host, i)
    }),
  )
})

export type StatefulSiteConfig = z.output<typeof statefulSiteSchema>
export type StatefulUpstreamConfig = z.output<typeof statefulUpstreamSchema>

/** `dns:` — where stateful upstream hosts are resolved. */
export const dnsSchema = z.strictObject({
  /** DNS servers to ask (`ip` or `ip:port`, `[v6]:port`) instead of /etc/resolv.conf; no fallback to the system resolver. */
  servers: z
    .array(
      z.string().refine(
        (server) => {
          try {
            new DnsResolver().setServers([server])
            return true
          } catch {
            return false
          }
        },
        { message: 'expected an IP address, optionally with a port: 127.0.0.1:5353, [::1]:53' },
      ),
    )
    .min(1)
    .optional(),
})
