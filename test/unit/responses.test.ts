import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import Fastify from 'fastify'
import { RelightError } from '../../sidecar/core/errors.js'
import { sendError } from '../../sidecar/server/responses.js'

describe('errors to HTTP (server/responses.ts)', () => {
  it('answers engine failures 502/503 and anything that is not a RelightError 500 RELIGHT_ERR_INTERNAL', async () => {
    const app = Fastify({ logger: false })
    app.get('/bug', (req, reply) => sendError(req, reply, new TypeError('cannot read properties of undefined')))
    app.get('/failed', (req, reply) => sendError(req, reply, new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'engine said no')))
    app.get('/down', (req, reply) => sendError(req, reply, new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'socket missing')))
    const bug = await app.inject({ method: 'GET', url: '/bug' })
    assert.equal(bug.statusCode, 500)
    assert.equal(bug.headers['x-relight-reply'], 'RELIGHT_ERR_INTERNAL')
    assert.ok(!bug.body.includes('cannot read properties'), 'the bug itself goes to the log, not to clients')
    assert.equal((await app.inject({ method: 'GET', url: '/failed' })).statusCode, 502)
    assert.equal((await app.inject({ method: 'GET', url: '/down' })).statusCode, 503)
    await app.close()
  })
})
