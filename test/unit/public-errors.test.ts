/**
 * What any client of /_relight/auth is told when its request is refused (issue 26 follow-up): the
 * host it asked for, the code, a title, a generic sentence and Retry-After; never the backend's
 * name, configuration keys (max_awake, asleep_during, ignore), the schedule's text or an engine's
 * words. Those go to the sidecar log. Also: the capacity refusal's Retry-After is the least time
 * before an awake backend could be evicted, and only a browser navigation gets the queued page.
 */
import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { Registry } from '../../sidecar/core/registry.js'
import { Schedule } from '../../sidecar/core/schedule.js'
import { buildApp } from '../../sidecar/server/app.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'

const upstream = okUpstream()
/** Internal words no public answer may contain. */
const SECRET_NAME = 'billing-internal-7'
const INTERNALS = [SECRET_NAME, 'max_awake', 'asleep_during', 'Sun 01:00-04:00', 'ignore', 'global', 'engine said: oom-killed']
const BROWSER = { accept: 'text/html', 'x-forwarded-method': 'GET' }
const API = { accept: 'application/json', 'x-forwarded-method': 'GET' }

function noInternals(body: string, what: string): void {
  for (const word of INTERNALS) assert.ok(!body.includes(word), `${what} names "${word}": ${body}`)
}

