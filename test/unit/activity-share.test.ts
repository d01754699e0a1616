import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import PQueue from 'p-queue'
import pino from 'pino'
import { ActivitySharer, HOLD_MS } from '../../sidecar/core/activity-share.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { FakeSharedEngine } from '../fakes/shared-engine.js'
import { deferred } from '../fakes/memory-provider.js'
import { drain, until } from '../helpers/wait.js'

const IDLE = 8000
const log = pino({ level: 'silent' })

function setup() {
  const clock = { now: 1_000_000 }
  const engine = new FakeSharedEngine(() => clock.now)
  engine.seen('a')
  const state = { inflight: 0, asleep: 0 }
  const sharer = new ActivitySharer(engine, 'a', {
    now: () => clock.now,
    queue: new PQueue({ concurrency: 8 }),
    closing: new AbortController().signal,
    log: () => log,
    idle: () => IDLE,
    inflight: () => state.inflight,
    asleep: () => state.asleep++,
  })
  const writes = () => engine.calls.recordActivity.length
  return { clock, engine, sharer, state, writes }
}

describe('ActivitySharer', () => {
  it('writes at once on the first request after a quiet spell, without waiting for a tick', async () => {
    const { sharer, writes, clock } = setup()
    sharer.touched(clock.now)
    await until(() => writes() === 1, 'the immediate write')
  })

  it('writes at most every idle_timeout/4 while traffic goes on, from the tick, with agoMs', async () => {
    const { sharer, writes, clock, engine } = setup()
    sharer.touched(clock.now)
    await until(() => writes() === 1, 'first write')
    await drain()
    clock.now += 500
    sharer.touched(clock.now) // within idle/4 of the landed write: no immediate write
    sharer.tick(clock.now)
    await drain()
    assert.equal(writes(), 1)
    clock.now += IDLE / 4 - 500
    sharer.tick(clock.now)
    await until(() => writes() === 2, 'second write at idle/4')
    assert.equal(engine.calls.recordActivity[1]?.agoMs, IDLE / 4 - 500, 'the last request was this long before the write')
    await drain()
    // no traffic since: the tick writes nothing
    clock.now += IDLE
    sharer.tick(clock.now)
    await drain()
    assert.equal(writes(), 2)
  })

  it('keeps writing (agoMs 0) while requests are in flight, with no new request', async () => {
    const { sharer, writes, clock, engine, state } = setup()
    state.inflight = 1
    sharer.touched(clock.now)
    await until(() => writes() === 1, 'first write')
    for (let i = 2; i <= 4; i++) {
      await drain()
      clock.now += IDLE / 4
      sharer.tick(clock.now)
      await until(() => writes() === i, `write ${i}`)
    }
    assert.deepEqual(engine.calls.recordActivity.map((w) => w.agoMs), [0, 0, 0, 0])
  })

  it('retries a failed write after 250 ms doubling, and at once when the view reconnects', async () => {
    const { sharer, writes, clock, engine } = setup()
    engine.failRecord = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'engine down')
    sharer.touched(clock.now)
    await until(() => writes() === 1, 'first attempt')
    await drain()
    clock.now += 249
    sharer.tick(clock.now)
    sharer.touched(clock.now) // a request meanwhile does not bypass the retry timer
    await drain()
    assert.equal(writes(), 1)
    clock.now += 1
    sharer.tick(clock.now)
    await until(() => writes() === 2, 'retry after 250 ms')
    await drain()
    clock.now += 499
    sharer.tick(clock.now)
    await drain()
    assert.equal(writes(), 2, 'the second retry waits 500 ms')
    engine.failRecord = undefined
    sharer.reconnected()
    await until(() => writes() === 3, 'retry at once on reconnect')
    await drain()
    assert.equal(sharer.failed, 0)
  })

  it('holds a request only after idle_timeout/2 of shared silence, bounded by HOLD_MS', async () => {
    const { sharer, clock, engine } = setup()
    // another sidecar's write was seen just now (a change since the view started): no hold
    engine.foreignWrite('a')
    assert.equal(sharer.hold(clock.now), undefined)
    clock.now += IDLE / 2 - 1
    assert.equal(sharer.hold(clock.now), undefined)
    await drain()
    const landed = deferred()
    engine.holdRecord = landed.promise
    clock.now += IDLE // silence: the request waits for its write
    const started = Date.now()
    const held = sharer.hold(clock.now)
    assert.ok(held, 'a hold after idle/2 of silence')
    assert.equal(await held, 'unconfirmed')
    const waited = Date.now() - started
    assert.ok(waited >= HOLD_MS - 20 && waited < HOLD_MS + 1500, `waited ${waited} ms`)
    landed.resolve()
    engine.holdRecord = undefined
    await drain()
    // its write landed: the next request within idle/2 is not held
    assert.equal(sharer.hold(clock.now + 100), undefined)
    clock.now += IDLE
    assert.equal(await sharer.hold(clock.now), 'awake')
  })

  it('right after the view (re)started, the silence is unknown: the first request holds for its write', async () => {
    const { sharer, clock, engine } = setup()
    // seenAt is the start: it says nothing about the token's age; another sidecar may judge it idle now
    const landed = deferred()
    engine.holdRecord = landed.promise
    const held = sharer.hold(clock.now + 10)
    assert.ok(held, 'held at once after a (re)start')
    landed.resolve()
    assert.equal(await held, 'awake')
    await drain()
    assert.equal(sharer.hold(clock.now + 20), undefined, 'not once our write landed')
    // a reconnect soon after a write (inside the idle/4 cadence) holds again, with a write of its own
    clock.now += 1000
    sharer.reconnected()
    const again = sharer.hold(clock.now)
    assert.ok(again, 'held after a reconnect')
    assert.equal(await again, 'awake')
    assert.equal(engine.calls.recordActivity.length, 2)
  })

  it('a malformed write answer is a failed write, not an unhandled rejection', async () => {
    const { sharer, clock, engine } = setup()
    engine.recordActivity = async () => ({ state: 'sideways' }) as never
    sharer.touched(clock.now + IDLE)
    await until(() => sharer.failed === 1, 'the write failed')
  })

  it('an asleep answer (another sidecar slept it) is reported to the request and makes the core wake', async () => {
    const { sharer, clock, engine, state } = setup()
    engine.recordAsleep = true
    clock.now += IDLE
    assert.equal(await sharer.hold(clock.now), 'asleep')
    assert.equal(state.asleep, 1)
  })
})
