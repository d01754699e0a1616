/**
 * Every way a request ends, through real Caddy 2.6 and the shipped snippet: websockets closed by
 * FIN, RST and a close frame, clients that give up, Caddy's own 502s, HTTP/2 stream resets, a
 * Host spelling Caddy logs elsewhere (with the README's site block), a one-client flood beside
 * another app's stream, and an intruder holding the access-log slots. Each case ends with the
 * app asleep within idle_timeout plus a margin, and a stream still open keeps its app awake.
 */
import assert from 'node:assert/strict'
import { connect as h2connect, constants as h2 } from 'node:http2'
import { connect, type Socket } from 'node:net'
import { after, before, describe, it, type TestContext } from 'node:test'
import { request } from 'undici'
import { PROOF_GRACE_MS } from '../../sidecar/core/access-log.js'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { MAX_OPEN_PER_CLIENT, UNTICKETED_DELAY_MS } from '../../sidecar/core/tickets.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startStreamBackend as startBackend } from '../helpers/stream-backend.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { MemoryProvider } from '../fakes/memory-provider.js'

const skip = caddySkip()

const IDLE_MS = 1000
/** The sweep runs every min_idle_timeout/10; a loaded machine (several test runs at once) is slow. */
const MARGIN_MS = 3000
const CONFIG = `min_idle_timeout: 300ms\nresync_interval: 0s\ndefaults: { idle_timeout: ${IDLE_MS}ms }\n`


/** A raw HTTP/1.1 request on its own connection (optionally from another loopback address). */
function open(port: number, host: string, path: string, extra: Record<string, string> = {}, localAddress?: string): Promise<{ socket: Socket; head: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () => {
      const headers = Object.entries({ Host: host, ...extra }).map(([k, v]) => `${k}: ${v}\r\n`).join('')
      socket.write(`GET ${path} HTTP/1.1\r\n${headers}\r\n`)
    })
    socket.on('error', reject)
    let head = ''
    const onData = (d: Buffer) => {
      head += d.toString('latin1')
      if (head.includes('\r\n\r\n')) {
        socket.off('data', onData)
        socket.on('data', () => undefined)
        resolve({ socket, head })
      }
    }
    socket.on('data', onData)
  })
}

