/**
 * The operator's view without Caddy: admin API answers and errors, metrics text (checked by the
 * real promtool), the events stream over a real socket, the status page login and CSRF rules,
 * and webhooks against a real loopback receiver.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { createServer, type IncomingMessage } from 'node:http'
import { describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import { parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { LifecycleEvents } from '../../sidecar/core/events.js'
import { Registry } from '../../sidecar/core/registry.js'
import { signBody, Webhooks } from '../../sidecar/ops/webhooks.js'
import { buildApp } from '../../sidecar/server/app.js'
import { type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { promtoolSkip } from '../helpers/prometheus.js'
import { startTestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { testSecret } from '../helpers/secret.js'

const log = pino({ level: 'silent' })
const TOKEN = testSecret()
const BEARER = { authorization: `Bearer ${TOKEN}` }
const upstream = okUpstream()

async function setup(backends: (up: string) => MemoryBackend[], adminToken: string | null = TOKEN) {
  const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n', 'test')
  const provider = new MemoryProvider(backends(upstream.address))
  const registry = new Registry([provider], config, log)
  const app = buildApp(adminToken === null ? {} : { adminToken }, { registry, logger: log })
  await registry.start()
  await app.ready()
  let closing: Promise<void> | undefined
  return {
    provider,
    registry,
    app,
    close: () =>
      (closing ??= (async () => {
        registry.close()
        await app.close()
      })()),
  }
}

const one = (state: MemoryBackend['state'] = 'stopped') => (up: string): MemoryBackend[] => [{ id: 'a', hosts: ['a.example.com'], state, upstreams: [up] }]

describe('admin API', () => {
  it('shows one backend with its last wake, and answers every error as problem+json', async () => {
    const s = await setup(one())
    const get = (url: string, headers: Record<string, string> = BEARER) => s.app.inject({ method: 'GET', url, headers })
    const post = (url: string, headers: Record<string, string> = BEARER) => s.app.inject({ method: 'POST', url, headers })

    const woke = await post('/_relight/admin/backends/memory:a/wake')
    assert.equal(woke.statusCode, 200)
    const b = JSON.parse((await get('/_relight/admin/backends/memory:a')).body)
    assert.equal(b.key, 'memory:a')
    assert.equal(b.provider, 'memory')
    assert.equal(b.phase, 'running')
    assert.ok(Date.parse(b.last_wake_at) > 0)
    assert.equal(typeof b.last_wake_duration_ms, 'number')

    for (const [res, status, code] of [
      [await get('/_relight/admin/backends/memory:nope'), 404, 'RELIGHT_ERR_BACKEND_NOT_FOUND'],
      [await post('/_relight/admin/backends/memory:a/explode'), 404, 'RELIGHT_ERR_NOT_FOUND'],
      [await get('/_relight/admin/nothing-here'), 404, 'RELIGHT_ERR_NOT_FOUND'],
      [await get('/_relight/admin/backends', {}), 401, 'RELIGHT_ERR_UNAUTHORIZED'],
    ] as const) {
      assert.equal(res.statusCode, status, res.body)
      assert.match(String(res.headers['content-type']), /^application\/problem\+json/)
      assert.equal(JSON.parse(res.body).code, code)
    }
    await s.close()
  })

  it('refuses a sleep with a request in flight, says why (409, reason inflight: 1), and remembers it', async () => {
    const s = await setup(one('running'))
    s.registry.get('memory:a')?.started(true)
    const res = await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/sleep', headers: BEARER })
    assert.equal(res.statusCode, 409)
    const problem = JSON.parse(res.body)
    assert.equal(problem.code, 'RELIGHT_ERR_SLEEP_REFUSED')
    assert.equal(problem.reason, 'inflight: 1')
    const b = JSON.parse((await s.app.inject({ method: 'GET', url: '/_relight/admin/backends/memory:a', headers: BEARER })).body)
    assert.equal(b.phase, 'running')
    assert.equal(b.last_sleep_refused.reason, 'inflight: 1')
    s.registry.get('memory:a')?.finished()
    const slept = await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/sleep', headers: BEARER })
    assert.equal(slept.statusCode, 200)
    assert.equal(JSON.parse(slept.body).phase, 'asleep')
    assert.ok(JSON.parse(slept.body).last_sleep_at)
    await s.close()
  })

  it('records the last error of a failed wake', async () => {
    const s = await setup(one())
    s.provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'engine said no')
    const res = await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/wake', headers: BEARER })
    assert.equal(res.statusCode, 502)
    const b = JSON.parse((await s.app.inject({ method: 'GET', url: '/_relight/admin/backends/memory:a', headers: BEARER })).body)
    assert.deepEqual({ op: b.last_error.op, code: b.last_error.code, reason: b.last_error.reason }, { op: 'wake', code: 'RELIGHT_ERR_PROVIDER_FAILED', reason: 'engine said no' })
    await s.close()
  })

  it('keeps healthz counts equal to the registry after a backend arrives or leaves by event', async () => {
    const s = await setup(one('running'))
    const health = async () => JSON.parse((await s.app.inject({ method: 'GET', url: '/_relight/healthz' })).body)
    s.provider.put({ id: 'b', hosts: ['b.example.com'], state: 'running', upstreams: [upstream.address] })
    let h = await health()
    assert.equal(h.backends, 2)
    assert.equal(h.providers.memory.backends, 2)
    s.provider.emit({ type: 'remove', id: 'a' })
    h = await health()
    assert.equal(h.backends, 1)
    assert.equal(h.providers.memory.backends, 1)
    await s.close()
  })

  it("healthz: the shipped snippet's relight (3) and relight_fast (4) are both current, 2 is outdated", async () => {
    const s = await setup(one('running'))
    const health = async () => JSON.parse((await s.app.inject({ method: 'GET', url: '/_relight/healthz' })).body)
    const call = (snippet: string) =>
      s.app.inject({ url: '/_relight/auth', headers: { host: 'a.example.com', 'x-relight-snippet': snippet, 'x-relight-request': 'GET /', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/' } })
    let h = await health()
    assert.deepEqual([h.snippet, h.snippet_current, h.snippet_outdated], [null, '4', false])
    for (const [snippet, outdated] of [['4', false], ['3', false], ['2', true]] as const) {
      assert.equal((await call(snippet)).statusCode, 200)
      h = await health()
      assert.deepEqual([h.snippet, h.snippet_outdated], [snippet, outdated], `after a call from snippet ${snippet}`)
    }
    await s.close()
  })

  it('serves an OpenAPI description built from the route schemas', async () => {
    const s = await setup(one())
    const res = await s.app.inject({ method: 'GET', url: '/_relight/admin/openapi.json', headers: BEARER })
    assert.equal(res.statusCode, 200)
    const doc = JSON.parse(res.body)
    assert.equal(doc.openapi, '3.1.0')
    for (const [path, method] of [
      ['/_relight/admin/backends', 'get'],
      ['/_relight/admin/backends/{key}', 'get'],
      ['/_relight/admin/backends/{key}/wake', 'post'],
      ['/_relight/admin/backends/{key}/sleep', 'post'],
      ['/_relight/admin/events', 'get'],
      ['/_relight/metrics', 'get'],
      ['/_relight/status/login', 'post'],
    ] as const) {
      assert.ok(doc.paths[path]?.[method]?.summary, `${method} ${path} documented`)
    }
    assert.equal(doc.paths['/_relight/admin/backends/{key}'].get.parameters[0].name, 'key')
    assert.ok(doc.paths['/_relight/admin/backends/{key}/sleep'].post.responses['409'])
    await s.close()
  })
})

describe('metrics', () => {
  it('needs the bearer token, is absent without admin.token, and passes promtool check metrics', async (t) => {
    const s = await setup(one())
    assert.equal((await s.app.inject({ method: 'GET', url: '/_relight/metrics' })).statusCode, 401)
    await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/wake', headers: BEARER })
    await s.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com' } })
    await s.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'nobody.example.com' } })
    const res = await s.app.inject({ method: 'GET', url: '/_relight/metrics', headers: BEARER })
    assert.equal(res.statusCode, 200)
    assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/)
    const text = res.body
    assert.match(text, /^relight_wakes_total\{provider="memory",backend="a",result="ready"\} 1$/m)
    assert.match(text, /^relight_wake_duration_seconds_count\{provider="memory"\} 1$/m)
    assert.match(text, /^relight_backends\{provider="memory",state="running"\} 1$/m)
    assert.match(text, /^relight_auth_requests_total\{outcome="routed"\} 1$/m)
    assert.match(text, /^relight_auth_requests_total\{outcome="host_unknown"\} 1$/m)
    assert.match(text, /^relight_provider_up\{provider="memory"\} 1$/m)
    assert.match(text, /^relight_inflight_requests\{provider="memory",backend="a"\} 0$/m)
    assert.match(text, /^process_cpu_seconds_total /m)
    const skip = promtoolSkip()
    if (skip) t.diagnostic(skip)
    else {
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' })
      assert.equal(check.status, 0, `promtool check metrics:\n${check.stdout}${check.stderr}`)
    }
    await s.close()
    const plain = await setup(one(), null)
    assert.equal((await plain.app.inject({ method: 'GET', url: '/_relight/metrics', headers: BEARER })).statusCode, 404)
    await plain.close()
  })

  it('drops a removed backend\'s series', async () => {
    const s = await setup(one())
    await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/wake', headers: BEARER })
    s.provider.emit({ type: 'remove', id: 'a' })
    const text = (await s.app.inject({ method: 'GET', url: '/_relight/metrics', headers: BEARER })).body
    assert.doesNotMatch(text, /backend="a"/)
    await s.close()
  })
})

/** Read an SSE stream until `want` events arrived; returns them parsed. */
async function readEvents(url: string, headers: Record<string, string>, want: number, trigger?: () => Promise<unknown>) {
  const controller = new AbortController()
  // A stream that never brings `want` events fails the test instead of hanging it.
  const timer = setTimeout(() => controller.abort(new Error(`${want} events did not arrive within 10 s`)), 10_000)
  const res = await request(url, { headers: { ...BEARER, ...headers }, signal: controller.signal })
  assert.equal(res.statusCode, 200)
  assert.match(String(res.headers['content-type']), /^text\/event-stream/)
  const events: { id?: string; event?: string; data?: string }[] = []
  let buf = ''
  const triggered = trigger?.()
  for await (const chunk of res.body) {
    buf += chunk.toString()
    let end: number
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, end)
      buf = buf.slice(end + 2)
      const e: { id?: string; event?: string; data?: string } = {}
      for (const line of block.split('\n')) {
        const [field, ...rest] = line.split(': ')
        if (field === 'id' || field === 'event' || field === 'data') e[field] = rest.join(': ')
      }
      if (e.event) events.push(e)
    }
    if (events.length >= want) break
  }
  clearTimeout(timer)
  controller.abort()
  await triggered
  return events
}

