/**
 * The core's shared-decision rules (docs/architecture.md, "Shared decisions") against a scripted
 * SharedEngine: what this sidecar judges on its own monotonic clock, what it writes, and what it
 * reports. No engine; the provider is test/fakes/shared-engine.ts.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Stamped } from '../../sidecar/core/events.js'
import { Registry } from '../../sidecar/core/registry.js'
import { buildApp } from '../../sidecar/server/app.js'
import { RelightError } from '../../sidecar/core/errors.js'
import type { MemoryBackend } from '../fakes/memory-provider.js'
import { deferred } from '../fakes/memory-provider.js'
import { SharedMemoryProvider } from '../fakes/shared-engine.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { drain, until } from '../helpers/wait.js'
import { freePort } from '../helpers/net.js'
import { HOLD_MS } from '../../sidecar/core/activity-share.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { Writable } from 'node:stream'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { FastLane } from '../../sidecar/core/fast-lane.js'

const log = pino({ level: 'silent' })
const upstream = okUpstream()
const IDLE = 10_000

async function core(backends: (up: string) => MemoryBackend[], options: { idle?: string; extra?: string; log?: pino.Logger } = {}) {
  const idle = options.idle ?? '10s'
  const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\n${options.extra ?? ''}defaults: { idle_timeout: ${idle}, wake_timeout: 2s, sleep: scale, fallback_sleep: scale }\n`, 'test')
  const clock = { now: 1_000_000 }
  const provider = new SharedMemoryProvider(backends(upstream.address), () => clock.now)
  const engine = provider.shared
  const registry = new Registry([provider], config, options.log ?? log, () => clock.now)
  const events: Stamped[] = []
  registry.events.subscribe((e) => events.push(e))
  await registry.start()
  const app = buildApp({}, { registry, logger: options.log ?? log })
  await app.ready()
  const auth = (host: string) => app.inject({ method: 'GET', url: '/_relight/auth', headers: { host } })
  const backend = (id: string) => {
    const b = registry.get(`memory:${id}`)
    assert.ok(b, id)
    return b
  }
  return {
    clock,
    provider,
    engine,
    registry,
    events,
    auth,
    backend,
    close: async () => {
      registry.close()
      await app.close()
    },
  }
}

const web = (up: string, over: Partial<MemoryBackend> = {}): MemoryBackend => ({ id: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [up], ...over })
/** The group `shop`: web and db, both running on `up`. */
const shop = (up: string): MemoryBackend[] => [web(up, { group: 'shop' }), { id: 'db', hosts: ['db.example.com'], state: 'running', upstreams: [up], group: 'shop' }]

