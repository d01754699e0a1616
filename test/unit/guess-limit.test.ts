/**
 * Guessing the admin token is slow and visible (issue 23 item 4): wrong bearer tokens on the
 * admin API and metrics and wrong status page logins are limited per client address with a
 * clear 429, a right token from a limited address is not checked either (else a hit would
 * still show), a logged-in browser is not held up, and failures are logged in aggregate.
 */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { Registry } from '../../sidecar/core/registry.js'
import { buildApp } from '../../sidecar/server/app.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { testSecret } from '../helpers/secret.js'
import { until } from '../helpers/wait.js'

describe('wrong admin credentials are rate limited per address', () => {
  it('401 for the first ten, then 429 with Retry-After for bearer, metrics and login alike; logged in aggregate', async (t) => {
    const lines: Record<string, unknown>[] = []
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>)
        cb()
      },
    })
    const log = pino({ level: 'info' }, out)
    const token = testSecret()
    const config = parseConfig('resync_interval: 0s\n', 'test')
    const registry = new Registry([new MemoryProvider([])], config, log)
    const app = buildApp({ adminToken: token, guessLimit: { logIntervalMs: 3_600_000 } }, { registry, logger: log })
    let closed: Promise<void> | undefined
    const close = () =>
      (closed ??= (async () => {
        registry.close()
        await app.close()
      })())
    t.after(close)
    await registry.start()
    await app.ready()
    const from = (remoteAddress: string, url: string, authorization?: string) =>
      app.inject({ method: 'GET', url, remoteAddress, headers: authorization ? { authorization } : {} })
    const login = (remoteAddress: string, value: string) =>
      app.inject({ method: 'POST', url: '/_relight/status/login', remoteAddress, headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${value}` })

    // A browser logs in first from the guesser's address (through Caddy they share it).
    const session = await login('127.0.0.9', token)
    assert.equal(session.statusCode, 303)
    const cookie = String(session.headers['set-cookie']).split(';')[0] as string

    const codes: number[] = []
    for (let i = 0; i < 4; i++) codes.push((await from('127.0.0.9', '/_relight/admin/backends', `Bearer guess-${i}`)).statusCode)
    for (let i = 0; i < 3; i++) codes.push((await from('127.0.0.9', '/_relight/metrics', `Bearer guess-m${i}`)).statusCode)
    for (let i = 0; i < 3; i++) codes.push((await login('127.0.0.9', `guess-l${i}`)).statusCode)
    assert.deepEqual(codes, Array(10).fill(401), 'ten wrong credentials are answered 401')

    const limited = await from('127.0.0.9', '/_relight/admin/backends', 'Bearer guess-11')
    assert.equal(limited.statusCode, 429)
    assert.equal(limited.headers['x-relight-reply'] ?? JSON.parse(limited.body).code, 'RELIGHT_ERR_TOO_MANY_FAILURES')
    assert.ok(Number(limited.headers['retry-after']) >= 1, 'Retry-After says how long')
    assert.equal((await from('127.0.0.9', '/_relight/metrics', `Bearer ${token}`)).statusCode, 429, 'the right token is not checked while limited')
    assert.equal((await login('127.0.0.9', token)).statusCode, 429, 'nor the login form')
    const browser = await app.inject({ method: 'GET', url: '/_relight/admin/backends', remoteAddress: '127.0.0.9', headers: { cookie } })
    assert.equal(browser.statusCode, 200, 'a logged-in browser is not held up')
    assert.equal((await from('127.0.0.10', '/_relight/admin/backends', `Bearer ${token}`)).statusCode, 200, 'another address is unaffected')

    assert.equal(lines.filter((l) => l.failures !== undefined).length, 0, 'nothing logged per failure')
    await close() // the interval's line is also written when the server closes
    const report = (await until(() => lines.find((l) => l.failures !== undefined), 'the aggregate log line', 5000)) as Record<string, unknown>
    assert.equal(report.failures, 10)
    assert.equal(report.refused_429, 3)
    assert.deepEqual(report.by_address, { '127.0.0.9': 10 })
    assert.equal(lines.filter((l) => l.failures !== undefined).length, 1, 'one line for the lot')
    assert.doesNotMatch(JSON.stringify(lines), new RegExp(token), 'the token is never logged')
  })
})
