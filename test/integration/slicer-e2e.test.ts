/**
 * End to end through real Caddy: client → Caddy (forward_auth) → sidecar → Slicer simulator,
 * whose VMs are real HTTP server processes on loopback addresses.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { Pool, request } from 'undici'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { SlicerSimulator } from '../fakes/slicer/simulator.js'

const TOKEN = 'e2e-token'
const skip = caddySkip()

describe('slicer end to end through Caddy', { skip, timeout: 120_000 }, () => {
  let sim: SlicerSimulator
  let sc: TestSidecar
  let caddy: RunningCaddy
  const vms: Record<string, string> = {}

  /** A request through Caddy with a Host header; body and the relight reply header. */
  async function get(host: string, path = '/'): Promise<{ status: number; body: string; reply: string | undefined; retryAfter: string | undefined }> {
    const res = await request(`${caddy.url}${path}`, { headers: { host, accept: 'application/json' } })
    const body = await res.body.text()
    const h = (name: string) => {
      const v = res.headers[name]
      return Array.isArray(v) ? v[0] : v
    }
    return { status: res.statusCode, body, reply: h('x-relight-reply'), retryAfter: h('retry-after') }
  }

  /** Create a node through the simulator's HTTP API, as a deploy tool would. */
  async function createViaApi(tags: string[]): Promise<string> {
    const res = await request(`${sim.url}/hostgroup/apps/nodes`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ tags }),
    })
    assert.equal(res.statusCode, 201)
    return ((await res.body.json()) as { hostname: string }).hostname
  }

  /** Make the sidecar list again now (a miss does, at most once a second) and wait for it. */
  async function relist(): Promise<void> {
    const before = sim.listCalls
    while (sim.listCalls === before) assert.equal((await get(`relist-${Math.random().toString(36).slice(2)}.apps.test`)).status, 404)
  }

  before(async () => {
    sim = await SlicerSimulator.start({ token: TOKEN, appPort: await freePort() })
    for (const tag of ['sleepy', 'idle', 'doomed', 'outage', 'rotated']) {
      vms[tag] = (await sim.createNode('apps', { tags: tag === 'idle' ? [tag, 'relight.idle_timeout=300ms'] : [tag] })).hostname
    }
    await sim.createNode('apps', { tags: ['busy'] })
    await sim.pause(vms.sleepy as string)
    sc = await startTestSidecar(
      [
        'base_domains: [apps.test]',
        'min_idle_timeout: 100ms',
        'providers:',
        '  slicer:',
        `    url: ${sim.url}`,
        `    token: ${TOKEN}`,
        '    host_group: apps',
        `    app_port: ${sim.node(vms.sleepy as string)?.port}`,
        '    idle_timeout: 10m',
        '    wake_timeout: 10s',
        '',
      ].join('\n'),
    )
    // Every Host on one port, as `*.apps.example.com` plus on-demand TLS would be in production.
    caddy = await startCaddy({
      sidecar: sc.address,
      sites: (port) => `http://:${port} {\n\tlog {\n\t\toutput net ${sc.caddyAccessLog}\n\t\tformat json\n\t}\n\timport relight ${sc.address}\n}\n`,
    })
  })

  after(async () => {
    await caddy?.close()
    await sc?.close()
    await sim?.close()
  })

  it('a paused VM resumes on its first request', async () => {
    const h = vms.sleepy as string
    assert.equal(sim.node(h)?.status, 'Paused')
    const res = await get('sleepy.apps.test', '/hello')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, new RegExp(`^${h} pid \\d+ GET /hello upstream-header=none`))
    assert.equal(sim.node(h)?.status, 'Running')
    assert.equal(sim.calls.get('POST /vm/:h/resume'), 1)
  })

  it('an idle VM is paused, and resumes on the next request', async () => {
    const h = vms.idle as string
    assert.equal((await get('idle.apps.test')).status, 200)
    await sim.waitFor(h, 'Paused') // relight.idle_timeout=300ms after that request
    const res = await get('idle.apps.test')
    assert.equal(res.status, 200, res.body)
    assert.equal(sim.node(h)?.status, 'Running')
  })

  it('a VM created through the API after start is routable on its first request', async () => {
    const h = await createViaApi(['fresh', 'fresh.example.org'])
    const res = await get('fresh.apps.test')
    assert.equal(res.status, 200, res.body)
    assert.match(res.body, new RegExp(`^${h} pid`))
    const exact = await get('fresh.example.org')
    assert.equal(exact.status, 200, exact.body)
  })

  it('a first-label tag does not serve outside base_domains', async () => {
    const res = await get('busy.attacker.example')
    assert.equal(res.status, 404)
    assert.equal(res.reply, 'RELIGHT_ERR_HOST_UNKNOWN')
  })

  it('a VM deleted through the API answers 404', async () => {
    const h = vms.doomed as string
    await sim.pause(h)
    await relist()
    const res0 = await request(`${sim.url}/hostgroup/apps/nodes/${encodeURIComponent(h)}`, { method: 'DELETE', headers: { authorization: `Bearer ${TOKEN}` } })
    assert.equal(res0.statusCode, 200)
    await res0.body.dump()
    // The sidecar still believes the VM is paused: the resume answers 404 and the node is dropped.
    const res = await get('doomed.apps.test')
    assert.equal(res.status, 404, res.body)
    assert.equal(res.reply, 'RELIGHT_ERR_BACKEND_NOT_FOUND')
    const again = await get('doomed.apps.test')
    assert.equal(again.status, 404)
    assert.equal(again.reply, 'RELIGHT_ERR_HOST_UNKNOWN')
  })

  it('a wrong token gives a clear error on the request and in healthz', async () => {
    const h = vms.rotated as string
    await sim.pause(h)
    await relist()
    sim.token = 'rotated-elsewhere'
    try {
      const res = await get('rotated.apps.test')
      assert.equal(res.status, 502, res.body)
      assert.equal(res.reply, 'RELIGHT_ERR_PROVIDER_AUTH')
      // A miss lists again, which fails the same way: the name cannot be looked up (not a 404);
      // the failed list shows in healthz.
      const miss = await get('unknown-host.apps.test')
      assert.equal(miss.status, 502, miss.body)
      assert.equal(miss.reply, 'RELIGHT_ERR_PROVIDER_AUTH')
      const health = await request(`${sc.url}/_relight/healthz`)
      const body = (await health.body.json()) as { status: string; providers: Record<string, { ok: boolean; error?: string }> }
      assert.equal(body.status, 'degraded')
      assert.equal(body.providers.slicer?.ok, false)
      assert.match(body.providers.slicer?.error ?? '', /token/)
    } finally {
      sim.token = TOKEN
    }
    assert.equal((await get('rotated.apps.test')).status, 200)
  })

  it('API down: 503 with Retry-After for a sleeping VM, awake VMs keep serving, then recovery', async () => {
    const h = vms.outage as string
    await sim.pause(h)
    await relist()
    assert.equal((await get('busy.apps.test')).status, 200)
    await sim.stopApi()
    try {
      const res = await get('outage.apps.test')
      assert.equal(res.status, 503, res.body)
      assert.equal(res.reply, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
      assert.equal(res.retryAfter, '5')
      assert.equal((await get('busy.apps.test')).status, 200) // hot path: no API call
      // a name we cannot look up while the API is down may be a VM created a moment ago: 503, not 404
      const unknown = await get('created-during-outage.apps.test')
      assert.equal(unknown.status, 503, unknown.body)
      assert.equal(unknown.reply, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE')
    } finally {
      await sim.startApi()
    }
    const back = await get('outage.apps.test')
    assert.equal(back.status, 200, back.body)
    assert.equal(sim.node(h)?.status, 'Running')
  })

  it('a flood of random hostnames costs at most one list a second and no memory', async () => {
    const pool = new Pool(sc.url, { connections: 100 })
    try {
      const backends = sc.sidecar.registry.size
      const before = sim.listCalls
      const started = Date.now()
      for (let wave = 0; wave < 3; wave++) {
        const statuses = await Promise.all(
          Array.from({ length: 100 }, async (_v, i) => {
            const res = await pool.request({ path: '/_relight/auth', method: 'GET', headers: { host: `r${wave}-${i}-${Math.random().toString(36).slice(2)}.apps.test` } })
            await res.body.dump()
            return res.statusCode
          }),
        )
        assert.ok(statuses.every((s) => s === 404), `random hosts must get 404, got ${[...new Set(statuses)].join(',')}`)
      }
      const elapsed = Date.now() - started
      const lists = sim.listCalls - before
      assert.ok(lists >= 1, 'a miss lists again')
      assert.ok(lists <= Math.ceil(elapsed / 1000) + 1, `${lists} lists in ${elapsed} ms`)
      assert.equal(sc.sidecar.registry.size, backends)
    } finally {
      await pool.close()
    }
  })
})