async function setup(yaml: string, backends: { id: string; settings?: Record<string, unknown> }[], defaults = 'idle_timeout: 10s, wake_timeout: 2s') {
  const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { ${defaults} }\n${yaml}`, 'test')
  const provider = new MemoryProvider(
    backends.map((b) => ({ id: b.id, name: b.id === 'a' ? SECRET_NAME : b.id, hosts: [`${b.id}.example.com`], state: 'stopped' as const, upstreams: [upstream.address], settings: (b.settings ?? {}) as never })),
  )
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
      done()
    },
  })
  const log = pino({ level: 'debug' }, sink)
  const clock = { now: 1_000_000, wall: Date.parse('2026-03-29T00:30:00Z') } // Sun 01:30 CET
  const registry = new Registry([provider], config, log, () => clock.now, () => clock.wall)
  await registry.start()
  const http = buildApp({}, { registry, logger: log })
  await http.ready()
  return {
    provider,
    registry,
    clock,
    lines,
    auth: (host: string, headers: Record<string, string> = {}) => http.inject({ method: 'GET', url: '/_relight/auth', headers: { host, ...headers } }),
    close: async () => {
      registry.close()
      await http.close()
    },
  }
}

describe('public error answers', () => {
  it('max_awake refusal: problem+json for an API client, the queued page for a browser; neither names the backend or the cap; the log does', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'b' }, { id: 'a' }])
    try {
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      c.registry.get('memory:b')!.started(true) // a stream: b cannot be evicted
      const api = await c.auth('a.example.com', API)
      assert.equal(api.statusCode, 503)
      assert.match(String(api.headers['content-type']), /^application\/problem\+json/)
      const problem = JSON.parse(api.body) as Record<string, unknown>
      assert.equal(problem.code, 'RELIGHT_ERR_CAPACITY')
      assert.equal(problem.host, 'a.example.com')
      assert.ok(!/queued/i.test(String(problem.title)), `an API client is not queued: ${String(problem.title)}`)
      assert.equal(problem.backend, undefined)
      assert.equal(problem.reason, undefined)
      noInternals(api.body, 'the problem+json')
      assert.ok(api.headers['retry-after'])

      const page = await c.auth('a.example.com', BROWSER) // strategy blocking: still the queued page
      assert.equal(page.statusCode, 503)
      assert.match(page.body, /a\.example\.com is queued<\/h1>/)
      noInternals(page.body, 'the queued page')

      const logged = c.lines.filter((l) => l.code === 'RELIGHT_ERR_CAPACITY')
      assert.ok(logged.some((l) => l.backend === SECRET_NAME && /max_awake 1 \(global\)/.test(String(l.reason))), JSON.stringify(logged))
    } finally {
      await c.close()
    }
  })

  it('asleep_during refusal: says until when, not the window, the key or the backend; the log has them', async () => {
    const c = await setup('', [{ id: 'a', settings: { asleep_during: Schedule.parse('Sun 01:00-04:00 Europe/Berlin') } }])
    try {
      for (const headers of [API, BROWSER]) {
        const res = await c.auth('a.example.com', headers)
        assert.equal(res.statusCode, 503)
        assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_SCHEDULED_ASLEEP')
        assert.equal(res.headers['retry-after'], String(90 * 60))
        assert.match(res.body, /until Sun 04:00 Europe\/Berlin/)
        noInternals(res.body, `the answer to ${headers.accept}`)
      }
      assert.ok(c.lines.some((l) => l.backend === SECRET_NAME && /asleep_during: Sun 01:00-04:00/.test(String(l.reason ?? l.err))), JSON.stringify(c.lines))
    } finally {
      await c.close()
    }
  })

  it("an engine's failure reason and the backend's name stay in the log", async () => {
    const c = await setup('', [{ id: 'a' }])
    try {
      for (const headers of [API, BROWSER]) {
        // one failure per wake (a failed wake is not retried by the next request before its backoff)
        c.provider.failWake = new RelightError('RELIGHT_ERR_BACKEND_EXITED', `backend ${SECRET_NAME} stopped while waking: engine said: oom-killed`, { backend: SECRET_NAME })
        const res = await c.auth('a.example.com', headers)
        assert.equal(res.statusCode, 502)
        assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_BACKEND_EXITED')
        assert.match(res.body, /a\.example\.com/)
        noInternals(res.body, `the answer to ${headers.accept}`)
      }
      assert.ok(c.lines.some((l) => /oom-killed/.test(String(l.err))), JSON.stringify(c.lines))
    } finally {
      await c.close()
    }
  })

  it('an ignored request while asleep: a plain 503 that says nothing about the rules', async () => {
    const c = await setup('', [{ id: 'a' }], 'idle_timeout: 10s, ignore: [{ user_agent: "Uptime-Kuma" }]')
    try {
      const res = await c.auth('a.example.com', { 'user-agent': 'Uptime-Kuma/1.23' })
      assert.equal(res.statusCode, 503)
      assert.ok(res.headers['retry-after'])
      noInternals(res.body, 'the ignored answer')
    } finally {
      await c.close()
    }
  })
})

describe('Retry-After of a max_awake refusal', () => {
  it('is the least time before an awake backend could be evicted, within [1, 60] s', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'b' }, { id: 'a' }], 'idle_timeout: 30s, wake_timeout: 2s')
    try {
      assert.equal((await c.auth('b.example.com')).statusCode, 200) // no ticket: b may have it in flight for idle_timeout
      c.clock.now += 12_000
      let res = await c.auth('a.example.com')
      assert.equal(res.statusCode, 503)
      assert.equal(res.headers['retry-after'], '18', 'b may be evicted idle_timeout (30 s) after its last request without a ticket')
      // In flight: it may end any moment, and be evicted min(idle_timeout, 5 s) after.
      const b = c.registry.get('memory:b')!
      b.started(true)
      res = await c.auth('a.example.com')
      assert.equal(res.headers['retry-after'], '18')
      c.clock.now += 17_000
      res = await c.auth('a.example.com')
      assert.equal(res.headers['retry-after'], '5', 'a request in flight: at least the eviction grace')
    } finally {
      await c.close()
    }
  })

  it('an awake backend inside awake_during: the time until its window ends', async () => {
    // wall clock Sun 00:30 UTC; b is held awake until 00:31
    const c = await setup('max_awake: 1\n', [{ id: 'b', settings: { awake_during: Schedule.parse('Sun 00:00-00:31 UTC') } }, { id: 'a' }])
    try {
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      c.clock.now += 50_000
      c.clock.wall += 50_000
      const res = await c.auth('a.example.com', API)
      assert.equal(res.statusCode, 503)
      assert.equal(res.headers['retry-after'], '10', 'the window ends in 10 s, then b may be evicted')
      c.clock.now += 10_000
      c.clock.wall += 10_000
      assert.equal((await c.auth('a.example.com', API)).statusCode, 200, 'b evicted once its window ended')
    } finally {
      await c.close()
    }
  })

  it('an awake backend only a policy ends (always_on) gives the 60 s ceiling', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'b', settings: { always_on: true } }, { id: 'a' }])
    try {
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      const res = await c.auth('a.example.com')
      assert.equal(res.statusCode, 503)
      assert.equal(res.headers['retry-after'], '60')
    } finally {
      await c.close()
    }
  })
})
