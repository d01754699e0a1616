/**
 * The status page: GET /_relight/status is one self-contained HTML page (no build, no CDN) for a
 * logged-in browser, and the login form otherwise. Logging in trades admin.token (POSTed from the
 * form, never in a URL) for an HttpOnly, SameSite=Strict session cookie; the page then reads the
 * admin API and its events stream with that cookie and sends its CSRF token on wake and sleep.
 */
import { randomBytes } from 'node:crypto'
import type { FastifyInstance, FastifyReply } from 'fastify'
import { loginPage, statusPage } from '../pages/status-page.js'
import { RelightError } from '../core/errors.js'
import { type AdminAccess, isSecure, noStore } from './admin-access.js'
import { sendError } from './responses.js'

const loginBody = {
  type: 'object',
  properties: { token: { type: 'string', maxLength: 512 } },
  required: ['token'],
} as const

export function registerStatus(app: FastifyInstance, access: AdminAccess): void {
  // Browsers ask every origin for /favicon.ico; the page names an inline icon, and this keeps a
  // browser that asks anyway (or an operator's log) from seeing a 404. Nothing to hide: no body.
  app.get('/favicon.ico', (_req, reply) => reply.header('cache-control', 'public, max-age=86400').code(204).send())
  void app.register(
    async (status) => {
      status.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string' }, (_req, body, done) => {
        done(null, Object.fromEntries(new URLSearchParams(body as string)))
      })

      const html = (reply: FastifyReply, page: { html: string; nonce: string }, code = 200) =>
        noStore(reply)
          .code(code)
          .header(
            'content-security-policy',
            `default-src 'none'; script-src 'nonce-${page.nonce}'; style-src 'nonce-${page.nonce}'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
          )
          .header('x-frame-options', 'DENY')
          .header('referrer-policy', 'no-referrer')
          .type('text/html; charset=utf-8')
          .send(page.html)

      status.get('/', { schema: { summary: 'Status page (HTML); the login form without a session', response: { 200: { description: 'text/html', type: 'string' } }, security: [] } }, (req, reply) => {
        const nonce = randomBytes(16).toString('base64')
        const session = access.check(req, { cookie: true })
        if (session?.via !== 'cookie') return html(reply, { html: loginPage(nonce), nonce })
        return html(reply, { html: statusPage(nonce, session.csrf), nonce })
      })

      status.post<{ Body: { token: string } }>(
        '/login',
        {
          schema: {
            summary: 'Log in with admin.token (form field `token`); sets the session cookie and redirects to the page',
            body: loginBody,
            consumes: ['application/x-www-form-urlencoded'],
            response: { 303: { description: 'Redirect to /_relight/status' }, 401: { description: 'text/html', type: 'string' } },
            security: [],
          },
          attachValidation: true,
        },
        (req, reply) => {
          const cookie = req.validationError ? undefined : access.login(req.body.token, isSecure(req))
          if (cookie === undefined) {
            const nonce = randomBytes(16).toString('base64')
            return html(reply, { html: loginPage(nonce, 'That is not the admin token.'), nonce }, 401)
          }
          return noStore(reply).header('set-cookie', cookie).redirect('/_relight/status', 303)
        },
      )

      status.post('/logout', { schema: { summary: 'End the browser session (needs the x-relight-csrf header)', response: { 204: { description: 'Logged out' } } } }, (req, reply) => {
        const session = access.check(req, { cookie: true })
        if (session && !access.allowsChange(req, session)) {
          return sendError(req, reply, new RelightError('RELIGHT_ERR_UNAUTHORIZED', 'a browser session must send its x-relight-csrf token from the same origin'))
        }
        return noStore(reply).header('set-cookie', access.logout(session, isSecure(req))).code(204).send()
      })
    },
    { prefix: '/_relight/status' },
  )
}