describe('shared decisions in the core (fake SharedEngine)', () => {
  it('judges idleness on its own monotonic clock: a wall clock 2 minutes off changes nothing', async () => {
    const realNow = Date.now
    for (const skew of [120_000, -120_000]) {
      Date.now = () => realNow() + skew
      try {
        const c = await core((up) => [web(up)])
        c.clock.now += 5000
        c.engine.foreignWrite('web') // another sidecar's traffic, seen here now
        c.clock.now += IDLE - 1
        await c.registry.sweep()
        assert.equal(c.engine.calls.sleepIf.length, 0, `skew ${skew}: not before idle_timeout after the token was seen`)
        c.clock.now += 1
        await c.registry.sweep()
        assert.equal(c.engine.calls.sleepIf.length, 1, `skew ${skew}: exactly idle_timeout after`)
        assert.equal(c.backend('web').phase, 'asleep')
        await c.close()
      } finally {
        Date.now = realNow
      }
    }
  })

  it('a view that is not live blocks every sleep; after it reconnects nothing sleeps for idle_timeout', async () => {
    const c = await core((up) => [web(up)])
    c.engine.disconnect()
    c.clock.now += 10 * IDLE
    await c.registry.sweep()
    assert.equal(c.engine.calls.sleepIf.length, 0)
    c.engine.reconnect() // seenAt = now for every observation
    c.clock.now += IDLE - 1
    await c.registry.sweep()
    assert.equal(c.engine.calls.sleepIf.length, 0, 'reconnect resets: one idle_timeout from the reconnect')
    c.clock.now += 1
    await c.registry.sweep()
    assert.deepEqual(c.engine.calls.sleepIf, [{ id: 'web', unchangedSince: 'none' }])
    assert.deepEqual(c.provider.calls.sleep, [], 'never the unconditional provider.sleep')
    await c.close()
  })

  it('a token write that failed during an outage is retried at once when the view reconnects', async () => {
    const c = await core((up) => [web(up)])
    c.engine.failRecord = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'engine down')
    c.engine.disconnect()
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    await until(() => c.backend('web').sharer?.failed === 1, 'the first write failed')
    c.engine.failRecord = undefined
    c.engine.reconnect()
    await until(() => c.engine.calls.recordActivity.length === 2, 'retry on reconnect, not at the next tick')
    await c.close()
  })

  it('shares the first request after a quiet spell at once, before any sweep tick', async () => {
    const c = await core((up) => [web(up)])
    c.clock.now += IDLE
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    await until(() => c.engine.calls.recordActivity.length === 1, 'the immediate write')
    await c.close()
  })

  it('a sleep whose version changed meanwhile is refused with a reason and does not reset the local idle clock', async () => {
    const c = await core((up) => [web(up)])
    c.clock.now += IDLE
    const idleBefore = c.backend('web').lastActivity
    c.engine.beforeSleepIf = (id) => {
      c.engine.beforeSleepIf = undefined
      c.engine.foreignWrite(id)
    }
    await c.registry.sweep()
    assert.equal(c.engine.calls.sleepIf.length, 1)
    const refused = c.events.find((e) => e.type === 'sleep.refused')
    assert.ok(refused && refused.type === 'sleep.refused')
    assert.match(refused.reason, /another sidecar wrote since/)
    assert.equal(c.backend('web').phase, 'running')
    assert.equal(c.backend('web').lastActivity, idleBefore, 'only traffic moves the local idle clock')
    // judged again from the new token: idle_timeout after it
    c.clock.now += IDLE
    await c.registry.sweep()
    assert.equal(c.engine.calls.sleepIf.length, 2)
    assert.equal(c.backend('web').phase, 'asleep')
    await c.close()
  })

  it('a request reported finished after our own sleep writes no token (the workload is down)', async () => {
    const c = await core((up) => [web(up)])
    c.clock.now += IDLE
    await c.registry.sweep()
    assert.equal(c.backend('web').phase, 'asleep')
    c.backend('web').finished() // a late access-log line
    c.clock.now += IDLE
    await c.registry.sweep()
    await drain()
    assert.equal(c.engine.calls.recordActivity.length, 0)
    await c.close()
  })

  it('an admin sleep of a shared backend is sleepIf on the observed version', async () => {
    const c = await core((up) => [web(up)])
    const version = c.engine.foreignWrite('web')
    const outcome = await c.backend('web').sleepNow()
    assert.equal(outcome.result, 'done')
    assert.deepEqual(c.engine.calls.sleepIf, [{ id: 'web', unchangedSince: version }])
    assert.deepEqual(c.provider.calls.sleep, [])
    await c.close()
  })

  it('a wake reports only by its result: engine reports during it raise no backend.state', async () => {
    const c = await core((up) => [web(up, { state: 'scaled_to_zero' })])
    const hold = deferred()
    c.provider.holdWake = hold.promise
    const pending = c.auth('web.example.com')
    await until(() => c.backend('web').phase === 'waking', 'waking')
    // the engine shows our own write's progress (a provider that still emitted it)
    c.provider.emit({ type: 'upsert', backend: { id: 'web', name: 'web', hosts: ['web.example.com'], state: 'starting', upstreams: [], settings: {} } })
    hold.resolve()
    assert.equal((await pending).statusCode, 200)
    const types = c.events.map((e) => e.type).filter((t) => t.startsWith('wake.') || t === 'backend.state')
    assert.deepEqual(types, ['wake.started', 'wake.ready'])
    await c.close()
  })

  it('a request that wakes the backend writes no second token (the wake wrote one)', async () => {
    const c = await core((up) => [web(up, { state: 'scaled_to_zero' })])
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    assert.equal(c.provider.calls.wake, 1)
    await drain()
    assert.equal(c.engine.calls.recordActivity.length, 0)
    // traffic goes on: the next write comes from the tick, idle/4 after the wake
    c.clock.now += IDLE / 4
    await c.auth('web.example.com')
    await c.registry.sweep()
    await until(() => c.engine.calls.recordActivity.length === 1, 'the cadence write')
    await c.close()
  })

  it('a task that fails right after its start aborts the wake with BACKEND_EXITED (startFailure)', async () => {
    // the woken backend's address answers nothing: only the hook can end the wait early
    const c = await core(() => [web('127.0.0.1:9', { state: 'scaled_to_zero' })])
    const pending = c.auth('web.example.com')
    await until(() => c.backend('web').phase === 'probing', 'probing')
    c.provider.taskFailed('task exited with code 1')
    const res = await pending
    assert.equal(res.statusCode, 502)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_BACKEND_EXITED')
    // the engine's words go to the log (the wake.failed event's line), not to the client
    assert.doesNotMatch(res.body, /task exited/)
    assert.ok(c.events.some((e) => e.type === 'wake.failed' && /task exited with code 1/.test(e.reason)), JSON.stringify(c.events))
    await c.close()
  })

  it('a backend found running (event or resync) is probed and routed without a wake or a token write', async () => {
    const c = await core((up) => [web(up, { state: 'scaled_to_zero' })])
    // another sidecar woke it: seen by an event
    c.provider.put(web(upstream.address))
    await until(() => c.backend('web').phase === 'running', 'routed')
    // and by resyncs
    await c.registry.resync(c.provider)
    await c.registry.resync(c.provider)
    assert.equal(c.provider.calls.wake, 0)
    assert.equal(c.engine.calls.recordActivity.length, 0, 'nobody had traffic here')
    // a request here is traffic: written
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    await until(() => c.engine.calls.recordActivity.length === 1, 'the request wrote')
    await c.close()
  })

  it('a group sibling up in the engine but never routed here blocks the group sleep while its token is fresh', async () => {
    const c = await core((up) => [
      web(up, { group: 'shop' }),
      { id: 'api', hosts: ['api.example.com'], state: 'scaled_to_zero', upstreams: [], group: 'shop' },
    ])
    c.clock.now += IDLE
    // another sidecar wakes api: replicas up (starting), its token fresh; never routed here
    c.provider.put({ id: 'api', hosts: ['api.example.com'], state: 'starting', upstreams: [], group: 'shop' })
    c.engine.foreignWrite('api')
    await c.registry.sweep()
    assert.equal(c.backend('api').phase, 'asleep')
    assert.equal(c.engine.calls.sleepIf.length, 0, 'web idle here, but api is awake in the engine with a fresh token')
    c.clock.now += IDLE
    await c.registry.sweep()
    assert.deepEqual(c.engine.calls.sleepIf.map((s) => s.id).sort(), ['api', 'web'], 'the group sleeps together')
    await c.close()
  })

  it('after idle/2 of shared silence a request waits for its write; asleep (another sidecar won) wakes instead of routing', async () => {
    const c = await core((up) => [web(up)])
    c.clock.now += IDLE / 2
    c.engine.recordAsleep = true
    const wake = deferred()
    c.provider.holdWake = wake.promise
    let answered = false
    const pending = c.auth('web.example.com').then((r) => {
      answered = true
      return r
    })
    await until(() => c.provider.calls.wake === 1, 'the wake')
    await drain()
    assert.equal(answered, false, 'not routed to a stopping replica: it waits for the wake')
    assert.equal(c.engine.calls.recordActivity.length, 1)
    wake.resolve()
    assert.equal((await pending).statusCode, 200)
    await c.close()
  })

  it('while the view is not live, a request is verified by one bounded read; asleep wakes, gone answers 404 (logged at info)', async () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
        done()
      },
    })
    const c = await core((up) => [web(up)], { log: pino({ level: 'info' }, sink) })
    c.engine.disconnect()
    c.engine.refreshAnswer = 'asleep' // another sidecar scaled it down while we could not see
    const res = await c.auth('web.example.com')
    assert.equal(res.statusCode, 200)
    assert.equal(c.engine.calls.refresh.length, 1)
    assert.equal(c.provider.calls.wake, 1, 'woken instead of routed to a stopped replica')
    // at most one read per backend per 2 s
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    assert.equal(c.engine.calls.refresh.length, 1)
    c.clock.now += 2000
    c.engine.refreshAnswer = 'gone'
    assert.equal((await c.auth('web.example.com')).statusCode, 404)
    // nothing else reports it: one info line for the operator
    const refused = lines.filter((l) => l.msg === 'request refused')
    assert.deepEqual(refused.map((l) => [l.level, l.code, l.backend, l.host]), [[30, 'RELIGHT_ERR_BACKEND_NOT_FOUND', 'web', 'web.example.com']])
    await c.close()
  })

  it('a verify read that times out routes on the last view and pauses reads on that engine for 5 s', async () => {
    const c = await core((up) => [web(up)])
    c.engine.disconnect()
    const never = deferred()
    c.engine.holdRefresh = never.promise
    const started = Date.now()
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    assert.ok(Date.now() - started < 2000, 'bounded (300 ms)')
    c.clock.now += 2000
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    assert.equal(c.engine.calls.refresh.length, 1, 'cool-off after a timeout')
    c.clock.now += 5000
    c.engine.holdRefresh = undefined
    assert.equal((await c.auth('web.example.com')).statusCode, 200)
    assert.equal(c.engine.calls.refresh.length, 2)
    never.resolve()
    await c.close()
  })

  it('a connection event marks the provider down, and healthz degraded after 2 s', async () => {
    const c = await core((up) => [web(up)])
    c.provider.emit({ type: 'connection', up: false, reason: 'stream closed' })
    assert.ok(c.events.some((e) => e.type === 'provider.down'))
    assert.equal(c.registry.degraded(), false, 'a blip is not reported')
    c.clock.now += 2001
    assert.equal(c.registry.degraded(), true)
    c.provider.emit({ type: 'connection', up: true })
    assert.ok(c.events.some((e) => e.type === 'provider.up'))
    assert.equal(c.registry.degraded(), false)
    await c.close()
  })

  it('the registry judges on the monotonic clock by default (production passes no clock)', async () => {
    const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\n`, 'test')
    const provider = new SharedMemoryProvider([web(upstream.address)], () => 0)
    const registry = new Registry([provider], config, log)
    await registry.start()
    const b = registry.get('memory:web')
    registry.close()
    assert.ok(b)
    // performance.now() counts from this process's start; Date.now() from 1970
    assert.ok(Math.abs(b.createdAt - performance.now()) < 60_000, `createdAt ${b.createdAt} is not on the monotonic clock`)
  })

  it('a first connection up (no down before it) says the view is live, without a provider.up', async () => {
    const c = await core((up) => [web(up)])
    const ups = () => c.events.filter((e) => e.type === 'provider.up').length
    const before = ups()
    c.provider.emit({ type: 'connection', up: true })
    assert.equal(c.registry.status.get('memory')?.view, 'live')
    assert.equal(ups(), before, 'no provider.up without a down')
    await c.close()
  })

  describe('review fixes (groups, restarts, adopt, long wakes, bounds)', () => {
    it('a group sleeps member by member and stops at the first refusal: a sibling is not slept under a member served elsewhere', async () => {
      const c = await core(shop)
      c.clock.now += IDLE
      // another sidecar's traffic on web lands between this sidecar's judgement and its CAS on web
      c.engine.beforeSleepIf = (id) => {
        if (id === 'web') c.engine.foreignWrite('web')
      }
      await c.registry.sweep()
      assert.deepEqual({ web: c.backend('web').phase, db: c.backend('db').phase }, { web: 'running', db: 'running' })
      assert.deepEqual(c.engine.calls.sleepIf.map((s) => s.id), ['web'], 'db never asked')
      await c.close()
    })

    it('the sweep wakes a group sibling found asleep while a member has traffic here (a split made elsewhere)', async () => {
      const c = await core(shop)
      assert.equal((await c.auth('web.example.com')).statusCode, 200)
      // another sidecar's group sleep was split: db is at 0 in the engine, web is served here
      c.provider.emit({ type: 'upsert', backend: { id: 'db', name: 'db', hosts: ['db.example.com'], state: 'scaled_to_zero', upstreams: [], group: 'shop', settings: {} } })
      await until(() => c.backend('db').phase === 'asleep', 'db reported asleep')
      await c.registry.sweep()
      await until(() => c.backend('db').phase === 'running', 'db woken by the sweep', 5000)
      assert.equal(c.provider.calls.wake, 1)
      await c.close()
    })

    it('the sweep does not wake a sibling found asleep for a member kept up without traffic here (startup grace, another sidecar\'s token)', async () => {
      // issue 21 S6 (real swarm, 3 sidecars): a sidecar with no traffic re-woke a group another
      // sidecar was putting to sleep, because its running member was "not idle" only by its
      // startup_grace or by a fresh token: 2-3 wakes nobody asked for per run
      const c = await core(shop)
      c.provider.emit({ type: 'upsert', backend: { id: 'db', name: 'db', hosts: ['db.example.com'], state: 'scaled_to_zero', upstreams: [], group: 'shop', settings: {} } })
      await until(() => c.backend('db').phase === 'asleep', 'db reported asleep')
      await c.registry.sweep() // web in its startup_grace (found running at start), no request here
      c.clock.now += IDLE + 1
      c.engine.foreignWrite('web') // another sidecar's token on web (or its scale-down of db moved it)
      await c.registry.sweep()
      await drain()
      assert.equal(c.provider.calls.wake, 0, 'db not woken: nobody asked for the group here')
      assert.equal(c.backend('db').phase, 'asleep')
      await c.close()
    })

    it('a token write answering asleep from the sweep tick wakes the whole group, not only the member', async () => {
      const c = await core(shop)
      assert.equal((await c.auth('web.example.com')).statusCode, 200) // traffic here: immediate write
      await until(() => c.engine.calls.recordActivity.length === 1, 'first write')
      c.backend('web').started(true) // a long request in flight here
      // another sidecar slept the whole group (both at 0 in the engine); db's view update has not arrived
      c.engine.recordAsleep = true
      c.clock.now += IDLE / 4
      await c.registry.sweep() // tick: web's write answers asleep
      await until(() => c.provider.calls.wake >= 2, 'web and db woken', 5000)
      await c.close()
    })

    it('after a (re)start the first request waits for its write (no token change seen since the view started)', async () => {
      // fresh sidecar: seenAt is the start, nothing written by us; another sidecar whose view saw
      // the token long ago slept it meanwhile (our write answers asleep)
      const c = await core((up) => [web(up)])
      c.clock.now += 1000
      c.engine.recordAsleep = true
      const wake = deferred()
      c.provider.holdWake = wake.promise
      let answered = false
      const pending = c.auth('web.example.com').then((r) => {
        answered = true
        return r
      })
      await until(() => c.provider.calls.wake === 1, 'the wake')
      await drain()
      assert.equal(answered, false, 'not routed to a replica the write found asleep')
      wake.resolve()
      assert.equal((await pending).statusCode, 200)
      await c.close()
    })

    it('after a view reconnect the first request waits for its write again; later ones do not', async () => {
      const c = await core((up) => [web(up)])
      assert.equal((await c.auth('web.example.com')).statusCode, 200)
      await until(() => c.engine.calls.recordActivity.length === 1, 'first write')
      c.engine.disconnect()
      c.clock.now += 1000
      c.engine.reconnect()
      const record = deferred()
      c.engine.holdRecord = record.promise
      const asked = performance.now()
      let answeredAfter: number | undefined
      const pending = c.auth('web.example.com').then((r) => {
        answeredAfter = performance.now() - asked
        return r
      })
      await until(() => c.engine.calls.recordActivity.length === 2, 'a write for the first request after the reconnect')
      await drain()
      // Held for its write, which the test holds: only a machine stalled for HOLD_MS (the hold's
      // real-time bound) may have let it go unconfirmed meanwhile.
      assert.ok(answeredAfter === undefined || answeredAfter >= HOLD_MS, `held for its write (answered after ${answeredAfter?.toFixed(0)} ms)`)
      record.resolve()
      assert.equal((await pending).statusCode, 200)
      c.engine.holdRecord = new Promise(() => undefined) // a later request must not wait on anything
      assert.equal((await c.auth('web.example.com')).statusCode, 200)
      await c.close()
    })

    it('an adopt whose probe succeeds does not overwrite a scale-down reported while it probed', async () => {
      const net = await import('node:net')
      const port = await freePort()
      const up = `127.0.0.1:${port}`
      const c = await core(() => [{ id: 'web', hosts: ['web.example.com'], state: 'scaled_to_zero', upstreams: [] }])
      c.provider.emit({ type: 'upsert', backend: { id: 'web', name: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [up], settings: {} } })
      await until(() => c.backend('web').phase === 'probing', 'probing')
      c.provider.emit({ type: 'upsert', backend: { id: 'web', name: 'web', hosts: ['web.example.com'], state: 'scaled_to_zero', upstreams: [], settings: {} } })
      const srv = net.createServer((s) => s.end()).listen(port, '127.0.0.1')
      try {
        await until(() => c.backend('web').phase !== 'probing', 'probe ended', 5000)
        assert.deepEqual({ phase: c.backend('web').phase, state: c.backend('web').info.state }, { phase: 'asleep', state: 'scaled_to_zero' })
      } finally {
        srv.close()
        await c.close()
      }
    })

    it('a wake longer than idle_timeout keeps writing tokens every idle/4 while requests wait on it', async () => {
      const c = await core((up) => [web(up, { state: 'scaled_to_zero' })])
      const wake = deferred()
      c.provider.holdWake = wake.promise
      const pending = c.auth('web.example.com')
      await until(() => c.provider.calls.wake === 1, 'wake')
      c.clock.now += IDLE / 8
      await c.registry.sweep()
      await drain()
      assert.equal(c.engine.calls.recordActivity.length, 0, 'not before idle/4 (the wake wrote one)')
      for (let i = 1; i <= 4; i++) {
        c.clock.now += IDLE / 4 // 1.125 idle_timeout in all
        await c.registry.sweep()
        await until(() => c.engine.calls.recordActivity.length === i, `token ${i} during the wake`, 5000)
        await drain() // the write (the fake answers at once) settles before the next tick
      }
      assert.ok(c.engine.calls.recordActivity.every((w) => w.agoMs === 0), 'waiting requests are activity now')
      wake.resolve()
      assert.equal((await pending).statusCode, 200)
      await c.close()
    })

    it('a request arriving while our own sleep waits in the sleep queue cancels it (no scale-down, no wake)', async () => {
      const c = await core((up) => [{ id: 'api', hosts: ['api.example.com'], state: 'running', upstreams: [up] }, web(up)], { extra: 'max_concurrent_sleeps: 1\n' })
      c.clock.now += IDLE
      const gate = deferred()
      const sleepIf = c.engine.sleepIf.bind(c.engine)
      c.engine.sleepIf = async (id, version, signal) => {
        if (id === 'api') await gate.promise // api's sleep holds the one slot
        return sleepIf(id, version, signal)
      }
      const sweep = c.registry.sweep()
      await until(() => c.backend('web').phase === 'sleeping' && c.backend('api').phase === 'sleeping', 'both sleeps under way')
      const request = c.auth('web.example.com') // arrives before web's conditional write left the queue
      await until(() => c.backend('web').phase === 'running', 'web sleep cancelled')
      gate.resolve()
      await sweep
      assert.equal((await request).statusCode, 200)
      assert.deepEqual(c.engine.calls.sleepIf.map((s) => s.id), ['api'])
      assert.equal(c.provider.calls.wake, 0)
      await c.close()
    })

    it('a verify read that never settles (engine ignores the abort) is bounded by the core', async () => {
      const c = await core((up) => [web(up)])
      c.engine.disconnect()
      c.engine.refresh = () => new Promise(() => undefined)
      // A failure bound, not a wait: the core answers within its 300 ms verify bound.
      let timer: NodeJS.Timeout | undefined
      const hung = new Promise<'hung'>((r) => (timer = setTimeout(r, 5000, 'hung')))
      const res = await Promise.race([c.auth('web.example.com').then((r) => r.statusCode), hung]).finally(() => clearTimeout(timer))
      assert.equal(res, 200)
      await c.close()
    })

    it('a reload that replaces the provider closes the old backend sharer: a late asleep answer wakes nothing through the old provider', async () => {
      const c = await core((up) => [web(up)])
      const record = deferred()
      c.engine.holdRecord = record.promise
      c.engine.recordAsleep = true
      assert.equal((await c.auth('web.example.com')).statusCode, 200) // its write is held
      await until(() => c.engine.calls.recordActivity.length === 1, 'the write')
      const next = new SharedMemoryProvider([web(upstream.address)], () => c.clock.now)
      await c.registry.replaceProvider(c.provider, next)
      record.resolve()
      await drain()
      assert.equal(c.provider.calls.wake, 0, 'the old, replaced provider woke nothing')
      await c.close()
    })

    it('a refused shared sleep probes again the replicas that were not ready yet', async () => {
      const net = await import('node:net')
      const port = await freePort()
      const late = `127.0.0.1:${port}`
      const c = await core((up) => [web(up)])
      // a second replica is reported (not listening yet): it joins once its probe succeeds
      c.provider.emit({ type: 'upsert', backend: { id: 'web', name: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [upstream.address, late], settings: {} } })
      c.clock.now += IDLE
      c.engine.beforeSleepIf = (id) => void c.engine.foreignWrite(id) // another sidecar wrote: refused
      await c.registry.sweep()
      assert.equal(c.backend('web').phase, 'running')
      const srv = net.createServer((s) => s.end()).listen(port, '127.0.0.1')
      try {
        const b = c.backend('web')
        await until(() => [b.upstream(), b.upstream()].includes(late), 'the late replica routed', 5000)
      } finally {
        srv.close()
        await c.close()
      }
    })

    it('a provider whose observe() throws fails neither the request nor the sweep', async () => {
      const c = await core((up) => [web(up)])
      c.engine.observe = () => {
        throw new Error('broken view')
      }
      assert.equal((await c.auth('web.example.com')).statusCode, 200)
      c.clock.now += IDLE
      await c.registry.sweep()
      assert.equal(c.backend('web').phase, 'running', 'nothing judged idle on an unreadable observation')
      await c.close()
    })

    it('a token write that never settles fails after idle/4 (not 10 s) and frees its slot', async () => {
      const c = await core((up) => [web(up)], { idle: '1s' })
      c.engine.recordActivity = () => new Promise(() => undefined)
      assert.equal((await c.auth('web.example.com')).statusCode, 200)
      await until(() => c.backend('web').sharer?.failed === 1, 'the write timed out', 3000)
      await c.close()
    })
  })
})

describe('shared engines and the policies of one sidecar', () => {
  it('max_awake never evicts a workload another sidecar served within idle_timeout (its token is fresh): the wake is refused instead', async () => {
    const c = await core((up) => [web(up), { id: 'api', hosts: ['api.example.com'], state: 'scaled_to_zero', upstreams: [up] }], { extra: 'max_awake: 1\n' })
    c.clock.now += IDLE + 1000 // past web's startup_grace, no local traffic
    c.engine.foreignWrite('web') // another sidecar serves web
    c.clock.now += 6000 // past the local eviction grace (min(idle, 5 s)), well within idle_timeout
    const res = await c.auth('api.example.com')
    assert.equal(res.statusCode, 503, res.body)
    assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_CAPACITY')
    assert.equal(c.engine.calls.sleepIf.length, 0, 'web was not scaled down from here')
    assert.equal(c.backend('web').phase, 'running')
    await c.close()
  })

  it("max_awake's Retry-After while another sidecar's token blocks the eviction: until the token is idle_timeout old; 60 s while the view is not live", async () => {
    const c = await core((up) => [web(up), { id: 'api', hosts: ['api.example.com'], state: 'scaled_to_zero', upstreams: [up] }], { idle: '40s', extra: 'max_awake: 1\n' })
    try {
      c.clock.now += 41_000 // past web's startup_grace, no local traffic
      c.engine.foreignWrite('web') // another sidecar serves web
      c.clock.now += 6000
      let res = await c.auth('api.example.com')
      assert.equal(res.statusCode, 503, res.body)
      assert.equal(res.headers['retry-after'], '34', 'the token blocks until it is 40 s old: 34 s more (not the 5 s local grace)')
      c.engine.disconnect() // nothing bounds the wait any more
      res = await c.auth('api.example.com')
      assert.equal(res.statusCode, 503, res.body)
      assert.equal(res.headers['retry-after'], '60')
    } finally {
      await c.close()
    }
  })

  it('a backend on a shared engine keeps the forward_auth lane (no fast-lane flag): its requests are shared from their start', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'relight-shared-lane-'))
    const lane = new FastLane({ dir: join(dir, 'awake') })
    lane.reset()
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10m, sleep: scale, fallback_sleep: scale }\n', 'test')
    const registry = new Registry([new SharedMemoryProvider([{ ...web(upstream.address), settings: { fast_lane: true } }], () => 0)], config, log, () => 0)
    registry.useFastLane(lane)
    try {
      await registry.start()
      const status = registry.get('memory:web')?.status()
      assert.equal(status?.fast_lane, false, 'no flag written')
      assert.match(String(status?.fast_lane_off), /several sidecars/)
    } finally {
      registry.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
