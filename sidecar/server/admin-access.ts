/**
 * Who may use the admin endpoints: a client with `Authorization: Bearer <admin.token>`, or a
 * browser that logged in on the status page. The login form trades the token for a random
 * session id in an HttpOnly, SameSite=Strict cookie (the token never appears in a URL, a page or
 * script-readable storage). A cookie-authenticated request that changes state must also carry
 * the session's CSRF token in `x-relight-csrf`, and its Origin, when sent, must be this host.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto'
import type { FastifyReply, FastifyRequest } from 'fastify'

export const SESSION_COOKIE = 'relight_session'
export const CSRF_HEADER = 'x-relight-csrf'
const SESSION_TTL_MS = 12 * 3600_000
/** Oldest sessions are forgotten beyond this many (each login makes one). */
const MAX_SESSIONS = 64

interface Session {
  readonly csrf: string
  readonly expires: number
}

export type Access = { readonly via: 'bearer' } | { readonly via: 'cookie'; readonly id: string; readonly csrf: string }

export class AdminAccess {
  private readonly bearer: Buffer
  private readonly token: Buffer
  private readonly sessions = new Map<string, Session>()

  constructor(token: string) {
    this.bearer = Buffer.from(`Bearer ${token}`)
    this.token = Buffer.from(token)
  }

  /** The request's access, or undefined. `cookie: false` accepts the bearer token only. */
  check(req: FastifyRequest, options: { cookie: boolean }): Access | undefined {
    const header = req.headers.authorization
    if (header !== undefined) return same(Buffer.from(header), this.bearer) ? { via: 'bearer' } : undefined
    if (!options.cookie) return undefined
    const id = readCookie(req.headers.cookie, SESSION_COOKIE)
    if (id === undefined) return undefined
    const session = this.sessions.get(id)
    if (!session) return undefined
    if (session.expires < Date.now()) {
      this.sessions.delete(id)
      return undefined
    }
    return { via: 'cookie', id, csrf: session.csrf }
  }

  /**
   * Whether the request carries the right credential: its bearer header, or the status page
   * login form's token. Constant time; used by the guess limit, which never refuses the right one.
   */
  presentsRightCredential(req: FastifyRequest): boolean {
    const header = req.headers.authorization
    if (header !== undefined) return same(Buffer.from(header), this.bearer)
    const body = req.body as { token?: unknown } | undefined
    return typeof body?.token === 'string' && same(Buffer.from(body.token), this.token)
  }

  /** A state-changing request is acceptable: bearer, or cookie plus the CSRF header and a same-origin Origin. */
  allowsChange(req: FastifyRequest, access: Access): boolean {
    if (access.via === 'bearer') return true
    const csrf = req.headers[CSRF_HEADER]
    if (typeof csrf !== 'string' || !same(Buffer.from(csrf), Buffer.from(access.csrf))) return false
    const origin = req.headers.origin
    if (origin === undefined) return true
    try {
      return new URL(origin).host === req.headers.host
    } catch {
      return false
    }
  }

  /** Check a token typed into the login form; on success a new session and its Set-Cookie value. */
  login(token: string, secure: boolean): string | undefined {
    if (!same(Buffer.from(token), this.token)) return undefined
    const id = randomBytes(32).toString('base64url')
    if (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string)
    this.sessions.set(id, { csrf: randomBytes(24).toString('base64url'), expires: Date.now() + SESSION_TTL_MS })
    return cookie(id, SESSION_TTL_MS / 1000, secure)
  }

  /** End the session; the Set-Cookie value that clears the cookie. */
  logout(access: Access | undefined, secure: boolean): string {
    if (access?.via === 'cookie') this.sessions.delete(access.id)
    return cookie('', 0, secure)
  }
}

/** Whether the browser reached us over https (directly or through Caddy). */
export function isSecure(req: FastifyRequest): boolean {
  return req.protocol === 'https' || req.headers['x-forwarded-proto'] === 'https'
}

export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store')
}

function cookie(value: string, maxAgeSeconds: number, secure: boolean): string {
  return `${SESSION_COOKIE}=${value}; Path=/_relight; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}${secure ? '; Secure' : ''}`
}

function same(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b)
}

function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined
  for (const part of header.split(';')) {
    const eq = part.indexOf('=')
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}
