/**
 * In-flight accounting by ticket (the ledger and /auth), and the on-demand TLS `ask` that
 * approves one spelling per name. Through real Caddy: test/integration/accounting-caddy.test.ts
 * and ask-caddy.test.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { canonicalHostProblem } from '../../sidecar/core/hosts.js'
import type { Backend } from '../../sidecar/core/backend.js'
import { Registry } from '../../sidecar/core/registry.js'
import { repliedBySidecar, requestKeyOf, ticketOf } from '../../sidecar/core/access-log.js'
import { clientGroup, type LogConnection, MAX_OPEN_PER_BACKEND, MAX_OPEN_PER_CLIENT, MAX_OPEN_TICKETS, requestKey, TicketLedger, type TicketTarget, UNTICKETED_DELAY_MS } from '../../sidecar/core/tickets.js'
import { buildApp } from '../../sidecar/server/app.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'

const log = pino({ level: 'silent' })

class Counted implements TicketTarget {
  inflight = 0
  finishes = 0
  counters = { wakes: 0 }
  start(): this {
    this.inflight++
    return this
  }
  finished(): void {
    this.finishes++
    if (this.inflight > 0) this.inflight--
  }
}

const conn = (): LogConnection => ({ open: true, proven: false })

describe('ticket ledger', () => {
  it('issues unguessable tickets; only a live ticket finishes its request, once', () => {
    const ledger = new TicketLedger<Counted>()
    ledger.connectionOpened(conn())
    const target = new Counted()
    const seen = new Set<string>()
    for (let i = 0; i < 10_000; i++) {
      const t = ledger.issue(target.start(), 60_000)!
      assert.match(t, /^[A-Za-z0-9_-]{22}$/)
      seen.add(t)
    }
    assert.equal(seen.size, 10_000, 'no repeats')
    const [first] = seen
    assert.equal(ledger.finish('not-a-ticket'), false)
    assert.equal(ledger.finish(''), false)
    assert.equal(target.inflight, 10_000, 'unknown tickets change nothing')
    assert.equal(ledger.finish(first as string), true)
    assert.equal(ledger.finish(first as string), false, 'a replayed line changes nothing')
    assert.equal(target.inflight, 9_999)
  })

  it('expires a request whose line never comes after max_request_duration', () => {
    const clock = { now: 0 }
    const lost: string[] = []
    const ledger = new TicketLedger<Counted>({ now: () => clock.now, onLost: (reason, n) => lost.push(`${reason}:${n}`) })
    ledger.connectionOpened(conn())
    const a = new Counted()
    const b = new Counted()
    ledger.issue(a.start(), 5_000)
    const kept = ledger.issue(b.start(), 60_000)!
    clock.now = 4_999
    assert.equal(ledger.expire(), 0)
    clock.now = 5_000
    assert.equal(ledger.expire(), 1)
    assert.deepEqual([a.inflight, b.inflight], [0, 1])
    assert.deepEqual(lost, ['expired:1'])
    clock.now = 59_000
    assert.equal(ledger.expire(), 0, 'the scan waits for the next expiry')
    assert.equal(ledger.finish(kept), true)
  })

  it("ties tickets to the connection that can finish them: Caddy's going drops them, an idle intruder keeps nothing", () => {
    const ledger = new TicketLedger<Counted>()
    const caddy = conn()
    ledger.connectionOpened(caddy)
    const target = new Counted()
    // Caddy proves itself with the first live ticket it logs.
    assert.equal(ledger.finish(ledger.issue(target.start(), 60_000)!, caddy), true)
    assert.equal(caddy.proven, true)
    const intruder = conn()
    ledger.connectionOpened(intruder)
    ledger.issue(target.start(), 60_000)
    ledger.issue(target.start(), 60_000)
    assert.equal(target.inflight, 2)
    ledger.connectionClosed(caddy)
    assert.equal(target.inflight, 0, 'lines owed on the closed connection are lost: stop counting them')
    assert.equal(ledger.size, 0)
    assert.equal(ledger.counting, false, 'the intruder idled beside Caddy without proving itself: it counts nothing')
    // Caddy redials: counting resumes, and its first line proves the new connection.
    const redial = conn()
    ledger.connectionOpened(redial)
    assert.equal(ledger.counting, true)
    const ticket = ledger.issue(target.start(), 60_000)!
    ledger.connectionClosed(intruder)
    assert.equal(target.inflight, 1, 'the redial may still deliver it')
    assert.equal(ledger.finish(ticket, redial), true)
    assert.equal(redial.proven, true)
    assert.equal(ledger.counting, true)
  })

  it('keeps tickets issued before any connection was proven until all their connections close', () => {
    const ledger = new TicketLedger<Counted>()
    const [x, y] = [conn(), conn()]
    ledger.connectionOpened(x)
    ledger.connectionOpened(y)
    const target = new Counted()
    ledger.issue(target.start(), 60_000)
    ledger.connectionClosed(x)
    assert.equal(target.inflight, 1)
    ledger.connectionClosed(y)
    assert.equal(target.inflight, 0)
  })

  it('a ticket from before a sleep never finishes a request from after it', () => {
    const ledger = new TicketLedger<Counted>()
    ledger.connectionOpened(conn())
    const target = new Counted()
    const old = ledger.issue(target.start(), 60_000)!
    // slept (count reset) and woke, then a new request
    target.inflight = 0
    target.counters.wakes++
    ledger.issue(target.start(), 60_000)
    assert.equal(ledger.finish(old), true)
    assert.equal(target.inflight, 1)
  })

  it('holds at most MAX_OPEN_TICKETS: beyond, no ticket is issued and open ones keep counting', () => {
    let refused = 0
    let bound = ''
    const ledger = new TicketLedger<Counted>({ onFull: (b, total) => ((refused = total), (bound = b)) })
    ledger.connectionOpened(conn())
    // as many backends as it takes to fill the ledger within each one's bound
    const targets = Array.from({ length: Math.ceil(MAX_OPEN_TICKETS / MAX_OPEN_PER_BACKEND) }, () => new Counted())
    const target = targets[0] as Counted
    const first = ledger.issue(target.start(), 60_000)!
    for (let i = 1; i < MAX_OPEN_TICKETS; i++) ledger.issue((targets[i % targets.length] as Counted).start(), 60_000)
    assert.equal(ledger.size, MAX_OPEN_TICKETS)
    const other = new Counted()
    assert.equal(ledger.issue(other, 60_000), undefined, 'full: the request gets no ticket')
    assert.equal(refused, 1)
    assert.equal(bound, 'ledger')
    assert.equal(ledger.size, MAX_OPEN_TICKETS)
    assert.equal(targets.reduce((n, t) => n + t.inflight, 0), MAX_OPEN_TICKETS)
    assert.equal(ledger.finish(first), true, 'the oldest is still counted')
    assert.notEqual(ledger.issue(other.start(), 60_000), undefined, 'room again')
  })

  it("a line without its ticket, from Caddy's proven connection, ends the request with Caddy's identity of it", () => {
    const ledger = new TicketLedger<Counted>()
    const caddy = conn()
    const other = conn()
    ledger.connectionOpened(caddy)
    ledger.connectionOpened(other)
    const target = new Counted()
    ledger.finish(ledger.issue(target.start(), 60_000)!, caddy) // Caddy proves itself
    const key = requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/ws?x=1')
    ledger.issue(target.start(), 60_000, '192.0.2.1', key)
    ledger.issue(target.start(), 60_000, '192.0.2.1', requestKey('192.0.2.1:40001', 'GET', 'a.example.com', '/ws?x=1'))
    const line = `{"level":"info","logger":"http.log.access","msg":"handled request","request":{"remote_ip":"192.0.2.1","remote_port":"40000","proto":"HTTP/1.1","method":"GET","host":"a.example.com","uri":"/ws?x=1","headers":{"X-Relight-Ticket":["x"]}},"status":0,"resp_headers":{"Server":["Caddy"]}}`
    assert.equal(requestKeyOf(line), key)
    assert.equal(ticketOf(line), undefined)
    assert.equal(repliedBySidecar(line), false)
    // the sidecar's own answer (an error, the waiting page) as Caddy logs it: never matched
    assert.equal(repliedBySidecar(line.replace('"resp_headers":{', '"resp_headers":{"X-Relight-Reply":["RELIGHT_ERR_PROVIDER_UNAVAILABLE"],')), true)
    assert.equal(repliedBySidecar(line.replace('"headers":{', '"headers":{"X-Relight-Reply":["x"],')), false, 'a request header of that name is not the reply')
    assert.equal(ledger.finishUnticketed(key, other), false, 'an unproven connection ends nothing')
    assert.equal(target.inflight, 2)
    assert.equal(ledger.finishUnticketed(requestKey('192.0.2.1:40002', 'GET', 'a.example.com', '/ws?x=1'), caddy), false, 'another connection of the same client: nothing')
    assert.equal(ledger.finishUnticketed(key, caddy), true)
    assert.equal(target.inflight, 1)
    assert.equal(ledger.finishUnticketed(key, caddy), false, 'once')
  })

  it('keys are bounded whatever the URI; IPv6 clients are bounded per /64', () => {
    const long = requestKey('192.0.2.1:40000', 'GET', 'a.example.com', `/${'a'.repeat(200_000)}`)
    assert.ok(long.length < 100, `a key stays short (${long.length} characters)`)
    assert.notEqual(requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/a'), requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/b'))
    assert.notEqual(requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/a b'), requestKey('192.0.2.1:40000', 'GET a.example.com', '/a', 'b'))
    assert.notEqual(requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/a'), requestKey('192.0.2.1:40001', 'GET', 'a.example.com', '/a'))
    assert.equal(clientGroup('192.0.2.1'), '192.0.2.1')
    assert.equal(clientGroup('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64')
    assert.equal(clientGroup('2001:db8:1:2::ffff'), '2001:db8:1:2::/64')
    assert.equal(clientGroup('2001:0db8:0001:0002:aaaa::1'), '2001:db8:1:2::/64', 'leading zeros')
    assert.equal(clientGroup('2001:db8::1'), '2001:db8:0:0::/64')
    assert.equal(clientGroup('::1'), '0:0:0:0::/64')
    assert.equal(clientGroup('fe80::1%eth0'), 'fe80:0:0:0::/64', 'zone dropped')
    assert.equal(clientGroup('::ffff:192.0.2.1'), '192.0.2.1', 'IPv4-mapped')
    assert.equal(clientGroup('zz::1'), undefined)
    // one /64 is one client for the bound
    const ledger = new TicketLedger<Counted>({ limits: { perClient: 2 } })
    ledger.connectionOpened(conn())
    const target = new Counted()
    assert.notEqual(ledger.issue(target.start(), 60_000, clientGroup('2001:db8:1:2::1')), undefined)
    assert.notEqual(ledger.issue(target.start(), 60_000, clientGroup('2001:db8:1:2::2')), undefined)
    assert.equal(ledger.issue(target, 60_000, clientGroup('2001:db8:1:2::3')), undefined, 'another address of the same /64 is the same client')
    assert.notEqual(ledger.issue(target.start(), 60_000, clientGroup('2001:db8:1:3::1')), undefined, 'the next /64 is another client')
  })

  it('a line of a request answered without a ticket ends nothing, and is no early end', () => {
    let now = 0
    const ledger = new TicketLedger<Counted>({ now: () => now })
    const caddy = conn()
    ledger.connectionOpened(caddy)
    const target = new Counted()
    ledger.finish(ledger.issue(target.start(), 60_000)!, caddy)
    const key = requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/events')
    // the retry got its ticket before the old line is matched: the line ends nothing
    ledger.pass(key)
    ledger.issue(target.start(), 60_000, '192.0.2.1', key)
    now += UNTICKETED_DELAY_MS
    assert.equal(ledger.finishUnticketed(key, caddy), false)
    assert.equal(target.inflight, 1)
    // the old line is matched before the retry: the retry still gets a ticket
    const other = requestKey('192.0.2.1:40001', 'GET', 'a.example.com', '/events')
    ledger.pass(other)
    assert.equal(ledger.finishUnticketed(other, caddy), false)
    assert.notEqual(ledger.issue(target.start(), 60_000, '192.0.2.1', other), undefined)
    // a pass is used once: a later line of that key (the retry, abandoned) ends the retry
    assert.equal(ledger.finishUnticketed(other, caddy), true)
    assert.equal(target.inflight, 1)
  })

  it('identical HTTP/2 requests on one connection: a line without its ticket ends one, and the count stays right', () => {
    const ledger = new TicketLedger<Counted>()
    const caddy = conn()
    ledger.connectionOpened(caddy)
    const target = new Counted()
    ledger.finish(ledger.issue(target.start(), 60_000)!, caddy)
    const key = requestKey('192.0.2.1:40000', 'GET', 'a.example.com', '/slow')
    const first = ledger.issue(target.start(), 60_000, '192.0.2.1', key)!
    const second = ledger.issue(target.start(), 60_000, '192.0.2.1', key)!
    // the first one's ticket never reached Caddy's response headers; its line comes without it
    assert.equal(ledger.finishUnticketed(key, caddy), true)
    assert.equal(target.inflight, 1)
    // the second ends normally: its ticket (or the one ended in its place) finishes the other
    assert.equal(ledger.finish(second, caddy), true)
    assert.equal(target.inflight, 0)
    assert.equal(ledger.finish(first, caddy), false)
    assert.equal(ledger.size, 0)
  })

  it('bounds one backend and one client address: a flood leaves room for the others', () => {
    const refusals: string[] = []
    const ledger = new TicketLedger<Counted>({ onFull: (b) => refusals.push(b) })
    ledger.connectionOpened(conn())
    const flooded = new Counted()
    const quiet = new Counted()
    for (let i = 0; i < MAX_OPEN_PER_BACKEND; i++) ledger.issue(flooded.start(), 60_000, `10.0.${i >> 8}.${i & 255}`)
    assert.equal(ledger.issue(flooded, 60_000, '192.0.2.1'), undefined, 'the flooded backend is at its bound')
    assert.notEqual(ledger.issue(quiet.start(), 60_000, '192.0.2.1'), undefined, 'another backend still gets tickets')
    const client = '198.51.100.7'
    const apps = [new Counted(), new Counted()]
    for (let i = 0; i < MAX_OPEN_PER_CLIENT; i++) ledger.issue((apps[i % 2] as Counted).start(), 60_000, client)
    assert.equal(ledger.openForClient(client), MAX_OPEN_PER_CLIENT)
    assert.equal(ledger.issue(quiet, 60_000, client), undefined, 'the flooding client is at its bound')
    assert.notEqual(ledger.issue(quiet.start(), 60_000, '198.51.100.8'), undefined, 'another client of the same backend is counted')
    assert.deepEqual(refusals, ['backend', 'client'])
    ledger.clear()
    assert.equal(ledger.openFor(flooded), 0)
    assert.equal(ledger.openForClient(client), 0, 'the per-client count goes with its tickets')
  })

  it('when full, expired tickets make room first', () => {
    let t = 0
    const ledger = new TicketLedger<Counted>({ now: () => t })
    ledger.connectionOpened(conn())
    const targets = Array.from({ length: Math.ceil(MAX_OPEN_TICKETS / MAX_OPEN_PER_BACKEND) }, () => new Counted())
    for (let i = 0; i < MAX_OPEN_TICKETS; i++) ledger.issue((targets[i % targets.length] as Counted).start(), 1000)
    t = 1000
    const target = targets[0] as Counted
    assert.notEqual(ledger.issue(target.start(), 1000), undefined)
    assert.equal(ledger.size, 1)
    assert.equal(target.inflight, 1)
  })
})

describe('/_relight/auth with tickets', () => {
  const upstream = okUpstream()

  async function setup() {
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, max_request_duration: 1m }\n', 'test')
    const provider = new MemoryProvider([
      { id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] },
      { id: 'short', hosts: ['short.example.com'], state: 'running', upstreams: [upstream.address], settings: { max_request_duration: 2_000 } },
      { id: 'sleepy', hosts: ['sleepy.example.com'], state: 'stopped', upstreams: [upstream.address] },
    ])
    const clock = { now: 1_000_000 }
    const registry = new Registry([provider], config, log, () => clock.now)
    await registry.start()
    const tickets = new TicketLedger<Backend>({ now: () => clock.now })
    const app = buildApp({}, { registry, logger: log, tickets })
    await app.ready()
    const auth = (host: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/_relight/auth?', headers: { host, ...headers } })
    return {
      registry,
      provider,
      tickets,
      clock,
      auth,
      close: async () => {
        registry.close()
        await app.close()
      },
    }
  }
  const SNIPPET = { 'x-relight-snippet': '3', 'x-relight-client': '127.0.0.1:50000', 'x-relight-request': 'GET /', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' }

  it('snippet 3 without X-Relight-Request (a client claiming version 3 through snippet 1) is not counted', async () => {
    const c = await setup()
    c.tickets.connectionOpened({ open: true, proven: false })
    const { 'x-relight-request': _, ...claimed } = SNIPPET
    const res = await c.auth('a.example.com', claimed)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-relight-ticket'], '-')
    assert.equal(c.registry.get('memory:a')?.inflight, 0)
    await c.close()
  })

  it("an answer without a ticket (a failed wake) lets that request's line pass: the same connection's retry keeps counting", async () => {
    const c = await setup()
    const caddy: LogConnection = { open: true, proven: false }
    c.tickets.connectionOpened(caddy)
    const proof = String((await c.auth('a.example.com', SNIPPET)).headers['x-relight-ticket'])
    c.tickets.finish(proof, caddy)
    assert.equal(caddy.proven, true)
    const headers = { ...SNIPPET, 'x-relight-request': 'GET /events' }
    const key = requestKey(SNIPPET['x-relight-client'], 'GET', 'sleepy.example.com', '/events')
    const sleepy = c.registry.get('memory:sleepy')
    c.provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'one failed start')
    const failed = await c.auth('sleepy.example.com', headers)
    assert.equal(failed.statusCode, 503, 'the failed wake is an error answer: no ticket')
    // the client retries on the same connection and gets a stream
    const retried = await c.auth('sleepy.example.com', headers)
    assert.match(String(retried.headers['x-relight-ticket']), /^[A-Za-z0-9_-]{22}$/)
    assert.equal(sleepy?.inflight, 1)
    // the failed request's line (no ticket, same key) is matched now: it ends nothing
    assert.equal(c.tickets.finishUnticketed(key, caddy), false)
    assert.equal(sleepy?.inflight, 1)
    await c.close()
  })

  it('gives no ticket to a Host spelling Caddy may log elsewhere (activity only); snippet 2 is still counted', async () => {
    const c = await setup()
    c.tickets.connectionOpened({ open: true, proven: false })
    const a = c.registry.get('memory:a')
    for (const host of ['a.EXAMPLE.com', 'A.example.com', 'a.example.com.']) {
      const res = await c.auth(host, SNIPPET)
      assert.equal(res.statusCode, 200, `${host} is routed`)
      assert.equal(res.headers['x-relight-ticket'], '-', `${host} gets no ticket`)
    }
    assert.equal(a?.inflight, 0)
    let res = await c.auth('a.example.com:443', SNIPPET)
    assert.match(String(res.headers['x-relight-ticket']), /^[A-Za-z0-9_-]{22}$/, 'a port does not change the logger')
    res = await c.auth('a.example.com', { ...SNIPPET, 'x-relight-snippet': '2' })
    assert.match(String(res.headers['x-relight-ticket']), /^[A-Za-z0-9_-]{22}$/, 'snippet 2 is counted')
    assert.equal(a?.inflight, 2)
    await c.close()
  })

  it('counts a request in flight only with a ticket, and only when its line can arrive', async () => {
    const c = await setup()
    const a = c.registry.get('memory:a')
    // No access-log connection: nothing can report the end, so nothing is counted.
    let res = await c.auth('a.example.com', SNIPPET)
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-relight-ticket'], '-')
    assert.equal(a?.inflight, 0)
    c.tickets.connectionOpened({ open: true, proven: false })
    res = await c.auth('a.example.com', SNIPPET)
    const ticket = String(res.headers['x-relight-ticket'])
    assert.match(ticket, /^[A-Za-z0-9_-]{22}$/)
    assert.equal(a?.inflight, 1)
    assert.equal(c.tickets.finish(ticket), true)
    assert.equal(a?.inflight, 0)
    await c.close()
  })

  it('does not count /auth calls Caddy did not make (no snippet marker): probes, hand-made calls, old snippets', async () => {
    const c = await setup()
    c.tickets.connectionOpened({ open: true, proven: false })
    const a = c.registry.get('memory:a')
    const before = a?.lastActivity ?? 0
    c.clock.now += 10
    for (const headers of [{}, { 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' }, { 'x-relight-snippet': '1' }] as Record<string, string>[]) {
      const res = await c.auth('a.example.com', headers)
      assert.equal(res.statusCode, 200, 'still answered (monitoring keeps working)')
      assert.equal(res.headers['x-relight-ticket'], '-')
    }
    assert.equal(a?.inflight, 0)
    assert.ok((a?.lastActivity ?? 0) > before, 'but it is activity')
    assert.equal(c.tickets.size, 0)
    await c.close()
  })

  it('a forged marker pins a backend for max_request_duration at most', async () => {
    const c = await setup()
    c.tickets.connectionOpened({ open: true, proven: false })
    await c.auth('short.example.com', SNIPPET)
    const b = c.registry.get('memory:short')
    assert.equal(b?.inflight, 1)
    c.clock.now += 2_000
    c.tickets.expire()
    assert.equal(b?.inflight, 0)
    await c.close()
  })
})

describe('ask approves exactly the canonical spelling', () => {
  const REFUSED = [
    'hello。apps。example。com', // ideographic full stops
    'hello．apps．example．com', // fullwidth full stops
    'hello｡apps｡example｡com', // halfwidth ideographic full stops
    'ＨＥＬＬＯ.apps.example.com', // fullwidth letters
    'HELLO.apps.example.com',
    'Hello.Apps.Example.Com',
    'ſtate.apps.example.com', // long s (maps to "state")
    'hel\u00adlo.apps.example.com', // soft hyphen (ignored by IDNA)
    'hel\u200blo.apps.example.com', // zero-width space
    'hel\u200clo.apps.example.com', // zero-width non-joiner
    'bücher.apps.example.com', // a U-label
    'BÜCHER.apps.example.com',
    'hello.apps.example.com.',
    'hello.apps.example.com..',
    'hello..apps.example.com',
    '.hello.apps.example.com',
    'hello.apps.example.com:443',
    ' hello.apps.example.com',
    'hello.apps.example.com ',
    'xn--bcher-KVA.apps.example.com', // upper-case A-label
    'xn--zz.apps.example.com', // not valid punycode
    'hello\u3002apps.example.com',
    'hello.apps.example.com\u3002',
    'hello.apps.example.com%2e',
    '*.apps.example.com',
    '[::1]',
    '127.0.0.1.', // trailing dot
    '',
  ]

  it('refuses every other spelling with 4xx, approves the canonical one', async () => {
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\nbase_domains: [apps.example.com]\n', 'test')
    const provider = new MemoryProvider([
      { id: 'hello', hosts: ['hello'], state: 'stopped', upstreams: ['127.0.0.1:1'] },
      { id: 'state', hosts: ['state.apps.example.com'], state: 'stopped', upstreams: ['127.0.0.1:1'] },
      { id: 'buecher', hosts: ['bücher.apps.example.com'], state: 'stopped', upstreams: ['127.0.0.1:1'] },
    ])
    const registry = new Registry([provider], config, log)
    await registry.start()
    const app = buildApp({}, { registry, logger: log })
    await app.ready()
    const ask = async (domain: string) => (await app.inject({ method: 'GET', url: `/_relight/ask?domain=${encodeURIComponent(domain)}` })).statusCode
    assert.equal(await ask('hello.apps.example.com'), 200)
    assert.equal(await ask('state.apps.example.com'), 200)
    const body = (await app.inject({ method: 'GET', url: '/_relight/ask?domain=hello.apps.example.com' })).json()
    assert.deepEqual(body, { allowed: true, domain: 'hello.apps.example.com' }, 'names no backend: /ask needs no credentials')
    assert.equal(await ask('xn--bcher-kva.apps.example.com'), 200, 'an IDN in its A-label form')
    for (const spelling of REFUSED) {
      const status = await ask(spelling)
      assert.ok(status >= 400 && status < 500, `${JSON.stringify(spelling)} → ${status}`)
    }
    assert.equal((await app.inject({ method: 'GET', url: '/_relight/ask' })).statusCode, 400)
    // Routing keeps its normalisation: the same spellings still reach the backend.
    for (const spelling of ['HELLO.apps.example.com', 'hello.apps.example.com.', 'hello.apps.example.com:8443', 'ＨＥＬＬＯ.apps.example.com']) {
      assert.equal(registry.index.lookupRaw(spelling).target?.info.id, 'hello', spelling)
    }
    assert.equal(provider.calls.wake, 0, 'ask never wakes')
    registry.close()
    await app.close()
  })

  it('canonicalHostProblem names the canonical form when there is one', () => {
    assert.equal(canonicalHostProblem('a.example.com'), undefined)
    assert.match(canonicalHostProblem('A.example.com.') ?? '', /canonical form.*: a\.example\.com$/)
    assert.match(canonicalHostProblem('a b') ?? '', /not a valid DNS name/)
    assert.match(canonicalHostProblem('xn--zz.example') ?? '', /not a valid DNS name|round-trip/)
  })
})

describe('accounting settings', () => {
  const problem = (yaml: string): string => {
    try {
      parseConfig(yaml, 'relight.yaml', {})
    } catch (err) {
      return [...(err as { problems: string[] }).problems].join('\n')
    }
    return ''
  }

  it('max_request_duration defaults to 24h, is per backend, and names its key when wrong', async () => {
    const c = parseConfig('providers:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [x], port: 1, max_request_duration: 2h }\n', 'x', {})
    assert.equal(c.defaults.max_request_duration, 24 * 3_600_000)
    assert.equal(c.providers.process?.[0]?.apps[0]?.max_request_duration, 7_200_000)
    assert.match(problem('defaults:\n  max_request_duration: 10\n'), /line 2: defaults\.max_request_duration: 10 has no unit/)
    assert.match(problem('defaults:\n  max_request_duration: 100ms\n'), /defaults\.max_request_duration: must be at least 1s/)
    const registry = new Registry([], parseConfig('defaults: { max_request_duration: 1h }\n', 'x', {}), log)
    const provider = new MemoryProvider([])
    const info = { id: 'x', name: 'x', hosts: [], state: 'running' as const, upstreams: [] }
    assert.equal(registry.resolveSettings(provider, { ...info, settings: {} }).max_request_duration, 3_600_000)
    assert.equal(registry.resolveSettings(provider, { ...info, settings: { max_request_duration: 5_000 } }).max_request_duration, 5_000)
  })

  it('access-log limits: defaults, sizes with units, errors that name the key', () => {
    const c = parseConfig('access_log: 127.0.0.1:0\n', 'x', {})
    assert.equal(c.access_log_max_connections, 4)
    assert.equal(c.access_log_max_line, 256 << 10)
    assert.equal(parseConfig('access_log_max_line: 1MiB\n', 'x', {}).access_log_max_line, 1 << 20)
    assert.equal(parseConfig('access_log_max_line: 65536\n', 'x', {}).access_log_max_line, 65536)
    assert.match(problem('access_log_max_line: lots\n'), /line 1: access_log_max_line: expected a size such as 256KiB/)
    assert.match(problem('access_log_max_line: 1KiB\n'), /access_log_max_line: use at least 4KiB/)
    assert.match(problem('access_log_max_connections: 0\n'), /access_log_max_connections/)
  })
})
