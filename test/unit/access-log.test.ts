import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import pino from 'pino'
import { AccessLogServer, type AccessLogHandlers, parseAccessLine, ticketOf } from '../../sidecar/core/access-log.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import type { LogConnection } from '../../sidecar/core/tickets.js'
import { tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

// Shapes recorded from Caddy 2.6.2 (`log { output net … format json }`, the version 2 snippet).
const PROXIED =
  '{"level":"info","ts":1796046228.19,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","remote_port":"56580","proto":"HTTP/1.1","method":"GET","host":"ok.localhost","uri":"/x?q=1","headers":{"Accept":["*/*"],"X-Relight-Ticket":["EVIL"],"User-Agent":["curl/7.88.1"]}},"user_id":"","duration":0.05,"size":3,"status":200,"resp_headers":{"Server":["Caddy"],"X-Relight-Ticket":["T1cket-from-the-sidecar_0"],"Date":["Mon, 30 Nov 2026 13:43:48 GMT"],"Content-Length":["3"]}}'
const DENIED = '{"level":"error","ts":1795313599.19,"logger":"http.log.access.log0","msg":"handled request","request":{"host":"deny.localhost","uri":"/bar"},"duration":0.002,"size":4,"status":404,"resp_headers":{"Content-Type":["text/plain"],"X-Relight-Reply":["RELIGHT_ERR_HOST_UNKNOWN"]}}'
const OLD_SNIPPET = '{"level":"info","ts":1795313599.18,"logger":"http.log.access.log0","msg":"handled request","request":{"remote_ip":"127.0.0.1","proto":"HTTP/1.1","method":"GET","host":"ok.localhost","uri":"/foo?x=1","headers":{}},"duration":0.012,"size":189,"status":200,"resp_headers":{"Content-Length":["189"]}}'

function recorder() {
  const tickets: string[] = []
  const conns: LogConnection[] = []
  const handlers: AccessLogHandlers = {
    ticket: (t) => tickets.push(t),
    opened: (c) => conns.push(c),
    closed: () => undefined,
  }
  return { tickets, conns, handlers }
}

async function dial(path: string): Promise<Socket> {
  const socket = connect(path)
  await new Promise((r, j) => socket.once('connect', r).once('error', j))
  return socket
}

describe('access log lines', () => {
  it('reads the ticket from the logged response headers only', () => {
    assert.deepEqual(parseAccessLine(PROXIED), { ticket: 'T1cket-from-the-sidecar_0' })
    // What the client sent (request.headers) never counts, whatever it looks like.
    const spoof = OLD_SNIPPET.replace('"headers":{}', '"headers":{"X-Relight-Ticket":["abc"],"X-A":["\\"resp_headers\\":{\\"X-Relight-Ticket\\":[\\"abc\\"]}"]}')
    assert.equal(JSON.parse(spoof).request.headers['X-Relight-Ticket'][0], 'abc', 'the fixture is valid JSON')
    assert.deepEqual(parseAccessLine(spoof), { ticket: undefined })
    assert.deepEqual(parseAccessLine(OLD_SNIPPET), { ticket: undefined })
    assert.deepEqual(parseAccessLine(DENIED), { ticket: undefined })
    assert.equal(ticketOf(PROXIED), 'T1cket-from-the-sidecar_0')
    // Anything that is not Caddy's line shape is ignored without being parsed.
    assert.equal(parseAccessLine(JSON.stringify({ 'resp_headers ': { 'X-Relight-Ticket': ['x'] } })), undefined)
    for (const junk of ['', 'not json', '[]', 'null', '{"request":{"host":7}}', '"resp_headers":', '"resp_headers":{"X-Relight-Ticket":["unterminated']) {
      assert.equal(parseAccessLine(junk)?.ticket, undefined, junk)
    }
  })
})

describe('access log listener', () => {
  it('reads lines split across packets from a unix socket and reports connections', async () => {
    const tmp = tempDir()
    const r = recorder()
    const server = new AccessLogServer(`unix:${join(tmp.dir, 'a.sock')}`, r.handlers, pino({ level: 'silent' }))
    await server.listen()
    const socket = await dial(join(tmp.dir, 'a.sock'))
    const text = `${PROXIED}\n${DENIED}\n${PROXIED.replace('T1cket-from-the-sidecar_0', 'second')}\n`
    socket.write(text.slice(0, 50))
    socket.write(text.slice(50, 700))
    socket.write(text.slice(700))
    await until(() => r.tickets.length === 2, 'two tickets')
    assert.deepEqual(r.tickets, ['T1cket-from-the-sidecar_0', 'second'])
    assert.equal(server.stats.lines, 3)
    assert.equal(r.conns.length, 1)
    socket.end()
    await until(() => r.conns[0]?.open === false, 'the connection to be reported closed')
    await server.close()
    tmp.remove()
  })

  it('skips over-long lines as they stream by, then reads the next line', async () => {
    const tmp = tempDir()
    const r = recorder()
    const server = new AccessLogServer(`unix:${join(tmp.dir, 'a.sock')}`, r.handlers, pino({ level: 'silent' }), { maxLine: 64 << 10 })
    await server.listen()
    const socket = await dial(join(tmp.dir, 'a.sock'))
    // 20 MB without a newline, written in 1 MB pieces: never held whole.
    const piece = Buffer.alloc(1 << 20, 0x61)
    for (let i = 0; i < 20; i++) {
      if (!socket.write(piece)) await new Promise((res) => socket.once('drain', res))
    }
    // A line just over the cap, then a good one.
    socket.write(`\n${'b'.repeat((64 << 10) + 1)}\n${PROXIED}\n`)
    try {
      await until(() => r.tickets.length === 1, 'the line after the long ones')
      assert.equal(server.stats.skippedLines, 2)
      assert.equal(server.stats.lines, 1)
      const peak = server.stats.peakBufferedBytes
      assert.ok(peak <= 64 << 10, `never more than max_line buffered (${peak} bytes)`)
    } finally {
      socket.destroy()
      await server.close()
      tmp.remove()
    }
  })

  it('accepts at most max connections and refuses the rest', async () => {
    const tmp = tempDir()
    const r = recorder()
    const server = new AccessLogServer(`unix:${join(tmp.dir, 'a.sock')}`, r.handlers, pino({ level: 'silent' }), { maxConnections: 2 })
    await server.listen()
    const a = await dial(join(tmp.dir, 'a.sock'))
    const b = await dial(join(tmp.dir, 'a.sock'))
    await until(() => server.stats.connections === 2, 'two connections')
    const c = await dial(join(tmp.dir, 'a.sock'))
    await new Promise((res) => c.once('close', res))
    assert.equal(server.stats.refusedConnections, 1)
    assert.equal(r.conns.length, 2)
    a.destroy()
    await until(() => server.stats.connections === 1, 'one connection left')
    const d = await dial(join(tmp.dir, 'a.sock'))
    await until(() => server.stats.connections === 2, 'a freed slot is usable again')
    for (const s of [b, d]) s.destroy()
    await server.close()
    tmp.remove()
  })

  it('accepts Caddy on a loopback TCP address', async () => {
    const r = recorder()
    const server = new AccessLogServer('127.0.0.1:0', r.handlers, pino({ level: 'silent' }))
    await server.listen()
    const [host, port] = server.boundAddress.split(':')
    const socket = connect({ host: host as string, port: Number(port) })
    await new Promise((res) => socket.once('connect', res))
    socket.write(`${PROXIED}\n`)
    await until(() => r.tickets.length === 1, 'one line')
    socket.destroy()
    await server.close()
  })
})

describe('unix socket paths', () => {
  it('refuses a socket another program still answers on, and replaces a stale one', async (t) => {
    const tmp = tempDir()
    const path = join(tmp.dir, 'a.sock')
    const handlers = recorder().handlers
    const first = new AccessLogServer(`unix:${path}`, handlers, pino({ level: 'silent' }))
    const second = new AccessLogServer(`unix:${path}`, handlers, pino({ level: 'silent' }))
    t.after(async () => {
      await second.close()
      await first.close()
      tmp.remove()
    })
    await first.listen()
    await assert.rejects(second.listen(), (e: unknown) => isRelightError(e, 'RELIGHT_ERR_CONFIG') && /in use by a running program/.test((e as Error).message))
    // a crashed listener leaves its socket file behind with nobody on it: that one is taken over
    const stale = join(tmp.dir, 'b.sock')
    const crashed = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] })
    t.after(() => { crashed.kill('SIGKILL') })
    await new Promise((res) => crashed.stdout.once('data', res))
    crashed.kill('SIGKILL')
    await new Promise((res) => crashed.once('exit', res))
    assert.ok(existsSync(stale), 'SIGKILL left the socket file')
    const third = new AccessLogServer(`unix:${stale}`, handlers, pino({ level: 'silent' }))
    t.after(() => third.close())
    await third.listen()
  })
})
