/**
 * Headers of about 200 KB (issue 23 item 8): Caddy forwards a client's headers to
 * /_relight/auth. The sidecar used to reset that connection and Caddy answered 502 (a client
 * error reported as a server error). Now the client gets 431 with RELIGHT_ERR_HEADERS_TOO_LARGE,
 * through real Caddy, every time, and ordinary requests keep working beside it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { fileURLToPath } from 'node:url'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'

describe('oversized request headers through Caddy', { skip: caddySkip() }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))

  before(async () => {
    sc = await startTestSidecar(`providers:\n  process:\n    apps:\n      - { name: web, hosts: [web.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${await freePort()}, stdout: "null" }\n`)
    caddy = await startCaddy({ sidecar: sc.address })
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
  })

  it('~200 KB of headers: 431 from the sidecar, not a reset and a 502 from Caddy', async () => {
    // One cookie of 100 KB and 50 headers of 2 KB: about 200 KB, as a client (or a script) can send.
    const headers: Record<string, string> = { host: 'web.localhost', cookie: `session=${'c'.repeat(100_000)}` }
    for (let i = 0; i < 50; i++) headers[`x-filler-${i}`] = 'a'.repeat(2000)
    const answers: string[] = []
    for (let round = 0; round < 20; round++) {
      const res = await request(caddy.url, { headers })
      await res.body.dump()
      answers.push(`${res.statusCode} ${res.headers['x-relight-reply'] ?? '-'}`)
    }
    assert.deepEqual(answers, Array(20).fill('431 RELIGHT_ERR_HEADERS_TOO_LARGE'), caddy.output().slice(-3000))
    const ok = await request(caddy.url, { headers: { host: 'web.localhost' } })
    await ok.body.dump()
    assert.equal(ok.statusCode, 200, 'an ordinary request still works')
  })
})

describe('oversized request headers on a raw connection', () => {
  it('the sidecar answers 431 and reads the rest: the client can finish writing, no reset', async (t) => {
    const sc = await startTestSidecar('')
    t.after(() => sc.close())
    const [host, port] = [sc.address.slice(0, sc.address.lastIndexOf(':')), Number(sc.address.slice(sc.address.lastIndexOf(':') + 1))]
    const { connect } = await import('node:net')
    const socket = connect(port, host)
    let answer = ''
    let failure: string | undefined
    socket.on('data', (d: Buffer) => (answer += d.toString()))
    socket.on('error', (err: NodeJS.ErrnoException) => (failure = err.code))
    const closed = new Promise<void>((r) => socket.once('close', () => r()))
    await new Promise<void>((r) => socket.once('connect', () => r()))
    socket.write('GET /_relight/auth HTTP/1.1\r\nhost: web.localhost\r\n')
    // Headers in 4 KB pieces, each after the previous one was flushed: well past the limit.
    for (let i = 0; i < 50 && failure === undefined && !socket.destroyed; i++) {
      await new Promise<void>((resolve) => socket.write(`x-filler-${i}: ${'a'.repeat(4000)}\r\n`, () => resolve()))
    }
    socket.end('\r\n')
    await closed
    assert.equal(failure, undefined, `the connection was reset (${failure}); answer so far: ${answer.slice(0, 200)}`)
    assert.match(answer, /^HTTP\/1\.1 431 /)
    assert.match(answer, /x-relight-reply: RELIGHT_ERR_HEADERS_TOO_LARGE/i)
  })
})
