import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { request } from 'undici'
import { parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import type { Backend } from '../../sidecar/core/backend.js'
import { Registry } from '../../sidecar/core/registry.js'
import { errorPage } from '../../sidecar/pages/html.js'
import { TicketLedger } from '../../sidecar/core/tickets.js'
import { buildApp } from '../../sidecar/server/app.js'
import { runProviderContract } from '../contract/provider-contract.js'
import { deferred, type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { until } from '../helpers/wait.js'
import { okUpstream } from '../helpers/ok-upstream.js'

const log = pino({ level: 'silent' })
const upstream = okUpstream()

interface Core {
  provider: MemoryProvider
  registry: Registry
  app: ReturnType<typeof buildApp>
  clock: { now: number }
  /** The in-flight ledger; nothing counts until a test opens an access-log connection on it. */
  tickets: TicketLedger<Backend>
  close(): Promise<void>
}

async function core(
  backends: (up: string) => MemoryBackend[],
  yaml = '',
  providerOptions: ConstructorParameters<typeof MemoryProvider>[1] = {},
  appOptions: Parameters<typeof buildApp>[0] = {},
): Promise<Core> {
  const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n${yaml}`, 'test')
  const provider = new MemoryProvider(backends(upstream.address), providerOptions)
  const clock = { now: 1_000_000 }
  const registry = new Registry([provider], config, log, () => clock.now)
  await registry.start()
  const tickets = new TicketLedger<Backend>({ now: () => clock.now })
  const app = buildApp(appOptions, { registry, logger: log, tickets })
  await app.ready()
  return {
    provider,
    registry,
    app,
    clock,
    tickets,
    close: async () => {
      registry.close()
      await app.close()
    },
  }
}

const auth = (c: Core, host: string, headers: Record<string, string> = {}) => c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host, ...headers } })

describe('/_relight/auth', () => {
  it('answers an awake backend with its upstream and calls no provider', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    const lists = c.provider.calls.list
    const res = await auth(c, 'A.Example.com.:443')
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-relight-upstream'], upstream.address)
    assert.equal(c.provider.calls.wake, 0)
    assert.equal(c.provider.calls.list, lists)
    await c.close()
  })

  it('answers 404 for an unknown host and 400 for a malformed one, with no provider call', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    const lists = c.provider.calls.list
    const unknown = await auth(c, 'nope.example.com')
    assert.equal(unknown.statusCode, 404)
    assert.match(String(unknown.headers['content-type']), /^application\/problem\+json/)
    assert.equal(unknown.headers['x-relight-reply'], 'RELIGHT_ERR_HOST_UNKNOWN')
    assert.equal(JSON.parse(unknown.body).code, 'RELIGHT_ERR_HOST_UNKNOWN')
    for (const bad of ['bad_host!', 'a..b', `${'x'.repeat(64)}.com`, '[::1]:80', '<script>', 'a.b:99x']) {
      const res = await auth(c, bad)
      assert.equal(res.statusCode, 400, bad)
      assert.ok(!res.body.includes('<script>'))
    }
    assert.equal(c.provider.calls.list, lists)
    assert.equal(c.provider.calls.wake, 0)
    await c.close()
  })

  it('wakes a sleeping backend once for 1,000 concurrent requests and answers them all', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const pending = Array.from({ length: 1000 }, () => auth(c, 'a.example.com'))
    setImmediate(() => hold.resolve())
    const answers = await Promise.all(pending)
    assert.equal(c.provider.calls.wake, 1)
    assert.equal(answers.filter((r) => r.statusCode === 200 && r.headers['x-relight-upstream'] === upstream.address).length, 1000)
    await c.close()
  })

  it('routes to the upstream wake() returns, with no event from the provider', async () => {
    // A stopped backend has no address yet; the engine hands one out when it starts.
    const c = await core(() => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [] }])
    c.provider.onWake = (b) => {
      b.upstreams = [upstream.address] // set without put(): no upsert reaches the registry
    }
    const res = await auth(c, 'a.example.com')
    assert.equal(res.statusCode, 200)
    assert.equal(res.headers['x-relight-upstream'], upstream.address)
    assert.equal(c.registry.get('memory:a')?.info.upstreams[0], upstream.address)
    await c.close()
  })

  it('answers 504 when the backend is not ready within wake_timeout', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up], settings: { wake_timeout: 150 } }])
    c.provider.holdWake = new Promise(() => undefined)
    const res = await auth(c, 'a.example.com')
    assert.equal(res.statusCode, 504)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_WAKE_TIMEOUT')
    await c.close()
  })

  it('maps provider failures to 503 or 502 with Retry-After, and an HTML page for browsers', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    c.provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'socket missing')
    const down = await auth(c, 'a.example.com')
    assert.equal(down.statusCode, 503)
    assert.equal(down.headers['retry-after'], '5')
    c.provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'engine said no: /var/run/secret.sock')
    const refused = await auth(c, 'a.example.com', { accept: 'text/html,application/xhtml+xml' })
    assert.equal(refused.statusCode, 502)
    assert.match(String(refused.headers['content-type']), /text\/html/)
    assert.ok(!refused.body.includes('secret.sock'), 'engine internals stay in the log')
    assert.match(refused.body, /could not wake it/)
    const ok = await auth(c, 'a.example.com')
    assert.equal(ok.statusCode, 200, 'the next request wakes again')
    await c.close()
  })

  it('fails a wake at once with 502 when the backend exits while starting', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const pending = auth(c, 'a.example.com')
    await new Promise((r) => setImmediate(r))
    c.provider.emit({ type: 'state', id: 'a', state: 'stopped', reason: 'exited with code 3' })
    const res = await pending
    assert.equal(res.statusCode, 502)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_BACKEND_EXITED')
    // the reason goes to the log (the wake.failed line), not to the client
    assert.doesNotMatch(res.body, /exited with code/)
    assert.match(c.registry.get('memory:a')?.lastError?.message ?? '', /exited with code 3/)
    hold.resolve()
    await c.close()
  })

  it('escapes what it shows browsers', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    c.provider.holdWake = new Promise(() => undefined)
    const pending = auth(c, 'a.example.com', { accept: 'text/html' })
    await until(() => c.provider.calls.wake === 1, 'the wake')
    c.provider.emit({ type: 'state', id: 'a', state: 'stopped', reason: '<script>alert(1)</script>' })
    const res = await pending
    assert.equal(res.statusCode, 502)
    assert.ok(!res.body.includes('<script>alert'), 'no markup from a backend reaches the page')
    assert.ok(!res.body.includes('alert(1)'), "a backend's words do not reach the page at all, escaped or not (the log has them)")
    // what the page does show is escaped
    const page = errorPage(502, 'T<b>', 'D<i>', 5, 'h<u>')
    assert.ok(!/<[biu]>/.test(page) && page.includes('T&lt;b&gt;') && page.includes('D&lt;i&gt;') && page.includes('h&lt;u&gt;'), page)
    await c.close()
  })

  it('shows browsers a waiting page after waiting_page_after while the wake goes on; API clients wait', async () => {
    const c = await core((up) => [
      { id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up], settings: { strategy: 'waiting_page', waiting_page_after: 50 } },
    ])
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const api = auth(c, 'a.example.com', { accept: 'application/json' })
    const page = await auth(c, 'a.example.com', { accept: 'text/html' })
    assert.equal(page.statusCode, 503)
    assert.equal(page.headers['retry-after'], '2')
    assert.equal(page.headers['x-relight-reply'], 'waiting-page')
    assert.match(page.body, /http-equiv="refresh"/)
    hold.resolve()
    assert.equal((await api).statusCode, 200)
    const again = await auth(c, 'a.example.com', { accept: 'text/html' })
    assert.equal(again.statusCode, 200)
    assert.equal(c.provider.calls.wake, 1)
    await c.close()
  })

  it('routes by precedence: exact, then wildcard, then first label only under base_domains', async () => {
    const c = await core(
      (up) => [
        { id: 'exact', hosts: ['app.apps.example.com'], state: 'running', upstreams: ['127.0.0.1:1'] },
        { id: 'wild', hosts: ['*.apps.example.com'], state: 'running', upstreams: ['127.0.0.1:2'] },
        { id: 'label', hosts: ['myapp'], state: 'running', upstreams: ['127.0.0.1:3'] },
        { id: 'plain', hosts: ['other.test'], state: 'running', upstreams: [up] },
      ],
      'base_domains: [apps.example.com, Preview.Example.org.]\n',
    )
    const up = async (host: string) => (await auth(c, host)).headers['x-relight-upstream']
    assert.equal(await up('app.apps.example.com'), '127.0.0.1:1')
    assert.equal(await up('myapp.apps.example.com'), '127.0.0.1:2', 'wildcard beats first label')
    assert.equal(await up('deep.x.apps.example.com'), '127.0.0.1:2')
    assert.equal(await up('myapp.preview.example.org'), '127.0.0.1:3')
    assert.equal((await auth(c, 'myapp.attacker.tld')).statusCode, 404, 'no first-label match outside base_domains')
    assert.equal((await auth(c, 'x.myapp.preview.example.org')).statusCode, 404, 'first label only directly under a base domain')
    await c.close()
  })
})

describe('/_relight/ask', () => {
  it('allows known names, refuses unknown and foreign first labels, rejects bad input', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['shop.example.com', 'myapp'], state: 'stopped', upstreams: [up] }], 'base_domains: [apps.example.com]\n')
    const ask = (q: string) => c.app.inject({ method: 'GET', url: `/_relight/ask${q}` })
    assert.equal((await ask('?domain=shop.example.com')).statusCode, 200)
    assert.equal((await ask('?domain=myapp.apps.example.com')).statusCode, 200)
    assert.equal((await ask('?domain=myapp.attacker.tld')).statusCode, 404)
    assert.equal((await ask('?domain=random.example.com')).statusCode, 404)
    assert.equal((await ask('')).statusCode, 400)
    assert.equal((await ask('?domain=bad%20name')).statusCode, 400)
    assert.equal(c.provider.calls.wake, 0, 'ask never wakes')
    await c.close()
  })
})

describe('state machine', () => {
  it('a request during a sleep waits for it, then wakes the backend', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    const hold = deferred()
    c.provider.holdSleep = hold.promise
    c.clock.now += 20_000
    const sweeping = c.registry.sweep()
    await new Promise((r) => setImmediate(r))
    assert.equal(c.registry.get('memory:a')?.phase, 'sleeping')
    const pending = auth(c, 'a.example.com')
    await new Promise((r) => setImmediate(r))
    assert.equal(c.provider.calls.wake, 0, 'no wake while the sleep runs')
    hold.resolve()
    c.provider.holdSleep = undefined
    assert.deepEqual(await sweeping, [true])
    const res = await pending
    assert.equal(res.statusCode, 200)
    assert.deepEqual(c.provider.calls.sleep, ['stop'])
    assert.equal(c.provider.calls.wake, 1)
    await c.close()
  })

  it('a list that started before a sleep finished cannot undo the sleep', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    const hold = deferred()
    c.provider.holdList = hold.promise
    const listing = c.registry.resync(c.provider) // snapshot says running, answer held
    c.clock.now += 20_000
    assert.deepEqual(await c.registry.sweep(), [true])
    c.clock.now += 1
    hold.resolve()
    await listing
    const b = c.registry.get('memory:a')
    assert.equal(b?.phase, 'asleep', 'the stale "running" must not bring it back')
    assert.equal(b?.info.state, 'stopped')
    await c.close()
  })

  it('counts wake_timeout from the request, including time queued behind a sleep', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up], settings: { wake_timeout: 150 } }])
    c.provider.holdSleep = new Promise(() => undefined) // a stop that never finishes
    c.clock.now += 20_000
    void c.registry.sweep()
    await new Promise((r) => setImmediate(r))
    const res = await auth(c, 'a.example.com')
    assert.equal(res.statusCode, 504)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_WAKE_TIMEOUT')
    await c.close()
  })

  it('an idle tick during a wake does not put the backend to sleep', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const pending = auth(c, 'a.example.com')
    await new Promise((r) => setImmediate(r))
    c.clock.now += 60_000
    await c.registry.sweep()
    hold.resolve()
    assert.equal((await pending).statusCode, 200)
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, [])
    await c.close()
  })

  it('never sleeps a backend with a request in flight; sleeps idle_timeout after it finishes', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    c.tickets.connectionOpened({ open: true, proven: false })
    const res = await auth(c, 'a.example.com', { 'x-relight-snippet': '2' })
    assert.equal(res.statusCode, 200)
    const backend = c.registry.get('memory:a')
    assert.equal(backend?.inflight, 1)
    c.clock.now += 3_600_000
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, [], 'a long stream keeps it awake')
    assert.equal(c.tickets.finish(String(res.headers['x-relight-ticket'])), true)
    assert.equal(backend?.inflight, 0)
    c.clock.now += 9_000
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, [], 'not before idle_timeout after the finish')
    c.clock.now += 1_000
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, ['stop'])
    await c.close()
  })

  it('falls back to fallback_sleep when the preferred mode fails, and counts it', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up], settings: { sleep: 'stop', fallback_sleep: 'pause' } }])
    c.provider.failSleep.set('stop', new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'criu says no'))
    c.clock.now += 20_000
    await c.registry.sweep()
    const b = c.registry.get('memory:a')
    assert.deepEqual(c.provider.calls.sleep, ['stop', 'pause'])
    assert.equal(b?.info.state, 'paused')
    assert.equal(b?.counters.fallbackSleeps, 1)
    await c.close()
  })

  it('replaces a sleep mode the provider lacks and floors idle_timeout at min_idle_timeout', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up], settings: { sleep: 'checkpoint', idle_timeout: 10 } }])
    const b = c.registry.get('memory:a')
    assert.equal(b?.settings.sleep, 'pause')
    assert.equal(b?.settings.idle_timeout, 1000)
    await c.close()
  })

  it('sleeps a group only when every member is idle, and wakes members together', async () => {
    const c = await core((up) => [
      { id: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [up], group: 'shop' },
      { id: 'api', hosts: ['api.example.com'], state: 'running', upstreams: [up], group: 'shop' },
    ])
    c.clock.now += 20_000
    await auth(c, 'api.example.com') // api active now, web idle
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, [], 'web waits for api')
    c.clock.now += 20_000
    await c.registry.sweep()
    assert.deepEqual(c.provider.calls.sleep, ['stop', 'stop'])
    assert.equal((await auth(c, 'web.example.com')).statusCode, 200)
    await new Promise((r) => setImmediate(r))
    assert.equal(c.provider.calls.wake, 2, 'api woke with web')
    await c.close()
  })

  it('drops a backend the provider no longer lists and finds one that appears by event', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    c.provider.backends.delete('a')
    await c.registry.resync(c.provider)
    assert.equal((await auth(c, 'a.example.com')).statusCode, 404)
    c.provider.put({ id: 'b', hosts: ['b.example.com'], state: 'running', upstreams: [upstream.address] })
    await new Promise((r) => queueMicrotask(() => r(undefined)))
    assert.equal((await auth(c, 'b.example.com')).statusCode, 200)
    await c.close()
  })

  it('keys backends by provider id and re-lists each provider at its own resync interval', async () => {
    const config = parseConfig('resync_interval: 0s\n', 'test')
    const fast = new MemoryProvider([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }], { id: 'fast', resyncInterval: 20 })
    const still = new MemoryProvider([{ id: 'a', hosts: ['b.example.com'], state: 'running', upstreams: [upstream.address] }], { id: 'still' })
    const thirdList = deferred()
    const list = fast.list.bind(fast)
    fast.list = async (signal) => {
      const out = await list(signal)
      if (fast.calls.list === 3) thirdList.resolve()
      return out
    }
    const registry = new Registry([fast, still], config, log)
    await registry.start()
    assert.deepEqual([...registry.all()].map((b) => b.key).sort(), ['fast:a', 'still:a'])
    assert.deepEqual([...registry.status.keys()].sort(), ['fast', 'still'])
    await thirdList.promise // the timer of `fast` alone
    assert.equal(still.calls.list, 1)
    registry.close()
    assert.throws(() => new Registry([fast, new MemoryProvider([], { id: 'fast' })], config, log), /two providers share the id "fast"/)
  })

  it('keeps the host index across a resync that changes no host, and rebuilds it when hosts change', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    const before = c.registry.index
    const stateOnly = c.provider.backends.get('a')
    if (stateOnly) stateOnly.state = 'paused'
    await c.registry.resync(c.provider)
    assert.equal(c.registry.index, before, 'same index object: warm raw-Host cache kept')
    assert.equal(c.registry.get('memory:a')?.phase, 'asleep', 'the state change still applies')
    c.provider.backends.set('a', { id: 'a', hosts: ['a.example.com', 'www.a.example.com'], state: 'running', upstreams: [upstream.address] })
    await c.registry.resync(c.provider)
    assert.notEqual(c.registry.index, before)
    assert.equal((await auth(c, 'www.a.example.com')).statusCode, 200)
    await c.close()
  })

  it('keeps known backends when a provider list fails', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    c.provider.failList = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'down')
    await c.registry.resync(c.provider)
    assert.equal((await auth(c, 'a.example.com')).statusCode, 200)
    const health = await c.app.inject({ method: 'GET', url: '/_relight/healthz' })
    assert.equal(JSON.parse(health.body).status, 'degraded')
    await c.close()
  })
})

describe('a client that leaves', () => {
  it('does not cancel a wake others wait on', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }])
    await c.app.listen({ port: 0, host: '127.0.0.1' })
    const addr = c.app.server.address()
    const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}/_relight/auth`
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const leaving = new AbortController()
    const first = request(url, { headers: { host: 'a.example.com' }, signal: leaving.signal }).catch((e: unknown) => e)
    const second = request(url, { headers: { host: 'a.example.com' } })
    await until(() => c.provider.calls.wake === 1, 'the wake to start')
    leaving.abort()
    await first
    hold.resolve()
    const res = await second
    assert.equal(res.statusCode, 200)
    await res.body.dump()
    assert.equal(c.registry.get('memory:a')?.phase, 'running')
    await c.close()
  })
})

