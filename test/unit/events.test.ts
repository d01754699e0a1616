import assert from 'node:assert/strict'
import { Writable } from 'node:stream'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import type { Stamped } from '../../sidecar/core/events.js'
import { LifecycleEvents } from '../../sidecar/core/events.js'
import { logEvents } from '../../sidecar/core/event-log.js'
import { Registry } from '../../sidecar/core/registry.js'
import { buildApp } from '../../sidecar/server/app.js'
import { type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'

const upstream = okUpstream()

/** A registry whose log lines are captured as parsed JSON. */
async function setup(backends: MemoryBackend[]) {
  const lines: Record<string, unknown>[] = []
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
      cb()
    },
  })
  const log = pino({ level: 'info' }, sink)
  const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n', 'test')
  const provider = new MemoryProvider(backends)
  const clock = { now: 1_000_000 }
  const registry = new Registry([provider], config, log, () => clock.now)
  const events: Stamped[] = []
  registry.events.subscribe((e) => events.push(e))
  await registry.start()
  return { provider, registry, events, lines, clock, types: () => events.map((e) => e.type) }
}

describe('lifecycle events', () => {
  it('durations are whole milliseconds, also on the monotonic clock (performance.now is fractional)', async () => {
    const provider = new MemoryProvider([{ id: 'a', hosts: ['a.example.com'], state: 'paused', upstreams: [upstream.address] }])
    const config = parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n', 'test')
    let t = 1_000_000.123
    const registry = new Registry([provider], config, pino({ level: 'silent' }), () => (t += 0.37))
    const events: Stamped[] = []
    registry.events.subscribe((e) => events.push(e))
    await registry.start()
    const b = registry.get('memory:a')
    assert.ok(b)
    await registry.wake(b)
    t += 11_000
    await registry.sweep()
    const durations = events.flatMap((e) => ('duration_ms' in e ? [e.duration_ms] : []))
    assert.equal(durations.length, 2, 'wake.ready and sleep.done')
    for (const d of durations) assert.ok(Number.isInteger(d), `${d} is whole`)
    registry.close()
  })

  it('reports discovery, a wake with its duration, a sleep with its mode, and removal, numbered in order', async () => {
    const s = await setup([{ id: 'a', hosts: ['a.example.com'], state: 'paused', upstreams: [upstream.address] }])
    assert.deepEqual(s.types(), ['backend.added', 'provider.up'])
    const b = s.registry.get('memory:a')
    assert.ok(b)
    await s.registry.wake(b)
    const ready = s.events.find((e) => e.type === 'wake.ready')
    assert.ok(ready && ready.type === 'wake.ready')
    assert.equal(ready.key, 'memory:a')
    assert.equal(ready.provider, 'memory')
    assert.equal(ready.from, 'paused')
    assert.equal(typeof ready.duration_ms, 'number')
    s.clock.now += 11_000
    assert.deepEqual(await s.registry.sweep(), [true])
    const done = s.events.find((e) => e.type === 'sleep.done')
    assert.ok(done && done.type === 'sleep.done')
    assert.equal(done.mode, 'stop')
    assert.equal(done.fallback, false)
    s.provider.backends.delete('a')
    await s.registry.resync(s.provider)
    assert.equal(s.events.at(-1)?.type, 'backend.removed')
    const ids = s.events.map((e) => e.id)
    assert.deepEqual(ids, [...ids].sort((x, y) => x - y), 'ids increase')
    assert.equal(new Set(ids).size, ids.length, 'ids are unique')
    assert.ok(s.events.every((e) => !Number.isNaN(Date.parse(e.time))))
    // The log lines come from the events, with the fields they always had.
    const woke = s.lines.find((l) => l.msg === 'woke')
    assert.equal(woke?.backend, 'a')
    assert.equal(woke?.provider, 'memory')
    assert.equal(woke?.from, 'paused')
    assert.ok(s.lines.some((l) => l.msg === 'asleep' && l.mode === 'stop'))
    assert.ok(s.lines.some((l) => l.msg === 'removed' && l.backend === 'a'))
    s.registry.close()
  })

  it('says why a sleep is refused (in flight, a provider refusal) and why a wake or sleep failed', async () => {
    const s = await setup([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }])
    const b = s.registry.get('memory:a')
    assert.ok(b)
    b.started(true)
    assert.deepEqual(await b.sleepNow(), { result: 'refused', reason: 'inflight: 1' })
    const refused = s.events.at(-1)
    assert.ok(refused?.type === 'sleep.refused')
    assert.equal(refused.reason, 'inflight: 1')
    b.finished()

    s.provider.failSleep.set('stop', new RelightError('RELIGHT_ERR_SLEEP_REFUSED', 'node-b saw traffic 3s ago'))
    assert.deepEqual(await b.sleepNow(), { result: 'refused', reason: 'node-b saw traffic 3s ago' })
    const shared = s.events.at(-1)
    assert.ok(shared?.type === 'sleep.refused')
    assert.equal(shared.code, 'RELIGHT_ERR_SLEEP_REFUSED')

    s.provider.failSleep.set('stop', new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'stop failed'))
    s.provider.failSleep.set('pause', new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'pause failed too'))
    const failed = await b.sleepNow()
    assert.equal(failed.result, 'failed')
    const sleepFailed = s.events.at(-1)
    assert.ok(sleepFailed?.type === 'sleep.failed')
    assert.equal(sleepFailed.reason, 'pause failed too')
    assert.ok(s.lines.some((l) => l.msg === 'sleep failed' && l.code === 'RELIGHT_ERR_PROVIDER_FAILED'))

    s.provider.failSleep.clear()
    assert.equal((await b.sleepNow()).result, 'done')
    assert.equal(s.events.at(-1)?.type, 'sleep.done')
    assert.deepEqual(await b.sleepNow(), { result: 'asleep' }, 'asleep already: nothing to refuse')

    s.provider.failWake = new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'engine said no')
    await assert.rejects(s.registry.wake(b))
    const wakeFailed = s.events.at(-1)
    assert.ok(wakeFailed?.type === 'wake.failed')
    assert.equal(wakeFailed.code, 'RELIGHT_ERR_PROVIDER_FAILED')
    assert.equal(wakeFailed.reason, 'engine said no')
    s.registry.close()
  })

  it('reports a provider going down once and coming back', async () => {
    const s = await setup([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }])
    s.provider.failList = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'socket gone')
    await s.registry.resync(s.provider)
    await s.registry.resync(s.provider)
    s.provider.failList = undefined
    await s.registry.resync(s.provider)
    assert.deepEqual(s.types().slice(-2), ['provider.down', 'provider.up'])
    assert.ok(s.lines.some((l) => l.msg === 'provider available again'))
    s.registry.close()
  })

  it('emits nothing on the hot path (/auth of an awake backend)', async () => {
    const s = await setup([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }])
    const app = buildApp({}, { registry: s.registry, logger: pino({ level: 'silent' }) })
    const count = s.events.length
    for (let i = 0; i < 20; i++) {
      const res = await app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com' } })
      assert.equal(res.statusCode, 200)
    }
    assert.equal(s.events.length, count)
    await app.close()
    s.registry.close()
  })

  it('keeps delivering when a listener throws, and reports the throw', () => {
    const errors: unknown[] = []
    const events = new LifecycleEvents((err) => errors.push(err))
    const seen: string[] = []
    events.subscribe(() => {
      throw new Error('bad listener')
    })
    const stop = events.subscribe((e) => seen.push(e.type))
    events.emit({ type: 'provider.up', provider: 'x', backends: 0 })
    stop()
    events.emit({ type: 'provider.up', provider: 'x', backends: 0 })
    assert.deepEqual(seen, ['provider.up'])
    assert.equal(errors.length, 2)
  })

  it('the "sleep refused" log line carries what the event says: cpu_pct of a busy refusal, the code of a provider refusal', () => {
    const lines: Record<string, unknown>[] = []
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>)
        cb()
      },
    })
    const events = new LifecycleEvents()
    const stop = logEvents(events, pino({ level: 'info' }, sink))
    const ref = { key: 'process:a', name: 'a', provider: 'process' }
    events.emit({ ...ref, type: 'sleep.refused', mode: 'stop', reason: 'busy', cpu_pct: 42.5 })
    events.emit({ ...ref, type: 'sleep.refused', mode: 'stop', reason: 'the engine said no', code: 'RELIGHT_ERR_SLEEP_REFUSED' })
    events.emit({ ...ref, type: 'sleep.refused', mode: 'stop', reason: 'not idle' })
    stop()
    const refused = lines.filter((l) => l.msg === 'sleep refused').map(({ backend, provider, mode, reason, cpu_pct, code }) => ({ backend, provider, mode, reason, cpu_pct, code }))
    assert.deepEqual(refused, [
      { backend: 'a', provider: 'process', mode: 'stop', reason: 'busy', cpu_pct: 42.5, code: undefined },
      { backend: 'a', provider: 'process', mode: 'stop', reason: 'the engine said no', cpu_pct: undefined, code: 'RELIGHT_ERR_SLEEP_REFUSED' },
    ])
  })
})