/** Sent without waiting for an answer (a request that never gets one). */
function send(port: number, host: string, path: string, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () => {
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`)
      resolve(socket)
    })
    socket.on('error', (err) => (socket.connecting ? reject(err) : undefined))
    socket.on('data', () => undefined)
  })
}

/** Destroy these sockets (and sessions) when the test ends, however it ends. */
function released<T extends { destroy(): void }>(t: TestContext, ...all: T[]): T[] {
  t.after(() => {
    for (const s of all) s.destroy()
  })
  return all
}

/** Reads one whole response (head and a Content-Length body) from a keep-alive socket. */
function response(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const onData = (d: Buffer) => {
      got += d.toString('latin1')
      const end = got.indexOf('\r\n\r\n')
      if (end === -1) return
      const length = /\r\ncontent-length: (\d+)/i.exec(got.slice(0, end))
      if (length === null || got.length >= end + 4 + Number(length[1])) {
        socket.off('data', onData)
        clearTimeout(timer)
        resolve(got.slice(0, end))
      }
    }
    const timer = setTimeout(() => reject(new Error(`no whole response within 10 s (got ${JSON.stringify(got.slice(0, 200))})`)), 10_000)
    timer.unref()
    socket.on('data', onData)
  })
}

const websocket = (port: number, host: string) =>
  open(port, host, '/ws', { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13' })

describe('every end of a request finishes it, through Caddy', { skip }, () => {
  let backend: Awaited<ReturnType<typeof startBackend>>
  let sc: TestSidecar
  let caddy: RunningCaddy
  let provider: MemoryProvider
  /** The README's site block (a wildcard site with its own log, no catch-all), over HTTP and HTTP/2. */
  let readme: RunningCaddy
  let tlsPort = 0
  const events: (LifecycleEvent & { at: number })[] = []
  const app = (id: string) => sc.sidecar.registry.get(`memory:${id}`)

  before(async () => {
    backend = await startBackend()
    provider = new MemoryProvider(
      ['app1', 'app2', 'app3', 'app4', 'app5', 'app6', 'app7', 'app8'].map((id) => ({ id, hosts: [`${id}.apps.test`], state: 'running' as const, upstreams: [backend.address] })),
    )
    sc = await startTestSidecar(CONFIG, { providers: [provider] })
    sc.sidecar.registry.events.subscribe((e) => {
      events.push({ ...e, at: Date.now() })
    })
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    tlsPort = await freePort()
    const log = `\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n`
    readme = await startCaddy({
      sidecar: sc.address,
      tls: true,
      global: '\tskip_install_trust\n',
      sites: (port) =>
        `http://*.apps.test:${port} {\n\tbind 127.0.0.1\n${log}\timport relight ${sc.address}\n}\n` +
        `https://*.apps.test:${tlsPort} {\n\tbind 127.0.0.1\n\ttls internal\n${log}\timport relight ${sc.address}\n}\n`,
    })
    // Caddy's connection proves itself with its first live ticket
    const res = await request(`${caddy.url}/`, { headers: { host: 'app7.apps.test' } })
    await res.body.text()
    await until(() => sc.sidecar.accessLog?.stats.provenConnections === 1, "Caddy's connection to prove itself")
  })
  after(async () => {
    await caddy?.close()
    await readme?.close()
    await sc?.close()
    await backend?.close()
  })

  /** Awake now (a request wakes it) and nothing in flight. */
  async function awake(id: string): Promise<void> {
    const res = await request(`${caddy.url}/`, { headers: { host: `${id}.apps.test` } })
    assert.equal(res.statusCode, 200)
    await res.body.text()
    await until(() => app(id)?.phase === 'running' && app(id)?.inflight === 0, `${id} awake with nothing in flight`)
  }

  /** While `streams` stay open, the app outlives several idle timeouts. */
  async function keptAwake(id: string): Promise<void> {
    const from = Date.now()
    // two idle timeouts after the last activity the app would long have slept without its stream
    await until(() => Date.now() - Math.max(from, 0) > 2 * IDLE_MS + 300, 'two idle timeouts', 10_000, 50)
    assert.equal(app(id)?.phase, 'running', `${id} is kept awake by its open stream`)
    assert.ok(!events.some((e) => e.type === 'sleep.done' && e.key === `memory:${id}` && e.at >= from), `${id} did not sleep`)
  }

  /** Asleep within idle_timeout plus the margin after `since` (when its last request ended). */
  async function asleepSoon(id: string, since: number): Promise<void> {
    await until(
      () => events.some((e) => e.type === 'sleep.done' && e.key === `memory:${id}` && e.at >= since),
      `${id} to sleep within idle_timeout + margin (inflight ${app(id)?.inflight})`,
      IDLE_MS + MARGIN_MS,
      20,
    )
  }

  it('websockets closed by FIN, RST and a close frame each end; an open one keeps the app awake', async (t) => {
    await awake('app1')
    const fallback = sc.sidecar.tickets?.unticketedEnds
    const ws = await Promise.all([websocket(caddy.port, 'app1.apps.test'), websocket(caddy.port, 'app1.apps.test'), websocket(caddy.port, 'app1.apps.test'), websocket(caddy.port, 'app1.apps.test')])
    released(t, ...ws.map((w) => w.socket))
    for (const w of ws) assert.match(w.head, /^HTTP\/1\.1 101/)
    await until(() => app('app1')?.inflight === 4, 'four websockets in flight')
    const [fin, rst, frame, kept] = ws.map((w) => w.socket) as [Socket, Socket, Socket, Socket]
    fin.end()
    rst.resetAndDestroy()
    frame.write(Buffer.from([0x88, 0x80, 1, 2, 3, 4])) // masked close frame, no payload
    await until(() => app('app1')?.inflight === 1, 'three closed websockets to end (FIN, RST, close frame)', 5000)
    await keptAwake('app1')
    kept.destroy()
    const closed = Date.now()
    await until(() => app('app1')?.inflight === 0, 'the last websocket to end', 5000)
    await asleepSoon('app1', closed)
    assert.equal(sc.sidecar.tickets?.unticketedEnds, fallback, 'every close was logged with its ticket (no line needed the fallback)')
  })

  it('a client that gives up ends its request', async (t) => {
    await awake('app2')
    const slow = released(t, ...(await Promise.all([send(caddy.port, 'app2.apps.test', '/slow'), send(caddy.port, 'app2.apps.test', '/slow')])))
    await until(() => app('app2')?.inflight === 2, 'two slow requests in flight')
    slow[0]?.destroy()
    await until(() => app('app2')?.inflight === 1, 'the aborted request to end', 5000)
    await keptAwake('app2')
    slow[1]?.destroy()
    await asleepSoon('app2', Date.now())
  })

  it("Caddy's 502 (the backend resets the connection) ends the request", async (t) => {
    await awake('app3')
    const fallback = sc.sidecar.tickets?.unticketedEnds
    const stream = await open(caddy.port, 'app3.apps.test', '/sse')
    released(t, stream.socket)
    const reset = await open(caddy.port, 'app3.apps.test', '/reset')
    released(t, reset.socket)
    assert.match(reset.head, /^HTTP\/1\.1 502/)
    reset.socket.destroy()
    await until(() => app('app3')?.inflight === 1, 'the 502 to end (the stream still open)', 5000)
    await keptAwake('app3')
    stream.socket.destroy()
    await asleepSoon('app3', Date.now())
    assert.equal(sc.sidecar.tickets?.unticketedEnds, fallback, 'the 502 was logged with its ticket (no line needed the fallback)')
  })

  it('HTTP/2: reset streams and a closed session end their requests; an open stream keeps the app awake', async (t) => {
    await awake('app4')
    const session = h2connect(`https://127.0.0.1:${tlsPort}`, { rejectUnauthorized: false, servername: 'app4.apps.test' })
    released(t, session)
    session.on('error', () => undefined)
    const authority = `app4.apps.test:${tlsPort}`
    const sse = session.request({ ':path': '/sse', ':authority': authority })
    sse.on('error', () => undefined)
    await Promise.race([
      new Promise((r) => sse.once('response', r)),
      new Promise((_, reject) => setTimeout(() => reject(new Error('no HTTP/2 response within 10 s')), 10_000).unref()),
    ])
    sse.on('data', () => undefined)
    // the same URI twice on one connection, and one of them reset
    const a = session.request({ ':path': '/slow', ':authority': authority })
    const b = session.request({ ':path': '/slow', ':authority': authority })
    for (const s of [a, b]) s.on('error', () => undefined)
    await until(() => app('app4')?.inflight === 3, 'three streams in flight')
    a.close(h2.NGHTTP2_CANCEL)
    await until(() => app('app4')?.inflight === 2, 'the reset stream to end', 5000)
    b.close(h2.NGHTTP2_CANCEL)
    await until(() => app('app4')?.inflight === 1, 'the second reset stream to end', 5000)
    await keptAwake('app4')
    session.destroy()
    await asleepSoon('app4', Date.now())
  })

  it("with the README's site block, a Host spelling Caddy logs elsewhere pins nothing; the canonical one counts", async (t) => {
    await awake('app5')
    await awake('app6')
    // app6: a stream in the canonical spelling counts and keeps it awake
    const kept = await open(readme.port, `app6.apps.test:${readme.port}`, '/sse')
    released(t, kept.socket)
    assert.match(kept.head, /^HTTP\/1\.1 200/)
    await until(() => app('app6')?.inflight === 1, 'the canonical stream to count')
    // app5: upper case in the site's domain is routed, but Caddy logs it with its default logger
    const upper = await open(readme.port, `app5.APPS.test:${readme.port}`, '/sse')
    released(t, upper.socket)
    assert.match(upper.head, /^HTTP\/1\.1 200/, 'routed')
    const started = Date.now()
    assert.equal(app('app5')?.inflight, 0, 'not counted in flight: its line never reaches the sidecar')
    upper.socket.destroy()
    await asleepSoon('app5', started)
    await keptAwake('app6')
    kept.socket.destroy()
    await asleepSoon('app6', Date.now())
  })

  it("one client's flood is bounded; another client's stream, on another app and on the flooded one, still counts", async (t) => {
    await awake('app1')
    await awake('app2')
    // localAddress: one client is one address (Caddy's view, sent as X-Relight-Client)
    const flood = released(t, ...(await Promise.all(Array.from({ length: MAX_OPEN_PER_CLIENT + 100 }, () => send(caddy.port, 'app1.apps.test', '/slow', '127.0.0.2')))))
    await until(() => sc.sidecar.tickets?.openForClient('127.0.0.2') === MAX_OPEN_PER_CLIENT, 'the flood to reach its bound', 30_000, 50)
    // (a few of the extra requests may fail at Caddy instead, with so many connections at once)
    await until(() => (sc.sidecar.tickets?.refused ?? 0) >= 1, 'the rest of the flood to be refused tickets', 30_000, 50)
    assert.equal(app('app1')?.inflight, MAX_OPEN_PER_CLIENT, 'the flood holds no more than its bound')
    const other = await open(caddy.port, 'app2.apps.test', '/sse', {}, '127.0.0.3')
    const same = await open(caddy.port, 'app1.apps.test', '/sse', {}, '127.0.0.3')
    released(t, other.socket, same.socket)
    await until(() => app('app2')?.inflight === 1 && app('app1')?.inflight === MAX_OPEN_PER_CLIENT + 1, "the other client's streams to count")
    for (const s of flood) s.destroy()
    await until(() => app('app1')?.inflight === 1, 'the flood to end', 30_000, 50)
    await keptAwake('app2')
    assert.equal(app('app1')?.phase, 'running', "the flooded app is kept awake by the other client's stream")
    other.socket.destroy()
    same.socket.destroy()
    const closed = Date.now()
    await asleepSoon('app1', closed)
    await asleepSoon('app2', closed)
  })

  it('a client retrying on the same connection after a failed wake: its new stream keeps counting', async (t) => {
    await until(() => app('app8')?.phase === 'asleep', 'app8 to fall asleep', 10_000, 50)
    provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'one failed start')
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect(caddy.port, '127.0.0.1', () => resolve(s))
      s.on('error', reject)
    })
    released(t, socket)
    const answered = response(socket)
    socket.write('GET /sse HTTP/1.1\r\nHost: app8.apps.test\r\n\r\n')
    assert.match(await answered, /^HTTP\/1\.1 5\d\d/, 'the failed wake is answered with an error (no ticket: Caddy logs it without one)')
    // the client (an EventSource, say) retries the same request on the same keep-alive connection
    socket.write('GET /sse HTTP/1.1\r\nHost: app8.apps.test\r\n\r\n')
    await until(() => app('app8')?.inflight === 1, 'the retried stream to count')
    const from = Date.now()
    // past the moment the failed request's line (same connection, method, Host, URI) is matched
    await until(() => Date.now() - from > UNTICKETED_DELAY_MS + IDLE_MS + 300, 'the fallback delay and an idle timeout', 15_000, 50)
    assert.equal(app('app8')?.inflight, 1, "the failed request's line ended nothing")
    assert.equal(app('app8')?.phase, 'running', 'the retried stream keeps app8 awake')
    socket.destroy()
    const closed = Date.now()
    await until(() => app('app8')?.inflight === 0, 'the retried stream to end', 5000)
    await asleepSoon('app8', closed)
  })
})