runProviderContract('memory (test fake)', {
  make: async () => {
    const provider = new MemoryProvider([{ id: 'm', hosts: ['m.example.com'], state: 'stopped', upstreams: [upstream.address] }])
    return { provider, id: 'm', cleanup: async () => undefined }
  },
})

describe('concurrency caps', () => {
  it('runs at most max_concurrent_wakes provider wakes at once', async () => {
    const c = await core(
      (up) => Array.from({ length: 6 }, (_, i) => ({ id: `b${i}`, hosts: [`b${i}.example.com`], state: 'stopped' as const, upstreams: [up] })),
      'max_concurrent_wakes: 2\n',
    )
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const pending = Array.from({ length: 6 }, (_, i) => auth(c, `b${i}.example.com`))
    await until(() => c.provider.calls.wake === 2, 'two wakes to reach the provider')
    await new Promise((r) => setImmediate(r))
    assert.equal(c.provider.calls.wake, 2, 'only two wakes reach the provider while they are held')
    hold.resolve()
    const answers = await Promise.all(pending)
    assert.ok(answers.every((a) => a.statusCode === 200))
    assert.equal(c.provider.calls.wake, 6)
    await c.close()
  })
})

describe('admin API', () => {
  it('needs the token, lists backends, wakes and sleeps one; absent without admin.token', async () => {
    const token = 'admin-token-0123456789'
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }], '', {}, { adminToken: token })
    const call = (method: 'GET' | 'POST', url: string, auth?: string) =>
      c.app.inject({ method, url, headers: auth ? { authorization: auth } : {} })
    assert.equal((await call('GET', '/_relight/admin/backends')).statusCode, 401)
    assert.equal((await call('GET', '/_relight/admin/backends', 'Bearer wrong-token-0123456789')).statusCode, 401)
    const list = await call('GET', '/_relight/admin/backends', `Bearer ${token}`)
    assert.equal(list.statusCode, 200)
    assert.equal(JSON.parse(list.body).backends[0].key, 'memory:a')
    const woke = await call('POST', '/_relight/admin/backends/memory:a/wake', `Bearer ${token}`)
    assert.equal(JSON.parse(woke.body).phase, 'running')
    const slept = await call('POST', '/_relight/admin/backends/memory:a/sleep', `Bearer ${token}`)
    assert.equal(JSON.parse(slept.body).phase, 'asleep')
    assert.equal((await call('POST', '/_relight/admin/backends/memory:nope/wake', `Bearer ${token}`)).statusCode, 404)
    assert.equal((await auth(c, 'a.example.com')).statusCode, 200, 'the auth route has no admin hook')
    await c.close()
    const plain = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }])
    assert.equal((await plain.app.inject({ method: 'GET', url: '/_relight/admin/backends' })).statusCode, 404)
    await plain.close()
  })
})
