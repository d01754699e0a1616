/**
 * `max_awake: 2` through real Caddy with five process apps (issue 26 item 5): never more than 2
 * awake at any moment, the least recently active one is put to sleep to make room, an open
 * stream (server-sent events through Caddy, counted in flight by the access log) keeps its app
 * from being evicted, and with every awake app streaming the wake is refused with 503
 * RELIGHT_ERR_CAPACITY and Retry-After.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { EVICTION_GRACE_MS } from '../../sidecar/core/backend.js'
import type { Stamped } from '../../sidecar/core/events.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const NAMES = ['a', 'b', 'c', 'd', 'e']
const TOKEN = randomBytes(32).toString('hex')

describe('max_awake 2 with five process apps, through Caddy', { skip: caddySkip() }, () => {
  let sc: TestSidecar
  let caddy: RunningCaddy
  const events: Stamped[] = []
  let most = 0
  let sampler: NodeJS.Timeout | undefined
  const streams: AbortController[] = []

  /** Apps holding room: awake, waking, being put to sleep, or with a live process. */
  const awakeNow = () => [...sc.sidecar.registry.all()].filter((b) => b.phase !== 'asleep' || b.info.state === 'running').map((b) => b.info.name).sort()
  const note = () => {
    most = Math.max(most, awakeNow().length)
  }

  before(async () => {
    let apps = ''
    for (const name of NAMES) {
      apps += `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${await freePort()}, stdout: "null", grace_period: 2s }\n`
    }
    sc = await startTestSidecar(`admin: { token: "${TOKEN}" }\nmax_awake: 2\ndefaults: { idle_timeout: 10m, wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n${apps}`)
    // Every transition is checked the moment it is reported, and the state sampled in between.
    sc.sidecar.registry.events.subscribe((e) => {
      events.push(e)
      note()
    })
    sampler = setInterval(note, 5)
    caddy = await startCaddy({ sidecar: sc.address, accessLog: sc.caddyAccessLog })
    await until(() => sc.sidecar.registry.countInflight, 'Caddy to connect its access log')
  })
  after(async () => {
    clearInterval(sampler)
    for (const s of streams) s.abort()
    await caddy?.close()
    await sc?.close()
  })

  async function get(host: string): Promise<{ status: number; code: string | undefined; retryAfter: string | undefined; body: string }> {
    const res = await request(caddy.url, { headers: { host }, signal: AbortSignal.timeout(20_000) })
    const body = await res.body.text()
    return { status: res.statusCode, code: res.headers['x-relight-reply'] as string | undefined, retryAfter: res.headers['retry-after'] as string | undefined, body }
  }

  /** An open event stream through Caddy, until aborted. */
  async function stream(host: string): Promise<AbortController> {
    const controller = new AbortController()
    streams.push(controller)
    const res = await request(`${caddy.url}/sse`, { headers: { host }, signal: controller.signal })
    assert.equal(res.statusCode, 200)
    res.body.on('error', () => undefined)
    // the first event arrived: the request is in flight
    await new Promise<void>((resolve) => res.body.once('data', () => resolve()))
    return controller
  }

  /** Past the eviction grace (min(idle_timeout, 5 s) after an app's last activity): the rule under test is about time. */
  const grace = () => new Promise((resolve) => setTimeout(resolve, EVICTION_GRACE_MS + 300))

  const evicted = () => events.flatMap((e) => (e.type === 'sleep.done' && e.cause === 'evicted' ? [e.name] : []))

  it('never more than 2 awake; the least recently active sleeps; a stream protects its app; full and busy: 503 RELIGHT_ERR_CAPACITY', async (t) => {
    assert.equal((await get('a.localhost')).status, 200)
    assert.equal((await get('b.localhost')).status, 200)
    assert.equal((await get('a.localhost')).status, 200) // a is now more recent than b
    assert.deepEqual(awakeNow(), ['a', 'b'])
    // Just used: neither may be evicted yet (Backend.mayBeEvicted); after the grace both may.
    assert.equal((await get('c.localhost')).code, 'RELIGHT_ERR_CAPACITY')
    await grace()

    assert.match((await get('c.localhost')).body, /^c pid/)
    assert.deepEqual(evicted(), ['b'], 'b, the least recently active, made room for c')
    assert.deepEqual(awakeNow(), ['a', 'c'])

    // c streams (and becomes the least recently active: a is asked after it).
    const cStream = await stream('c.localhost')
    await until(() => sc.sidecar.registry.get('process:c')?.inflight === 1, 'the stream to c counted in flight')
    assert.equal((await get('a.localhost')).status, 200)
    await grace()
    assert.equal((await get('d.localhost')).status, 200)
    assert.deepEqual(evicted(), ['b', 'a'], 'c was the least recently active, but its stream kept it awake: a went')
    assert.deepEqual(awakeNow(), ['c', 'd'])

    // Both awake apps stream: nothing can make room.
    await stream('d.localhost')
    await until(() => sc.sidecar.registry.get('process:d')?.inflight === 1, 'the stream to d counted in flight')
    const refused = await get('e.localhost')
    t.diagnostic(`e with c and d streaming: ${refused.status} ${refused.code ?? ''} Retry-After ${refused.retryAfter ?? '-'}`)
    assert.equal(refused.status, 503)
    assert.equal(refused.code, 'RELIGHT_ERR_CAPACITY')
    assert.ok(Number(refused.retryAfter) > 0)
    assert.deepEqual(awakeNow(), ['c', 'd'])
    assert.ok(events.some((e) => e.type === 'wake.refused' && e.name === 'e' && e.code === 'RELIGHT_ERR_CAPACITY'))

    // c's stream ends: c may go now, and e wakes in its place.
    cStream.abort()
    await until(() => sc.sidecar.registry.get('process:c')?.inflight === 0, 'the end of c stream reported by the access log')
    await grace() // the stream's end is activity too
    assert.match((await get('e.localhost')).body, /^e pid/)
    assert.deepEqual(evicted(), ['b', 'a', 'c'])
    assert.deepEqual(awakeNow(), ['d', 'e'])

    const metrics = await request(`${sc.url}/_relight/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const text = await metrics.body.text()
    assert.equal(metrics.statusCode, 200)
    assert.match(text, /relight_sleep_causes_total\{provider="process",backend="c",cause="evicted"\} 1/)
    assert.match(text, /relight_wake_refusals_total\{provider="process",backend="e",code="RELIGHT_ERR_CAPACITY"\} 1/)
    // The status page's data: the eviction's reason on c, the refusal on e.
    const status = await request(`${sc.url}/_relight/admin/backends`, { headers: { authorization: `Bearer ${TOKEN}` } })
    const { backends } = (await status.body.json()) as { backends: { name: string; last_sleep_cause?: { cause: string; reason?: string }; last_wake_refused?: { code: string } }[] }
    const c = backends.find((b) => b.name === 'c')
    assert.equal(c?.last_sleep_cause?.cause, 'evicted')
    assert.match(c?.last_sleep_cause?.reason ?? '', /max_awake 2 \(global\): room for e/)
    t.diagnostic(`most awake at any sampled moment: ${most}`)
    assert.equal(most, 2)
  })
})