describe('lines without their ticket (a log filter deletes it) end the request they log', { skip }, () => {
  let backend: Awaited<ReturnType<typeof startBackend>>
  let sc: TestSidecar
  let caddy: RunningCaddy
  const app = () => sc.sidecar.registry.get('memory:fb')

  before(async () => {
    backend = await startBackend()
    const provider = new MemoryProvider(['fb', 'prove'].map((id) => ({ id, hosts: [`${id}.apps.test`], state: 'running' as const, upstreams: [backend.address] })))
    sc = await startTestSidecar(CONFIG, { providers: [provider] })
    // fb's site logs through a filter that deletes the ticket: only the fallback can end its
    // requests; the catch-all site logs normally (Caddy's connection proves itself through it).
    // `uri strip_prefix` runs before the snippet: a rewrite the line does not show.
    caddy = await startCaddy({
      sidecar: sc.address,
      sites: (port) =>
        `http://fb.apps.test:${port} {\n\tbind 127.0.0.1\n\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat filter {\n\t\t\twrap json\n\t\t\tfields {\n\t\t\t\tresp_headers>X-Relight-Ticket delete\n\t\t\t}\n\t\t}\n\t}\n\turi strip_prefix /api\n\timport relight ${sc.address}\n}\n` +
        `http://:${port} {\n\tbind 127.0.0.1\n\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n\timport relight ${sc.address}\n}\n`,
    })
    const res = await request(`${caddy.url}/`, { headers: { host: 'prove.apps.test' } })
    await res.body.text()
    await until(() => sc.sidecar.accessLog?.stats.provenConnections === 1, "Caddy's connection to prove itself")
  })
  after(async () => {
    await caddy?.close()
    await sc?.close()
    await backend?.close()
  })

  it('plain, absolute-form, raw non-ASCII and rewritten request targets: each aborted request ends', async (t) => {
    const host = `fb.apps.test:${caddy.port}`
    const targets = ['/slow?plain', `http://${host}/slow/absolute`, '/slow/caf\u00e9', '/api/slow/stripped']
    const sockets = released(
      t,
      ...(await Promise.all(
        targets.map(
          (target) =>
            new Promise<Socket>((resolve, reject) => {
              const s = connect(caddy.port, '127.0.0.1', () => {
                s.write(Buffer.concat([Buffer.from(`GET `), Buffer.from(target, 'utf8'), Buffer.from(` HTTP/1.1\r\nHost: ${host}\r\n\r\n`)]))
                resolve(s)
              })
              s.on('error', reject)
            }),
        ),
      )),
    )
    await until(() => app()?.inflight === targets.length, `${targets.length} requests in flight`)
    const before = sc.sidecar.tickets?.unticketedEnds ?? 0
    for (const s of sockets) s.destroy()
    await until(() => app()?.inflight === 0, "every aborted request to end by its line without a ticket", UNTICKETED_DELAY_MS + MARGIN_MS)
    assert.equal(sc.sidecar.tickets?.unticketedEnds, before + targets.length, 'each ended through the fallback')
  })
})

