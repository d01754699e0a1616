/**
 * In-flight accounting through real Caddy 2.6 (the snippet, `log { output net … format json }`
 * over a unix socket): the ticket reaches the log line and nothing else can finish a request.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import { connect, type Socket } from 'node:net'
import { join } from 'node:path'
import { Writable } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import { caddySkip, type RunningCaddy, SNIPPET_V1, startCaddy } from '../helpers/caddy.js'
import { tempDir } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const skip = caddySkip()


describe('accounting by ticket through Caddy', { skip }, () => {
  let backend: Server
  const seen: IncomingHttpHeaders[] = []
  let sc: TestSidecar
  let caddy: RunningCaddy
  let logText = ''
  const tmp = tempDir('relight-acc-')
  const socketPath = () => join(sc.dir, 'access.sock')
  const app = () => sc.sidecar.registry.get('memory:app')

  before(async () => {
    backend = createServer((req, res) => {
      seen.push(req.headers)
      // A backend trying to choose the ticket Caddy logs: `defer` in the snippet overrides it.
      res.setHeader('X-Relight-Ticket', 'FROM-THE-BACKEND')
      if (req.url === '/sse') {
        res.writeHead(200, { 'content-type': 'text/event-stream' })
        res.write('data: first\n\n')
        const t = setInterval(() => res.write('data: tick\n\n'), 100)
        res.on('close', () => clearInterval(t))
        return
      }
      res.end('ok\n')
    })
    await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r))
    const a = backend.address()
    const up = `127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`
    const provider = new MemoryProvider([{ id: 'app', hosts: ['app.localhost'], state: 'running', upstreams: [up] }])
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        logText += chunk.toString()
        done()
      },
    })
    sc = await startTestSidecar('min_idle_timeout: 300ms\nresync_interval: 0s\ndefaults: { idle_timeout: 800ms }\n', { providers: [provider], logger: pino({ level: 'info' }, sink) })
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => sc.sidecar.registry.countInflight, 'Caddy to connect its access log')
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
    await new Promise<void>((r) => backend?.close(() => r()))
    tmp.remove()
  })

  const get = async (path: string, headers: Record<string, string> = {}, via = caddy) => {
    const res = await request(`${via.url}${path}`, { headers: { host: 'app.localhost', ...headers } })
    return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
  }

  it("puts a ticket in the logged response; the backend never sees it, cannot replace it, and a client's own is stripped", async () => {
    const res = await get('/', { 'x-relight-ticket': 'CLIENT-CHOSEN' })
    assert.equal(res.status, 200)
    const ticket = String(res.headers['x-relight-ticket'])
    assert.match(ticket, /^[A-Za-z0-9_-]{22}$/, `the sidecar's ticket, not the backend's or the client's (${ticket})`)
    const last = seen.at(-1) ?? {}
    assert.equal(last['x-relight-ticket'], undefined, 'the backend does not receive the ticket')
    assert.equal(last['x-relight-upstream'], undefined)
    await until(() => sc.sidecar.tickets?.size === 0, 'the log line to finish the request')
    assert.equal(app()?.inflight, 0)
  })

  it('forged lines on another connection change nothing while a stream is open', async () => {
    const res = await request(`${caddy.url}/sse`, { headers: { host: 'app.localhost' } })
    assert.equal(res.statusCode, 200)
    let chunks = 0
    res.body.on('data', () => chunks++)
    await until(() => chunks > 0, 'the first event')
    assert.equal(app()?.inflight, 1)
    const intruder = connect(socketPath())
    await new Promise((r) => intruder.once('connect', r))
    const linesBefore = sc.sidecar.accessLog?.stats.lines ?? 0
    const forged = [
      // the old format: host and status, no ticket
      '{"level":"info","logger":"http.log.access.log0","msg":"handled request","request":{"host":"app.localhost","uri":"/sse"},"status":200,"resp_headers":{}}',
      // a guessed ticket, in the right place
      '{"request":{"host":"app.localhost"},"status":200,"resp_headers":{"X-Relight-Ticket":["AAAAAAAAAAAAAAAAAAAAAA"]}}',
      // a ticket in the request headers (what a client controls)
      '{"request":{"host":"app.localhost","headers":{"X-Relight-Ticket":["x"]}},"status":200}',
    ]
    intruder.write(`${forged.join('\n')}\n`)
    await until(() => (sc.sidecar.accessLog?.stats.lines ?? 0) >= linesBefore + forged.length, 'the forged lines to be read')
    assert.equal(app()?.inflight, 1, 'the stream still counts')
    intruder.destroy()
    // An hour later by the registry's clock (Date.now), the open stream still keeps it from the idle sweep.
    assert.equal(app()?.isIdle(Date.now() + 3_600_000), false, 'idle with its stream open')
    assert.equal(app()?.phase, 'running')
    res.body.destroy()
    await until(() => app()?.inflight === 0, 'Caddy to log the closed stream', 5000)
    await until(() => app()?.phase === 'asleep', 'the app to sleep after its stream closed', 5000)
  })

  it('an old snippet still routes but is not counted, and the sidecar says so', async () => {
    const snippet = join(tmp.dir, 'relight-v1.caddy')
    writeFileSync(snippet, SNIPPET_V1)
    const old = await startCaddy({ sidecar: sc.address, sites: (port) => `import ${snippet}\nhttp://:${port} {\n\tbind 127.0.0.1\n\timport relight_v1 ${sc.address}\n}\n` })
    try {
      const res = await get('/', {}, old)
      assert.equal(res.status, 200)
      assert.equal(app()?.inflight, 0)
      assert.equal(sc.sidecar.tickets?.size, 0)
      await until(() => /old relight snippet/.test(logText), 'the warning about the old snippet')
    } finally {
      await old.close()
    }
  })

  it("Caddy dying ends its requests, even with another program's idle connection open", async () => {
    // Caddy's connection has proven itself (it logged live tickets above).
    const intruder: Socket = connect(socketPath())
    await new Promise((r) => intruder.once('connect', r))
    await until(() => sc.sidecar.accessLog?.stats.connections === 2, 'the second connection')
    const res = await request(`${caddy.url}/sse`, { headers: { host: 'app.localhost' } })
    res.body.on('data', () => undefined)
    res.body.on('error', () => undefined)
    await until(() => app()?.inflight === 1, 'the stream to count')
    process.kill(caddy.pid, 'SIGKILL')
    await until(() => app()?.inflight === 0, 'the stream to stop counting with the connection that owed its line', 5000)
    intruder.destroy()
  })
})
