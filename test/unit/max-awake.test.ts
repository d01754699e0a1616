/**
 * `max_awake` (issue 26 item 5), against the in-memory provider: the cap holds globally and per
 * provider instance, the least recently active evictable backend is put to sleep first, a busy
 * one is never evicted, groups count as one, and with nothing to evict the wake is refused with
 * RELIGHT_ERR_CAPACITY and Retry-After (browsers on the waiting page see they are queued). The
 * keys are refused with clear errors.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Stamped } from '../../sidecar/core/events.js'
import { Registry } from '../../sidecar/core/registry.js'
import type { Config } from '../../sidecar/config/schema.js'
import { Reloader } from '../../sidecar/reload.js'
import { buildApp } from '../../sidecar/server/app.js'
import { deferred, type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { until } from '../helpers/wait.js'

const log = pino({ level: 'silent' })
const upstream = okUpstream()

const problems = (yaml: string): string[] => {
  try {
    parseConfig(yaml, 't', {})
    return []
  } catch (err) {
    return [...((err as { problems?: string[] }).problems ?? [String(err)])]
  }
}

async function setup(yaml: string, providers: { id: string; backends: string[]; group?: Record<string, string> }[], strategy = 'blocking') {
  const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s, strategy: ${strategy}, waiting_page_after: 0s }\n${yaml}`, 'test')
  const made = providers.map(
    (p) =>
      new MemoryProvider(
        p.backends.map((id): MemoryBackend => ({ id, hosts: [`${id}.example.com`], state: 'stopped', upstreams: [upstream.address], ...(p.group?.[id] ? { group: p.group[id] } : {}) })),
        { id: p.id },
      ),
  )
  const clock = { now: 1_000_000 }
  const registry = new Registry(made, config, log, () => clock.now)
  const events: Stamped[] = []
  registry.events.subscribe((e) => events.push(e))
  await registry.start()
  const http = buildApp({}, { registry, logger: log })
  await http.ready()
  const awake = () => [...registry.all()].filter((b) => b.phase !== 'asleep').map((b) => b.key).sort()
  return {
    registry,
    clock,
    events,
    awake,
    providers: made,
    auth: (host: string, headers: Record<string, string> = {}) => http.inject({ method: 'GET', url: '/_relight/auth', headers: { host, ...headers } }),
    close: async () => {
      registry.close()
      await http.close()
    },
  }
}

describe('max_awake', () => {
  it('global cap 2: the third wake puts the least recently active backend to sleep first', async () => {
    const c = await setup('max_awake: 2\n', [{ id: 'm', backends: ['a', 'b', 'c', 'd'] }])
    try {
      assert.equal((await c.auth('a.example.com')).statusCode, 200)
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('a.example.com')).statusCode, 200) // a is now the more recent
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('c.example.com')).statusCode, 200)
      assert.deepEqual(c.awake(), ['m:a', 'm:c'])
      const evicted = c.events.find((e) => e.type === 'sleep.done')
      assert.ok(evicted?.type === 'sleep.done' && evicted.name === 'b' && evicted.cause === 'evicted', JSON.stringify(evicted))
      assert.match(evicted.reason ?? '', /max_awake 2 \(global\): room for c/)
    } finally {
      await c.close()
    }
  })

  it('a backend with a request in flight is not evicted; with none evictable the wake is refused 503 RELIGHT_ERR_CAPACITY + Retry-After', async () => {
    const c = await setup('max_awake: 2\n', [{ id: 'm', backends: ['a', 'b', 'c'] }])
    try {
      await c.auth('a.example.com')
      await c.auth('b.example.com')
      const a = c.registry.get('m:a')!
      const b = c.registry.get('m:b')!
      a.started(true) // a stream
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('c.example.com')).statusCode, 200)
      assert.deepEqual(c.awake(), ['m:a', 'm:c']) // b went, a stayed (older activity but in flight)
      assert.equal(b.phase, 'asleep')
      c.registry.get('m:c')!.started(true)
      const res = await c.auth('b.example.com')
      assert.equal(res.statusCode, 503)
      assert.equal(res.headers['retry-after'], '5')
      assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_CAPACITY')
      const refused = c.events.filter((e) => e.type === 'wake.refused')
      assert.equal(refused.length, 1)
      assert.ok(refused[0]?.type === 'wake.refused' && refused[0].code === 'RELIGHT_ERR_CAPACITY' && refused[0].name === 'b')
      assert.deepEqual(c.awake(), ['m:a', 'm:c'])
      // Eviction is refused too while it is in flight: an operator sleep of a stays refused.
      a.finished()
      c.clock.now += 5000 // min(idle_timeout, 5 s) after a's last activity
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      assert.deepEqual(c.awake(), ['m:b', 'm:c'])
    } finally {
      await c.close()
    }
  })

  it('a backend the idle sweep is putting to sleep frees its room: the wake waits for it instead of being refused', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'm', backends: ['a', 'b'] }])
    try {
      assert.equal((await c.auth('a.example.com')).statusCode, 200)
      const hold = deferred()
      c.providers[0]!.holdSleep = hold.promise
      c.clock.now += 11_000 // past idle_timeout
      const swept = c.registry.sweep()
      await until(() => c.registry.get('m:a')?.phase === 'sleeping', 'a sleeping')
      // The engine is asked to start b only once a is asleep (seen at the engine call, no timer).
      let aAtWake: string | undefined
      c.providers[0]!.onWake = (b) => {
        if (b.id === 'b') aAtWake = c.registry.get('m:a')?.phase
      }
      const answer = c.auth('b.example.com')
      // Let every pending callback run (a wake that did not wait would reach the engine here).
      for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
      hold.resolve()
      c.providers[0]!.holdSleep = undefined
      assert.equal((await answer).statusCode, 200)
      assert.equal(aAtWake, 'asleep', 'b waited while a was still being put to sleep')
      await swept
      assert.deepEqual(c.awake(), ['m:b'])
      assert.equal(c.events.filter((e) => e.type === 'wake.refused').length, 0)
    } finally {
      await c.close()
    }
  })

  it('a slow eviction holds up nobody else, and the waiting request gets 503 CAPACITY within wake_timeout', async () => {
    const c = await setup('', [
      { id: 'one', backends: ['a', 'b'] },
      { id: 'two', backends: ['x'] },
    ])
    c.registry.applyCaps(parseConfig('providers:\n  docker:\n    - { id: one, max_awake: 1 }\n    - { id: two, max_awake: 5 }\n', 't'))
    const hold = deferred()
    try {
      assert.equal((await c.auth('a.example.com')).statusCode, 200)
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      c.providers[0]!.holdSleep = hold.promise // a docker stop with a long grace period
      const started = Date.now()
      const b = c.auth('b.example.com')
      await until(() => c.registry.get('one:a')?.phase === 'sleeping', 'a sleeping')
      // Another provider with room: answered at once, not after the stop.
      assert.equal((await within(c.auth('x.example.com'), 1500)).statusCode, 200)
      const refused = await within(b, 4000)
      assert.equal(refused.statusCode, 503)
      assert.equal(JSON.parse(refused.body).code, 'RELIGHT_ERR_CAPACITY')
      // a is being put to sleep: its room may come free any moment (the least Retry-After)
      assert.equal(refused.headers['retry-after'], '1')
      assert.ok(Date.now() - started < 3000, `answered after ${Date.now() - started} ms (wake_timeout 2 s)`)
    } finally {
      hold.resolve()
      c.providers[0]!.holdSleep = undefined
      await c.close()
    }
  })

  it("a backend being evicted for another wake does not make room soon: the Retry-After is that wake's (not 1 s, then 10 s)", async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'm', backends: ['a', 'b', 'c'] }])
    const hold = deferred()
    try {
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      c.clock.now += 11_000 // b idle past idle_timeout: evictable
      c.providers[0]!.holdSleep = hold.promise // a slow stop
      const a = c.auth('a.example.com') // evicts b; b's room is a's
      await until(() => c.registry.get('m:b')?.phase === 'sleeping', 'b being evicted')
      const refused = await c.auth('c.example.com')
      assert.equal(refused.statusCode, 503)
      assert.equal(JSON.parse(refused.body).code, 'RELIGHT_ERR_CAPACITY')
      // a is waking into b's room: evictable at the earliest the eviction grace (5 s) after it is up
      assert.equal(refused.headers['retry-after'], '5', "b's room is reserved for a: b leaving frees nothing for c")
      hold.resolve()
      assert.equal((await a).statusCode, 200)
      const again = await c.auth('c.example.com')
      assert.equal(again.statusCode, 503)
      assert.equal(again.headers['retry-after'], '10', 'a answered without a ticket: idle_timeout (10 s)')
    } finally {
      hold.resolve()
      c.providers[0]!.holdSleep = undefined
      await c.close()
    }
  })

  it('a browser on the waiting page is told it is queued', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'm', backends: ['a', 'b'] }], 'waiting_page')
    try {
      await c.auth('a.example.com')
      await until(() => c.awake().length === 1, 'one awake')
      c.registry.get('m:a')!.started(true)
      const res = await c.auth('b.example.com', { accept: 'text/html', 'x-forwarded-method': 'GET' })
      assert.equal(res.statusCode, 503)
      assert.equal(res.headers['x-relight-reply'], 'RELIGHT_ERR_CAPACITY')
      assert.ok(res.headers['retry-after'])
      assert.match(res.body, /b\.example\.com is queued<\/h1>/)
      assert.match(res.body, /retries every \d+ s by itself/)
    } finally {
      await c.close()
    }
  })

  it('per provider instance: each instance has its own cap, and concurrent wakes never exceed it', async () => {
    const c = await setup('', [
      { id: 'one', backends: ['a', 'b', 'c', 'd'] },
      { id: 'two', backends: ['x', 'y'] },
    ])
    // The caps come from the config's provider blocks: give them through applySettings.
    const config = parseConfig(
      'min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\nproviders:\n  docker:\n    - { id: one, max_awake: 2 }\n    - { id: two }\n',
      't',
    )
    c.registry.applySettings(config)
    try {
      const hold = deferred()
      c.providers[0]!.holdWake = hold.promise
      const answers = Promise.all(['a', 'b', 'c', 'd'].map((h) => c.auth(`${h}.example.com`)))
      await until(() => c.events.some((e) => e.type === 'wake.refused'), 'a wake.refused')
      hold.resolve()
      const codes = (await answers).map((r) => r.statusCode)
      // Two woke; the other two found both busy waking (nothing evictable) and were refused.
      assert.deepEqual(codes.filter((s) => s === 200).length, 2, JSON.stringify(codes))
      assert.equal(c.awake().filter((k) => k.startsWith('one:')).length, 2)
      c.providers[0]!.holdWake = undefined
      // The other instance has no cap of its own.
      assert.equal((await c.auth('x.example.com')).statusCode, 200)
      assert.equal((await c.auth('y.example.com')).statusCode, 200)
      assert.equal(c.awake().length, 4)
    } finally {
      await c.close()
    }
  })

  it('group members count as one, and are evicted together', async () => {
    const c = await setup('max_awake: 2\n', [{ id: 'm', backends: ['web', 'db', 'b', 'c'], group: { web: 'g', db: 'g' } }])
    try {
      await c.auth('web.example.com')
      await until(() => c.awake().length === 2, 'two awake') // web and db: one unit
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('b.example.com')).statusCode, 200)
      assert.deepEqual(c.awake(), ['m:b', 'm:db', 'm:web'])
      c.clock.now += 11_000 // past idle_timeout: these requests have no ticket (Backend.mayBeEvicted)
      assert.equal((await c.auth('c.example.com')).statusCode, 200)
      assert.deepEqual(c.awake(), ['m:b', 'm:c'])
    } finally {
      await c.close()
    }
  })

  it('a reload applies a provider block\'s max_awake: added → enforced, removed → not enforced', async () => {
    const mk = () => new MemoryProvider(['a', 'b', 'c'].map((id): MemoryBackend => ({ id, hosts: [`${id}.example.com`], state: 'stopped', upstreams: [upstream.address] })), { kind: 'docker', id: 'p' })
    const yaml = (block: string) => parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\nproviders:\n  docker:\n    - ${block}\n`, 't')
    let current: Config = yaml('{ id: p }')
    const registry = new Registry([mk()], current, log)
    await registry.start()
    const reloader = new Reloader({
      file: undefined,
      registry,
      logger: log,
      current: () => current,
      createProviders: () => [mk()],
      closeProvider: async () => {},
      replaceStateful: () => {},
      replaceHeartbeat: () => {},
      replaceWebhooks: () => {},
      commit: (c) => {
        current = c
      },
    })
    const awake = () => [...registry.all()].filter((b) => b.phase !== 'asleep').map((b) => b.info.id).sort()
    const wakeAll = async () => {
      for (const b of [...registry.all()]) await registry.wake(b).catch((err: unknown) => (err as { code?: string }).code)
    }
    try {
      const added = await reloader.apply(yaml('{ id: p, max_awake: 1 }'))
      // the summary names the cap that changed, not only "reconfigured"
      assert.ok(added.ok && added.summary.settings.includes('max_awake (p)'), JSON.stringify(added))
      await wakeAll()
      assert.equal(awake().length, 1, `cap 1 added by a reload: ${awake().join(',')}`)
      await reloader.apply(yaml('{ id: p }'))
      await wakeAll()
      assert.deepEqual(awake(), ['a', 'b', 'c'], 'cap removed by a reload')
    } finally {
      registry.close()
    }
  })

  it('two waiting-page browsers at cap 1 do not evict each other: a freshly woken or just used backend stays', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'm', backends: ['a', 'b'] }], 'waiting_page')
    const html = { accept: 'text/html', 'x-forwarded-method': 'GET' }
    try {
      await c.auth('a.example.com', html) // browser A: the waiting page, a wakes
      await until(() => c.registry.get('m:a')?.phase === 'running', 'a running')
      const queued = await c.auth('b.example.com', html) // browser B, before A's page retries
      assert.equal(queued.statusCode, 503)
      assert.equal(queued.headers['x-relight-reply'], 'RELIGHT_ERR_CAPACITY')
      assert.equal(c.registry.get('m:a')?.phase, 'running', 'a, woken a moment ago, was not evicted')
      assert.equal((await c.auth('a.example.com', html)).statusCode, 200) // A's page retries: served
      // That request had no ticket: a is not evicted before idle_timeout (10 s) after it.
      c.clock.now += 6000
      assert.equal((await c.auth('b.example.com', html)).headers['x-relight-reply'], 'RELIGHT_ERR_CAPACITY')
      assert.equal(c.registry.get('m:a')?.phase, 'running')
      c.clock.now += 5000
      await c.auth('b.example.com', html)
      await until(() => c.registry.get('m:b')?.phase === 'running', 'b running')
      assert.deepEqual(c.awake(), ['m:b'])
      assert.equal(c.events.filter((e) => e.type === 'sleep.done' && e.cause === 'evicted').length, 1)
    } finally {
      await c.close()
    }
  })

  it('counted requests: evictable min(idle_timeout, 5 s) after the last one ended', async () => {
    const c = await setup('max_awake: 1\n', [{ id: 'm', backends: ['a', 'b'] }])
    try {
      const a = c.registry.get('m:a')!
      const b = c.registry.get('m:b')!
      await c.registry.wake(a)
      a.started(true)
      c.clock.now += 60_000
      a.finished()
      c.clock.now += 3000
      await assert.rejects(c.registry.wake(b), { code: 'RELIGHT_ERR_CAPACITY' })
      c.clock.now += 2000
      await c.registry.wake(b)
      assert.deepEqual(c.awake(), ['m:b'])
    } finally {
      await c.close()
    }
  })

  it('a backend found running is not evicted inside its startup_grace (Sablier #985)', async () => {
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\nmax_awake: 1\ndefaults: { idle_timeout: 10s, wake_timeout: 2s, startup_grace: 1m }\n', 'test')
    const provider = new MemoryProvider([
      { id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }, // started by hand
      { id: 'b', hosts: ['b.example.com'], state: 'stopped', upstreams: [upstream.address] },
    ])
    const clock = { now: 1_000_000 }
    const registry = new Registry([provider], config, log, () => clock.now)
    try {
      await registry.start()
      clock.now += 30_000 // idle, but inside its grace
      await assert.rejects(registry.wake(registry.get('memory:b')!), { code: 'RELIGHT_ERR_CAPACITY' })
      assert.equal(registry.get('memory:a')?.phase, 'running')
      clock.now += 31_000 // past the grace
      await registry.wake(registry.get('memory:b')!)
      assert.equal(registry.get('memory:a')?.phase, 'asleep')
    } finally {
      registry.close()
    }
  })

  it('the keys: top level and per provider block, errors naming the key; not a per-backend setting', () => {
    assert.deepEqual(problems('max_awake: 3\nproviders:\n  docker:\n    max_awake: 2\n'), [])
    assert.deepEqual(problems('providers:\n  docker:\n    - { id: a, max_awake: 2 }\n    - { id: b }\n'), [])
    assert.match(problems('max_awake: 0\n')[0] ?? '', /max_awake.*at least 1/)
    assert.match(problems('max_awake: two\n')[0] ?? '', /max_awake.*whole number/)
    assert.match(problems('providers:\n  docker:\n    - { id: a, max_awake: 1.5 }\n')[0] ?? '', /providers\.docker\.0\.max_awake|providers\.docker\[0\]\.max_awake|max_awake.*whole number/)
    assert.match(problems('defaults:\n  max_awake: 2\n')[0] ?? '', /max_awake/)
  })
})

function within<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
  })
  return Promise.race([p, late]).finally(() => clearTimeout(timer))
}