describe('an intruder holding the access-log slots', { skip }, () => {
  let backend: Awaited<ReturnType<typeof startBackend>>
  let sc: TestSidecar
  let caddy: RunningCaddy | undefined
  const intruders: Socket[] = []
  const events: (LifecycleEvent & { at: number })[] = []

  before(async () => {
    backend = await startBackend()
    const provider = new MemoryProvider([{ id: 'app', hosts: ['app.apps.test'], state: 'running', upstreams: [backend.address] }])
    sc = await startTestSidecar(CONFIG, { providers: [provider] })
    sc.sidecar.registry.events.subscribe((e) => {
      events.push({ ...e, at: Date.now() })
    })
  })
  after(async () => {
    for (const s of intruders) s.destroy()
    await caddy?.close()
    await sc?.close()
    await backend?.close()
  })

  const health = async () => {
    const res = await request(`${sc.url}/_relight/healthz`)
    return ((await res.body.json()) as { access_log: string }).access_log
  }
  const asleepSoon = (since: number) =>
    until(() => events.some((e) => e.type === 'sleep.done' && e.at >= since), `the app to sleep within idle_timeout + margin (inflight ${sc.sidecar.registry.get('memory:app')?.inflight})`, IDLE_MS + MARGIN_MS, 20)

  it('cannot keep Caddy out, cannot pin; healthz says connected only once Caddy proved itself', async () => {
    const path = sc.caddyAccessLog.slice('unix/'.length)
    for (let i = 0; i < 4; i++) {
      const s = connect(path)
      s.on('error', () => undefined)
      await new Promise((r) => s.once('connect', r))
      intruders.push(s)
    }
    await until(() => sc.sidecar.accessLog?.stats.connections === 4, 'the intruder to hold every slot')
    const heldSince = Date.now()
    // Caddy starts while the slots are full: its connection is refused
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => (sc.sidecar.accessLog?.stats.refusedConnections ?? 0) >= 1, "Caddy's connection to be refused")
    assert.equal(await health(), 'unproven', 'healthz does not call idle intruders "connected"')
    // past the grace an unproven connection gets to prove itself
    await until(() => Date.now() - heldSince > PROOF_GRACE_MS + 100, 'the grace to pass', PROOF_GRACE_MS + 5000, 50)
    const app = () => sc.sidecar.registry.get('memory:app')
    const first = await open(caddy.port, 'app.apps.test', '/sse')
    await until(() => app()?.inflight === 1, 'the stream to count')
    first.socket.destroy()
    // Caddy's line: its write fails, it re-dials, and a newcomer replaces an unproven intruder
    await until(() => app()?.inflight === 0, "Caddy's re-dialled connection to bring the line", 5000)
    assert.ok((sc.sidecar.accessLog?.stats.evictedConnections ?? 0) >= 1, 'an intruder was closed to make room')
    await asleepSoon(Date.now())
    const second = await open(caddy.port, 'app.apps.test', '/sse')
    await until(() => app()?.inflight === 1, 'the second stream to count')
    const from = Date.now()
    await until(() => Date.now() - from > 2 * IDLE_MS + 300, 'two idle timeouts', 10_000, 50)
    assert.equal(app()?.phase, 'running', 'the open stream keeps the app awake')
    second.socket.destroy()
    const closed = Date.now()
    await until(() => app()?.inflight === 0, 'the second stream to end', 5000)
    await until(async () => (await health()) === 'connected', "healthz to report Caddy's proven connection")
    await asleepSoon(closed)
  })
})
