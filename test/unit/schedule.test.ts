/**
 * Schedules (issue 26 item 3): `awake_during` / `asleep_during` windows, parsed and evaluated
 * with Intl only, across Europe/Berlin's DST changes (last Sunday of March and of October), and
 * applied by the registry with an injected wall clock: woken at an awake window's start and
 * never slept in it; refused (503 RELIGHT_ERR_SCHEDULED_ASLEEP, Retry-After = the window's end)
 * and put to sleep inside an asleep window.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Stamped } from '../../sidecar/core/events.js'
import { Registry } from '../../sidecar/core/registry.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { FastLane } from '../../sidecar/core/fast-lane.js'
import { Schedule } from '../../sidecar/core/schedule.js'
import { readLabels } from '../../sidecar/providers/kit/labels.js'
import { parseTags } from '../../sidecar/providers/slicer/tags.js'
import { buildApp } from '../../sidecar/server/app.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const log = pino({ level: 'silent' })
const upstream = okUpstream()

const at = (iso: string) => Date.parse(iso)

describe('Schedule (Intl only)', () => {
  it('Mon-Fri 08:00-18:00 Europe/Berlin: inside and outside, in winter (UTC+1) and summer (UTC+2)', () => {
    const s = Schedule.parse('Mon-Fri 08:00-18:00 Europe/Berlin')
    // Wed 2026-01-14: 08:00 Berlin = 07:00Z
    assert.equal(s.contains(at('2026-01-14T06:59:00Z')), false)
    assert.equal(s.contains(at('2026-01-14T07:00:00Z')), true)
    assert.equal(s.contains(at('2026-01-14T16:59:59Z')), true)
    assert.equal(s.contains(at('2026-01-14T17:00:00Z')), false)
    // Wed 2026-07-15: 08:00 Berlin = 06:00Z
    assert.equal(s.contains(at('2026-07-15T06:00:00Z')), true)
    assert.equal(s.contains(at('2026-07-15T05:59:00Z')), false)
    // Saturday
    assert.equal(s.contains(at('2026-07-18T10:00:00Z')), false)
  })

  it('across the spring DST change (Sun 2026-03-29): the Monday window starts at 06:00Z, the Friday before at 07:00Z', () => {
    const s = Schedule.parse('Mon-Fri 08:00-18:00 Europe/Berlin')
    // Friday 2026-03-27 18:00 CET = 17:00Z: the next change is Monday 08:00 CEST = 06:00Z.
    assert.equal(s.nextChange(at('2026-03-27T17:00:00Z')), at('2026-03-30T06:00:00Z'))
    assert.equal(s.nextChange(at('2026-03-27T12:00:00Z')), at('2026-03-27T17:00:00Z'))
    assert.equal(s.describe(at('2026-03-30T06:00:00Z')), 'Mon 08:00 Europe/Berlin')
  })

  it('across the autumn DST change (Sun 2026-10-25): the Monday window starts at 07:00Z', () => {
    const s = Schedule.parse('Mon-Fri 08:00-18:00 Europe/Berlin')
    assert.equal(s.nextChange(at('2026-10-23T15:00:00Z')), at('2026-10-23T16:00:00Z')) // Fri 18:00 CEST
    assert.equal(s.nextChange(at('2026-10-23T16:30:00Z')), at('2026-10-26T07:00:00Z'))
  })

  it('a window running through the DST night: Sun 01:00-04:00 lasts 2 h in March and 4 h in October', () => {
    const s = Schedule.parse('Sun 01:00-04:00 Europe/Berlin')
    // 2026-03-29: 01:00 CET = 00:00Z; 04:00 CEST = 02:00Z
    assert.equal(s.nextChange(at('2026-03-28T23:00:00Z')), at('2026-03-29T00:00:00Z'))
    assert.equal(s.nextChange(at('2026-03-29T00:00:00Z')), at('2026-03-29T02:00:00Z'))
    // 2026-10-25: 01:00 CEST = 23:00Z the day before; 04:00 CET = 03:00Z
    assert.equal(s.nextChange(at('2026-10-24T22:00:00Z')), at('2026-10-24T23:00:00Z'))
    assert.equal(s.nextChange(at('2026-10-24T23:00:00Z')), at('2026-10-25T03:00:00Z'))
  })

  it('a boundary inside the hour the clocks change: both passes of a repeated time, the jump over a skipped one, the change itself', () => {
    const autumn = Schedule.parse('Sun 01:00-02:30 Europe/Berlin') // 2026-10-25: 03:00 CEST → 02:00 CET at 01:00Z
    assert.equal(autumn.nextChange(at('2026-10-25T00:15:00Z')), at('2026-10-25T00:30:00Z')) // 02:15 CEST → 02:30 CEST
    assert.equal(autumn.nextChange(at('2026-10-25T00:45:00Z')), at('2026-10-25T01:00:00Z')) // 02:45 CEST: back inside at 02:00 CET
    assert.equal(autumn.nextChange(at('2026-10-25T01:10:00Z')), at('2026-10-25T01:30:00Z')) // 02:10 CET → 02:30 CET, 20 min
    assert.equal(autumn.describe(at('2026-10-25T01:30:00Z')), 'Sun 02:30 Europe/Berlin')
    const spring = Schedule.parse('Sun 00:00-02:30 Europe/Berlin') // 2026-03-29: 02:00 CET → 03:00 CEST at 01:00Z
    assert.equal(spring.nextChange(at('2026-03-29T00:30:00Z')), at('2026-03-29T01:00:00Z')) // 02:30 is skipped: 03:00 CEST
    assert.equal(spring.contains(at('2026-03-29T01:00:00Z')), false) // nextChange agrees with contains
    assert.equal(spring.describe(at('2026-03-29T01:00:00Z')), 'Sun 03:00 Europe/Berlin')
    assert.equal(Schedule.parse('Sun 02:30-06:00 Europe/Berlin').nextChange(at('2026-03-29T00:30:00Z')), at('2026-03-29T01:00:00Z'))
  })

  it('past midnight, wrapping day ranges, several windows, every day', () => {
    const s = Schedule.parse('Fri-Mon 22:00-02:00 UTC; Wed 12:00-13:00 UTC')
    assert.equal(s.contains(at('2026-01-16T23:00:00Z')), true) // Fri 23:00
    assert.equal(s.contains(at('2026-01-17T01:59:00Z')), true) // Sat 01:59 (Fri's window)
    assert.equal(s.contains(at('2026-01-20T01:00:00Z')), true) // Tue 01:00 (Mon's window)
    assert.equal(s.contains(at('2026-01-21T01:00:00Z')), false) // Wed 01:00
    assert.equal(s.contains(at('2026-01-21T12:30:00Z')), true)
    const always = Schedule.parse('00:00-24:00 UTC')
    assert.equal(always.contains(at('2026-01-21T12:30:00Z')), true)
    assert.equal(always.nextChange(at('2026-01-21T12:30:00Z')), undefined)
  })

  it('refuses bad text with what was expected', () => {
    assert.throws(() => Schedule.parse('Mon-Fri 8-18'), /time range such as 08:00-18:00/)
    assert.throws(() => Schedule.parse('Mon-Fry 08:00-18:00'), /"Fry" is not a day/)
    assert.throws(() => Schedule.parse('Mon 08:00-25:00'), /25:00 is not a time of day/)
    assert.throws(() => Schedule.parse('Mon 08:00-18:00 Mars/Olympus'), /"Mars\/Olympus" is not a time zone/)
    assert.throws(() => Schedule.parse(' ; '), /expected windows/)
    assert.throws(() => Schedule.parse('Mon-Fri-Sat 08:00-18:00 UTC'), /"Mon-Fri-Sat" is not a day range/)
    assert.throws(() => Schedule.parse('Monkey 08:00-18:00 UTC'), /"Monkey" is not a day/)
    assert.equal(Schedule.parse('Monday-Friday 08:00-18:00 UTC').contains(at('2026-12-11T12:00:00Z')), true) // full names
  })
})

describe('awake_during / asleep_during: every input, errors naming the key', () => {
  const problems = (yaml: string): string[] => {
    try {
      parseConfig(yaml, 't', {})
      return []
    } catch (err) {
      return [...((err as { problems?: string[] }).problems ?? [String(err)])]
    }
  }
  for (const key of ['awake_during', 'asleep_during']) {
    it(`${key}: defaults, provider blocks, app entries, labels and tags accept a schedule and refuse a bad one`, () => {
      const good = 'Mon-Fri 08:00-18:00 Europe/Berlin'
      const bad = 'Mon-Fri 8-18'
      const inputs: Record<string, (v: string) => string[]> = {
        defaults: (v) => problems(`defaults:\n  ${key}: "${v}"\n`),
        'defaults (list)': (v) => problems(`defaults:\n  ${key}: ["${v}", "Sat 10:00-12:00 UTC"]\n`),
        'providers.docker': (v) => problems(`providers:\n  docker:\n    ${key}: "${v}"\n`),
        'process app': (v) => problems(`providers:\n  process:\n    apps:\n      - { name: a, command: [x], ${key}: "${v}" }\n`),
        label: (v) => readLabels({ 'relight.domain': 'a.localhost', [`relight.${key}`]: v }, 'relight').problems,
        tag: (v) => parseTags(['a.example.com', `relight.${key}=${v}`]).problems,
      }
      for (const [input, check] of Object.entries(inputs)) {
        assert.deepEqual(check(good), [], `${input} accepts ${good}`)
        const refused = check(bad)
        assert.equal(refused.length, 1, `${input} refuses ${bad}: ${JSON.stringify(refused)}`)
        assert.match(refused[0] ?? '', new RegExp(`${key}.*08:00-18:00`), input)
      }
      assert.match(problems(`defaults:\n  ${key}: "Mon-Fri-Sat 08:00-18:00 UTC"\n`)[0] ?? '', new RegExp(`${key}.*"Mon-Fri-Sat" is not a day range`))
      assert.match(problems(`defaults:\n  ${key}: "Monkey 08:00-18:00 UTC"\n`)[0] ?? '', new RegExp(`${key}.*"Monkey" is not a day`))
      assert.match(problems(`defaults:\n  ${key}: 5\n`)[0] ?? '', new RegExp(`${key}.*expected windows as text`))
      assert.match(problems(`defaults:\n  ${key}: "${Array(65).fill('Mon 08:00-09:00 UTC').join('; ')}"\n`)[0] ?? '', new RegExp(`${key}.*65 windows: at most 64`))
    })
  }
  it('a label schedule reaches the backend settings', () => {
    const read = readLabels({ 'relight.domain': 'a.localhost', 'relight.awake_during': 'Mon 09:00-10:00 UTC' }, 'relight')
    assert.equal(read.settings.awake_during?.text, 'Mon 09:00-10:00 UTC')
  })
})

describe('schedules in the registry (injected wall clock)', () => {
  async function setup(settings: Record<string, string>, extra: Record<string, unknown> = {}, before?: (p: MemoryProvider) => void, lane?: FastLane) {
    const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n`, 'test')
    const parsed = parseConfig(`providers:\n  process:\n    apps:\n      - { name: a, command: [x], ${Object.entries(settings).map(([k, v]) => `${k}: "${v}"`).join(', ')} }\n`, 't')
    const app = parsed.providers.process?.[0]?.apps[0] as unknown as Record<string, unknown>
    const provider = new MemoryProvider([
      { id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [upstream.address], settings: { awake_during: app.awake_during, asleep_during: app.asleep_during, ...extra } as never },
    ])
    before?.(provider)
    const clock = { now: 1_000_000, wall: at('2026-03-27T16:59:00Z') } // Fri 17:59 CET
    const registry = new Registry([provider], config, log, () => clock.now, () => clock.wall)
    if (lane !== undefined) registry.useFastLane(lane)
    const events: Stamped[] = []
    registry.events.subscribe((e) => events.push(e))
    await registry.start()
    const http = buildApp({}, { registry, logger: log })
    await http.ready()
    const backend = registry.get('memory:a')!
    return {
      provider,
      registry,
      clock,
      events,
      backend,
      auth: (headers: Record<string, string> = {}) => http.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', ...headers } }),
      close: async () => {
        registry.close()
        await http.close()
      },
    }
  }

  it('awake_during: woken at the window start (Monday after the spring DST change), never slept inside, slept by idle_timeout after', async () => {
    const c = await setup({ awake_during: 'Mon-Fri 08:00-18:00 Europe/Berlin' })
    try {
      // Fri 17:59 CET: inside, asleep → the sweep wakes it.
      await c.registry.sweep()
      await until(() => c.backend.phase === 'running', 'woken for the window')
      assert.equal(c.provider.calls.wake, 1)
      // Idle for much longer than idle_timeout, still inside: refused with reason awake_during, once per idle_timeout.
      c.clock.now += 50_000
      c.clock.wall = at('2026-03-27T16:59:50Z')
      await c.registry.sweep()
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'running')
      const refused = c.events.filter((e) => e.type === 'sleep.refused')
      assert.equal(refused.length, 1, JSON.stringify(refused))
      assert.equal(refused[0]?.type === 'sleep.refused' && refused[0].reason, 'awake_during')
      // Fri 18:00 CET: outside; idle since the refusal for > idle_timeout → it sleeps.
      c.clock.wall = at('2026-03-27T17:00:00Z')
      c.clock.now += 11_000
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'asleep')
      const done = c.events.find((e) => e.type === 'sleep.done')
      assert.ok(done?.type === 'sleep.done' && done.cause === 'idle')
      // The weekend (and the DST change) passes: nothing wakes it.
      c.clock.wall = at('2026-03-30T05:59:00Z') // Mon 07:59 CEST
      c.clock.now += 60_000
      await c.registry.sweep()
      assert.equal(c.provider.calls.wake, 1)
      // Mon 08:00 CEST = 06:00Z: woken.
      c.clock.wall = at('2026-03-30T06:00:00Z')
      await c.registry.sweep()
      await until(() => c.backend.phase === 'running', 'woken on Monday')
      assert.equal(c.provider.calls.wake, 2)
    } finally {
      await c.close()
    }
  })

  it('a group member inside awake_during keeps its whole group awake', async () => {
    const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, wake_timeout: 2s }\n`, 'test')
    const awake = Schedule.parse('Fri 08:00-18:00 Europe/Berlin')
    const provider = new MemoryProvider([
      { id: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [upstream.address], group: 'g', settings: { awake_during: awake } },
      { id: 'db', hosts: [], state: 'running', upstreams: [upstream.address], group: 'g' },
    ])
    const clock = { now: 1_000_000, wall: at('2026-03-27T12:00:00Z') }
    const registry = new Registry([provider], config, log, () => clock.now, () => clock.wall)
    try {
      await registry.start()
      clock.now += 20_000
      await registry.sweep()
      assert.equal(registry.get('memory:db')?.phase, 'running')
      assert.equal(registry.get('memory:web')?.phase, 'running')
      assert.deepEqual(provider.calls.sleep, [])
    } finally {
      registry.close()
    }
  })

  it('a request to one group member does not wake a sibling inside its own asleep_during window', async () => {
    const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 60s, wake_timeout: 2s }\n`, 'test')
    const provider = new MemoryProvider([
      { id: 'web', hosts: ['web.example.com'], state: 'stopped', upstreams: [upstream.address], group: 'g' },
      { id: 'worker', hosts: ['worker.example.com'], state: 'stopped', upstreams: [upstream.address], group: 'g', settings: { asleep_during: Schedule.parse('00:00-24:00 UTC') } },
      { id: 'db', hosts: [], state: 'stopped', upstreams: [upstream.address], group: 'g' },
    ])
    const registry = new Registry([provider], config, log)
    try {
      await registry.start()
      const web = registry.get('memory:web')
      assert.ok(web)
      await registry.wake(web)
      // the outside-window sibling starts with the group; the one inside its window does not
      await until(() => registry.get('memory:db')?.phase === 'running', 'db woken with its group')
      assert.equal(registry.get('memory:worker')?.phase, 'asleep')
      assert.equal(provider.calls.wake, 2, 'web and db only')
      assert.equal(provider.backends.get('worker')?.state, 'stopped')
    } finally {
      registry.close()
    }
  })

  it('asleep_during: put to sleep at the window start, wakes refused with Retry-After = the window end, woken after it', async () => {
    const c = await setup({ asleep_during: 'Sun 01:00-04:00 Europe/Berlin' })
    try {
      // Sat 2026-03-28 12:00Z: outside; a request wakes it.
      c.clock.wall = at('2026-03-28T12:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
      assert.equal(c.backend.phase, 'running')
      // Sun 01:00 CET (00:00Z), activity just now: put to sleep all the same.
      c.clock.wall = at('2026-03-29T00:00:00Z')
      c.backend.started(false)
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'asleep')
      const done = c.events.find((e) => e.type === 'sleep.done')
      assert.ok(done?.type === 'sleep.done' && done.cause === 'schedule', JSON.stringify(done))
      // 01:30 CET: refused until 04:00 CEST (= 02:00Z, the clocks jumped): Retry-After 1.5 h, not 2.5 h.
      c.clock.wall = at('2026-03-29T00:30:00Z')
      const res = await c.auth()
      assert.equal(res.statusCode, 503)
      assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_SCHEDULED_ASLEEP')
      assert.equal(res.headers['retry-after'], String(90 * 60))
      assert.match(JSON.parse(res.body).detail, /until Sun 04:00 Europe\/Berlin/)
      assert.equal(c.provider.calls.wake, 1)
      // A browser gets a page saying until when.
      const page = await c.auth({ accept: 'text/html', 'x-forwarded-method': 'GET' })
      assert.equal(page.statusCode, 503)
      assert.match(page.body, /asleep by schedule.*until Sun 04:00 Europe\/Berlin/)
      // A second refusal in the same window (the page above was one): no second event.
      const refusals = c.events.filter((e) => e.type === 'wake.refused')
      assert.equal(refusals.length, 1)
      // 04:00 CEST: served again.
      c.clock.wall = at('2026-03-29T02:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
      assert.equal(c.provider.calls.wake, 2)
    } finally {
      await c.close()
    }
  })

  it('asleep_during with a request in flight at the window start: new requests get 503 at once, and it sleeps when the first one ends', async () => {
    const c = await setup({ asleep_during: 'Sun 01:00-04:00 Europe/Berlin' })
    try {
      c.clock.wall = at('2026-03-28T12:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
      c.backend.started(true) // a long request (or a websocket) in flight
      c.clock.wall = at('2026-03-29T00:00:00Z') // Sun 01:00 CET
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'running', 'not stopped under the request in flight')
      const res = await c.auth()
      assert.equal(res.statusCode, 503, 'a new request inside the window is refused')
      assert.equal(JSON.parse(res.body).code, 'RELIGHT_ERR_SCHEDULED_ASLEEP')
      assert.equal(res.headers['retry-after'], String(2 * 3600)) // 01:00 CET to 04:00 CEST
      c.backend.finished()
      c.clock.now += 1000
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'asleep')
      const done = c.events.find((e) => e.type === 'sleep.done')
      assert.ok(done?.type === 'sleep.done' && done.cause === 'schedule', JSON.stringify(done))
      // After the window: served again.
      c.clock.wall = at('2026-03-29T02:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
    } finally {
      await c.close()
    }
  })

  it('always_on ignores asleep_during: a request to an always_on backend that failed to start is served inside the window', async () => {
    const c = await setup({ asleep_during: 'Sun 01:00-04:00 Europe/Berlin' }, { always_on: true }, (p) => {
      p.failWake = new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'first start failed')
    })
    try {
      await until(() => c.backend.lastError !== undefined, 'the first start failed')
      c.provider.failWake = undefined
      c.clock.wall = at('2026-03-29T00:30:00Z') // inside the window
      const res = await c.auth()
      assert.equal(res.statusCode, 200, res.body)
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'running')
    } finally {
      await c.close()
    }
  })

  it('a schedule sleep that fails is retried after max(idle_timeout, 10s), not on every sweep tick', async () => {
    const c = await setup({ asleep_during: 'Sun 01:00-04:00 Europe/Berlin' })
    try {
      c.clock.wall = at('2026-03-28T12:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
      const err = new RelightError('RELIGHT_ERR_PROVIDER_FAILED', 'engine says no')
      c.provider.failSleep.set('stop', err)
      c.provider.failSleep.set('pause', err)
      c.clock.wall = at('2026-03-29T00:00:00Z')
      for (let i = 0; i < 5; i++) {
        c.clock.now += 1000
        await c.registry.sweep()
      }
      assert.equal(c.events.filter((e) => e.type === 'sleep.failed').length, 1)
      c.provider.failSleep.clear()
      c.clock.now += 10_000 // idle_timeout (10 s) after the failure
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'asleep')
    } finally {
      await c.close()
    }
  })

  it('the window end told to refused clients follows a changed schedule (an all-day window narrowed by a label edit)', async () => {
    const c = await setup({ asleep_during: '00:00-24:00 UTC' })
    try {
      c.clock.wall = at('2026-12-07T12:00:00Z')
      let res = await c.auth()
      assert.equal(res.headers['retry-after'], '3600')
      assert.match(JSON.parse(res.body).detail, /until further notice/)
      c.provider.put({ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [upstream.address], settings: { asleep_during: Schedule.parse('11:00-13:00 UTC') } })
      await until(() => c.backend.settings.asleep_during?.text === '11:00-13:00 UTC', 'the new schedule applied')
      res = await c.auth()
      assert.equal(res.headers['retry-after'], '3600')
      assert.match(JSON.parse(res.body).detail, /until Mon 13:00 UTC/)
      c.clock.wall = at('2026-12-08T11:30:00Z')
      res = await c.auth()
      assert.equal(res.headers['retry-after'], '5400')
      assert.match(JSON.parse(res.body).detail, /until Tue 13:00 UTC/)
    } finally {
      await c.close()
    }
  })

  it('fast_lane: the flag goes at the window start, so Caddy asks the sidecar (which refuses) while the request in flight drains', async () => {
    const tmp = tempDir('relight-sched-lane-')
    const lane = new FastLane({ dir: `${tmp.dir}/awake` })
    lane.reset()
    const c = await setup({ asleep_during: 'Sun 01:00-04:00 Europe/Berlin' }, { fast_lane: true }, undefined, lane)
    try {
      c.clock.wall = at('2026-03-28T12:00:00Z')
      assert.equal((await c.auth()).statusCode, 200)
      assert.equal(c.backend.fastLaneOpen, true)
      c.backend.started(true)
      c.clock.wall = at('2026-03-29T00:00:00Z')
      await c.registry.sweep()
      assert.equal(c.backend.phase, 'running')
      assert.equal(c.backend.fastLaneOpen, false, 'no flag inside the window')
    } finally {
      await c.close()
      tmp.remove()
    }
  })
})
