import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pino from 'pino'
import { AccessLogServer, parseAccessLine } from '../../sidecar/core/access-log.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

// Shapes recorded from Caddy 2.6.2 (`log { output net … format json }`).
const PROXIED = '{"level":"info","ts":1795313599.18,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","proto":"HTTP/1.1","method":"GET","host":"ok.localhost","uri":"/foo?x=1","headers":{"X-Relight-Upstream":["1.2.3.4:80"]}},"duration":0.012,"size":189,"status":200,"resp_headers":{"Content-Length":["189"]}}'
const DENIED = '{"level":"error","ts":1795313599.19,"logger":"http.log.access.log0","msg":"handled request","request":{"host":"deny.localhost","uri":"/bar"},"duration":0.002,"size":4,"status":404,"resp_headers":{"Content-Type":["text/plain"],"X-Relight-Reply":["RELIGHT_ERR_HOST_UNKNOWN"]}}'

describe('access log', () => {
  it('cannot be fooled by what a client sends (request headers and values are not resp_headers)', () => {
    // A client sending its own X-Relight-Reply header must still count as finished.
    const spoofReply = PROXIED.replace('"headers":{', '"headers":{"X-Relight-Reply":["x"],')
    assert.deepEqual(parseAccessLine(spoofReply), { host: 'ok.localhost', status: 200 })
    // A header value that looks like JSON keys is escaped, so it never matches.
    const spoofHost = PROXIED.replace('"headers":{', '"headers":{"X-A":["\\"host\\":\\"evil.example\\",\\"resp_headers\\":{\\"X-Relight-Reply\\":1}"],')
    assert.deepEqual(parseAccessLine(spoofHost), { host: 'ok.localhost', status: 200 })
    assert.deepEqual(JSON.parse(spoofHost).request.host, 'ok.localhost', 'the fixture is valid JSON')
    // Lines the scan cannot read go through JSON.parse and agree with it.
    const reordered = JSON.stringify({ resp_headers: {}, status: 201, request: { host: 're.localhost' } })
    assert.deepEqual(parseAccessLine(reordered), { host: 're.localhost', status: 201 })
  })

  it('parses a proxied request and ignores answers the sidecar gave itself', () => {
    assert.deepEqual(parseAccessLine(PROXIED), { host: 'ok.localhost', status: 200 })
    assert.equal(parseAccessLine(DENIED), undefined)
    for (const junk of ['', 'not json', '[]', 'null', '{"request":{"host":7}}']) assert.equal(parseAccessLine(junk), undefined)
  })

  it('reads lines split across packets from a unix socket and reports connections', async () => {
    const tmp = tempDir()
    const finished: string[] = []
    const counts: number[] = []
    const server = new AccessLogServer(`unix:${join(tmp.dir, 'a.sock')}`, { finished: (e) => finished.push(e.host), connections: (n) => counts.push(n) }, pino({ level: 'silent' }))
    await server.listen()
    const socket = connect(join(tmp.dir, 'a.sock'))
    await new Promise((r) => socket.once('connect', r))
    const text = `${PROXIED}\n${DENIED}\n${PROXIED.replace('ok.localhost', 'two.localhost')}\n`
    socket.write(text.slice(0, 50))
    socket.write(text.slice(50))
    await until(() => finished.length === 2, 'two lines')
    assert.deepEqual(finished, ['ok.localhost', 'two.localhost'])
    socket.end()
    await new Promise((r) => socket.once('close', r))
    await new Promise((r) => setImmediate(r))
    await server.close()
    assert.deepEqual(counts.slice(0, 1), [1])
    tmp.remove()
  })
})

describe('access log over TCP', () => {
  it('accepts Caddy on a loopback TCP address', async () => {
    const finished: string[] = []
    const server = new AccessLogServer('127.0.0.1:0', { finished: (e) => finished.push(e.host), connections: () => undefined }, pino({ level: 'silent' }))
    await server.listen()
    const [host, port] = server.boundAddress.split(':')
    const socket = connect({ host: host as string, port: Number(port) })
    await new Promise((r) => socket.once('connect', r))
    socket.write(`${PROXIED}\n`)
    await until(() => finished.length === 1, 'one line')
    assert.deepEqual(finished, ['ok.localhost'])
    socket.destroy()
    await server.close()
  })
})

describe('unix socket paths', () => {
  it('refuses a socket another program still answers on, and replaces a stale one', async () => {
    const tmp = tempDir()
    const path = join(tmp.dir, 'a.sock')
    const handlers = { finished: () => undefined, connections: () => undefined }
    const first = new AccessLogServer(`unix:${path}`, handlers, pino({ level: 'silent' }))
    await first.listen()
    const second = new AccessLogServer(`unix:${path}`, handlers, pino({ level: 'silent' }))
    await assert.rejects(second.listen(), (e: unknown) => isRelightError(e, 'RELIGHT_ERR_CONFIG') && /in use by a running program/.test((e as Error).message))
    await second.close()
    // a crashed listener leaves its socket file behind with nobody on it: that one is taken over
    const stale = join(tmp.dir, 'b.sock')
    const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] })
    await new Promise((r) => crashed.stdout.once('data', r))
    crashed.kill('SIGKILL')
    await new Promise((r) => crashed.once('exit', r))
    assert.ok(existsSync(stale), 'SIGKILL left the socket file')
    const third = new AccessLogServer(`unix:${stale}`, handlers, pino({ level: 'silent' }))
    await third.listen()
    await third.close()
    await first.close()
    tmp.remove()
  })
})