describe('events stream', () => {
  it('streams lifecycle events with ids and replays what a client missed after Last-Event-ID', async (t) => {
    const s = await setup(one())
    t.after(() => s.close()) // also when an assertion fails: an open stream would keep the run alive
    await s.app.listen({ port: 0, host: '127.0.0.1' })
    const addr = s.app.server.address()
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/_relight/admin/events`
    const unauthorised = await request(url)
    assert.equal(unauthorised.statusCode, 401)
    await unauthorised.body.dump()

    const live = await readEvents(url, {}, 2, () => s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/wake', headers: BEARER }))
    assert.deepEqual(live.map((e) => e.event).slice(0, 2), ['wake.started', 'wake.ready'])
    const ready = JSON.parse(live[1]?.data ?? '{}')
    assert.equal(ready.key, 'memory:a')
    assert.equal(String(ready.id), live[1]?.id)

    // Missed while disconnected: a sleep. Reconnecting with the last id replays just that.
    const sleep = await s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/sleep', headers: BEARER })
    assert.equal(sleep.statusCode, 200)
    const replay = await readEvents(url, { 'last-event-id': String(live[1]?.id) }, 2)
    assert.deepEqual(replay.map((e) => e.event), ['backend.state', 'sleep.done'])
    assert.equal(Number(replay[0]?.id), Number(live[1]?.id) + 1)

    // An id from an earlier run (ids restart at 1): everything buffered, after a reset.
    const fresh = await readEvents(url, { 'last-event-id': '999999' }, 2)
    assert.deepEqual(fresh.map((e) => e.event).slice(0, 2), ['reset', 'backend.added'])

    // Shutdown ends open streams instead of waiting for their clients.
    const open = await request(url, { headers: BEARER })
    let ended = false
    const drained = open.body.dump().then(() => (ended = true))
    await s.close()
    await drained
    assert.ok(ended)
  })
})

describe('status page access', () => {
  it('answers the browser\'s /favicon.ico (204, cached) and names an inline icon, so opening the page logs no 404', async () => {
    const s = await setup(one())
    const icon = await s.app.inject({ method: 'GET', url: '/favicon.ico' })
    assert.equal(icon.statusCode, 204)
    assert.match(String(icon.headers['cache-control']), /max-age=\d+/)
    const login = await s.app.inject({ method: 'GET', url: '/_relight/status' })
    assert.match(login.body, /<link rel="icon" href="data:image\/svg\+xml,/)
    assert.match(String(login.headers['content-security-policy']), /img-src 'self' data:/, 'the CSP lets the inline icon load')
    await s.close()
  })

  it('logs in with a form POST (HttpOnly SameSite=Strict cookie), and changes state only with the CSRF token from the same origin', async () => {
    const s = await setup(one())
    const login = await s.app.inject({ method: 'GET', url: '/_relight/status' })
    assert.equal(login.statusCode, 200)
    assert.match(login.body, /<form class="login" method="post" action="\/_relight\/status\/login">/)
    assert.match(String(login.headers['content-security-policy']), /default-src 'none'/)

    const form = (token: string) => s.app.inject({ method: 'POST', url: '/_relight/status/login', headers: { 'content-type': 'application/x-www-form-urlencoded' }, payload: `token=${encodeURIComponent(token)}` })
    assert.equal((await form('wrong-token-0123456789')).statusCode, 401)
    const ok = await form(TOKEN)
    assert.equal(ok.statusCode, 303)
    assert.equal(ok.headers.location, '/_relight/status')
    const setCookie = String(ok.headers['set-cookie'])
    assert.match(setCookie, /^relight_session=[A-Za-z0-9_-]{43}; Path=\/_relight; HttpOnly; SameSite=Strict; Max-Age=\d+$/)
    assert.ok(!setCookie.includes(TOKEN), 'the cookie is not the token')
    const cookie = setCookie.split(';')[0] as string

    const page = await s.app.inject({ method: 'GET', url: '/_relight/status', headers: { cookie } })
    assert.match(page.body, /new EventSource\(API \+ "\/events"\)/)
    const csrf = /const CSRF = "([^"]+)"/.exec(page.body)?.[1]
    assert.ok(csrf)
    assert.ok(!page.body.includes(TOKEN))

    assert.equal((await s.app.inject({ method: 'GET', url: '/_relight/admin/backends', headers: { cookie } })).statusCode, 200, 'reads with the cookie')
    const wake = (headers: Record<string, string>) => s.app.inject({ method: 'POST', url: '/_relight/admin/backends/memory:a/wake', headers: { cookie, host: 'sidecar.test', ...headers } })
    assert.equal((await wake({})).statusCode, 401, 'no CSRF token')
    assert.equal((await wake({ 'x-relight-csrf': 'forged' })).statusCode, 401, 'wrong CSRF token')
    assert.equal((await wake({ 'x-relight-csrf': csrf, origin: 'https://evil.example' })).statusCode, 401, 'cross-origin')
    assert.equal((await wake({ 'x-relight-csrf': csrf, origin: 'http://sidecar.test' })).statusCode, 200)
    assert.equal((await s.app.inject({ method: 'GET', url: '/_relight/metrics', headers: { cookie } })).statusCode, 401, 'metrics take the bearer token only')

    const out = await s.app.inject({ method: 'POST', url: '/_relight/status/logout', headers: { cookie, 'x-relight-csrf': csrf } })
    assert.equal(out.statusCode, 204)
    assert.equal((await s.app.inject({ method: 'GET', url: '/_relight/admin/backends', headers: { cookie } })).statusCode, 401, 'the session is gone')
    await s.close()
  })
})

describe('webhooks', () => {
  it('POSTs signed JSON to a real receiver off the emitting stack, retries after a failure, and counts what it lost', async (t) => {
    const secret = testSecret()
    const received: { headers: IncomingMessage['headers']; body: string }[] = []
    let failFirst = true
    const receiver = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        if (failFirst) {
          failFirst = false
          res.writeHead(500).end()
          return
        }
        received.push({ headers: req.headers, body })
        res.writeHead(204).end()
      })
    })
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
    t.after(() => new Promise<void>((r) => receiver.close(() => r())))
    const port = (receiver.address() as { port: number }).port
    const events = new LifecycleEvents()
    const config = parseConfig(
      `webhooks:\n  - { url: "http://127.0.0.1:${port}/hook", events: ["wake.*"], secret: ${secret}, attempts: 3 }\n  - { url: "http://127.0.0.1:1/dead", events: ["*"], secret: ${secret}, attempts: 2, timeout: 500ms }\n`,
      'test',
    )
    const hooks = new Webhooks(config.webhooks, events, log, { backoffMs: 20 })
    t.after(() => hooks.close())
    let returned = false
    events.subscribe(() => assert.equal(returned, false, 'delivery never runs on the emitting stack'))
    events.emit({ type: 'provider.up', provider: 'memory', backends: 1 }) // not matched by wake.*
    events.emit({ type: 'wake.ready', key: 'memory:a', name: 'a', provider: 'memory', from: 'stopped', duration_ms: 12 })
    returned = true
    // delivered counts once the sender has read the 204, which can be after the receiver pushed the body
    await until(() => received.length === 1 && hooks.stats()[0]?.delivered === 1 && hooks.stats()[1]?.failed === 2, 'one delivery and two losses')
    assert.equal(received.length, 1)
    const [got] = received
    assert.ok(got)
    assert.equal(got.headers['x-relight-event'], 'wake.ready')
    const signature = String(got.headers['x-relight-signature'])
    assert.equal(signature, signBody(secret, got.body, Number(/^t=(\d+),/.exec(signature)?.[1])))
    const body = JSON.parse(got.body)
    assert.equal(body.type, 'wake.ready')
    assert.equal(body.key, 'memory:a')
    assert.match(String(got.headers['x-relight-delivery']), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, 'a random UUID')
    assert.deepEqual(hooks.stats()[0], { delivered: 1, failed: 0, dropped: 0, attemptFailures: 1 })
    assert.equal(hooks.stats()[1]?.failed, 2, 'both events lost on the dead receiver')
    assert.equal(hooks.stats()[1]?.attemptFailures, 4)
  })

  it('are wired into a running sidecar: a wake reaches the receiver and the results show in /_relight/metrics', async () => {
    const secret = testSecret()
    const bodies: string[] = []
    const receiver = createServer((req, res) => {
      let body = ''
      req.on('data', (c: Buffer) => (body += c.toString()))
      req.on('end', () => {
        const signature = String(req.headers['x-relight-signature'])
        if (signature === signBody(secret, body, Number(/^t=(\d+),/.exec(signature)?.[1]))) bodies.push(body)
        res.writeHead(req.url === '/ok' ? 200 : 503).end()
      })
    })
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r))
    const port = (receiver.address() as { port: number }).port
    const provider = new MemoryProvider([{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [upstream.address] }])
    const sc = await startTestSidecar(
      `admin: { token: ${TOKEN} }\nwebhooks:\n  - { url: "http://127.0.0.1:${port}/ok", events: [wake.ready], secret: ${secret} }\n  - { url: "http://127.0.0.1:${port}/down", events: [wake.ready], secret: ${secret}, attempts: 1 }\n`,
      { providers: [provider], accessLog: false },
    )
    try {
      const woke = await request(`${sc.url}/_relight/admin/backends/memory:a/wake`, { method: 'POST', headers: BEARER })
      assert.equal(woke.statusCode, 200)
      await woke.body.dump()
      const text = (await until(async () => {
        const body = await (await request(`${sc.url}/_relight/metrics`, { headers: BEARER })).body.text()
        return body.includes('relight_webhook_deliveries_total{webhook="1",result="failed"} 1') ? body : undefined
      }, 'both webhook results in the metrics')) as string
      assert.match(text, /^relight_webhook_deliveries_total\{webhook="0",result="delivered"\} 1$/m)
      assert.match(text, /^relight_webhook_deliveries_total\{webhook="1",result="failed"\} 1$/m)
      assert.match(text, /^relight_webhook_attempt_failures_total\{webhook="1"\} 1$/m)
      assert.equal(JSON.parse(bodies[0] ?? '{}').type, 'wake.ready')
    } finally {
      await sc.close()
      await new Promise<void>((r) => receiver.close(() => r()))
    }
  })

  it('rejects a webhook without events or with an unknown event type, naming the key', () => {
    assert.throws(() => parseConfig(`webhooks:\n  - { url: "http://127.0.0.1:9/x", events: [wake.sometimes], secret: ${testSecret()} }\n`, 'test'), /webhooks\[0\]\.events\[0\]: expected an event type/)
  })
})
