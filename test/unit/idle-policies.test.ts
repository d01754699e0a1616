/**
 * Idle policies of issue 26 (README "When does a backend sleep?"), against the core with an
 * injected clock: ignore rules (parsing, matching, /auth answers), busy_cpu, startup_grace,
 * and each refusal as a lifecycle event counted in the metrics.
 */
import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import pino from 'pino'
import { parseConfig } from '../../sidecar/config/load.js'
import type { Backend } from '../../sidecar/core/backend.js'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { IgnoreRules, parseIgnoreText } from '../../sidecar/core/ignore.js'
import type { BackendStats } from '../../sidecar/core/provider.js'
import { Registry } from '../../sidecar/core/registry.js'
import { TicketLedger } from '../../sidecar/core/tickets.js'
import { readLabels } from '../../sidecar/providers/kit/labels.js'
import { buildApp } from '../../sidecar/server/app.js'
import { deferred, type MemoryBackend, MemoryProvider } from '../fakes/memory-provider.js'
import { until } from '../helpers/wait.js'
import { okUpstream } from '../helpers/ok-upstream.js'
import { testSecret } from '../helpers/secret.js'

const log = pino({ level: 'silent' })
const upstream = okUpstream()
const TOKEN = testSecret()

/** A MemoryProvider that measures CPU (like process, docker and podman): `cpu` is what it reports. */
class MeasuringProvider extends MemoryProvider {
  cpu = 0
  readonly cpuOf = new Map<string, number>()
  statsCalls = 0
  reading = 0
  mostAtOnce = 0
  /** When set, readings wait for it. */
  holdStats: Promise<void> | undefined
  async stats(id: string): Promise<BackendStats> {
    this.statsCalls++
    this.reading++
    this.mostAtOnce = Math.max(this.mostAtOnce, this.reading)
    try {
      if (this.holdStats) await this.holdStats
      return { cpu_pct: this.cpuOf.get(id) ?? this.cpu, mem_mb: 1 }
    } finally {
      this.reading--
    }
  }
}

async function core(backends: (up: string) => MemoryBackend[], yaml: string, provider?: MemoryProvider) {
  const config = parseConfig(`min_idle_timeout: 1s\nresync_interval: 0s\n${yaml}`, 'test')
  const p = provider ?? new MemoryProvider([])
  for (const b of backends(upstream.address)) p.backends.set(b.id, b)
  const clock = { now: 1_000_000 }
  const registry = new Registry([p], config, log, () => clock.now)
  const events: LifecycleEvent[] = []
  registry.events.subscribe((e) => void events.push(e))
  await registry.start()
  const tickets = new TicketLedger<Backend>({ now: () => clock.now })
  const app = buildApp({ adminToken: TOKEN }, { registry, logger: log, tickets })
  await app.ready()
  const refusals = () => events.filter((e) => e.type === 'sleep.refused').map((e) => (e.type === 'sleep.refused' ? e.reason : ''))
  return {
    provider: p,
    registry,
    app,
    clock,
    events,
    refusals,
    tickets,
    metrics: async () => (await app.inject({ method: 'GET', url: '/_relight/metrics', headers: { authorization: `Bearer ${TOKEN}` } })).body,
    close: async () => {
      registry.close()
      await app.close()
    },
  }
}

describe('ignore rules', () => {
  it('parse from text (labels, tags, annotations) with the problem in words', () => {
    assert.deepEqual(parseIgnoreText('user_agent=UptimeRobot; path=/healthz, method=GET ;client=10.0.0.0/8'), {
      rules: [{ user_agent: 'UptimeRobot' }, { path: '/healthz', method: 'GET' }, { client: '10.0.0.0/8' }],
    })
    assert.match(JSON.stringify(parseIgnoreText('agent=x')), /not name=value with a name among user_agent, path, method, client/)
    assert.match(JSON.stringify(parseIgnoreText('path=healthz')), /path must start with \//)
    assert.match(JSON.stringify(parseIgnoreText('client=10.0.0.0/33')), /client must be an IP address or a CIDR/)
    assert.match(JSON.stringify(parseIgnoreText('user_agent=**')), /more than \*/)
    assert.match(JSON.stringify(parseIgnoreText(' ; ')), /no rule/)
  })

  it('match all conditions of one rule, any rule of the list', () => {
    const rules = new IgnoreRules([{ user_agent: 'uptime*kuma' }, { path: '/healthz', method: 'head' }, { client: '10.1.0.0/16' }, { client: 'fd00::/8' }])
    const req = { userAgent: 'Mozilla/5.0', method: 'GET', uri: '/', client: '192.0.2.1' }
    assert.equal(rules.matches(req), false)
    assert.equal(rules.matches({ ...req, userAgent: 'Uptime-Kuma/1.23.0' }), true, 'case-insensitive, * for any run')
    assert.equal(rules.matches({ ...req, uri: '/healthz?x=1' }), false, 'path alone is not the rule: its method must match too')
    assert.equal(rules.matches({ ...req, uri: '/healthz?x=1', method: 'HEAD' }), true)
    assert.equal(rules.matches({ ...req, uri: '/x?/health', method: 'HEAD' }), false, 'the query is not the path')
    assert.equal(rules.matches({ ...req, client: '10.1.200.3' }), true)
    assert.equal(rules.matches({ ...req, client: '::ffff:10.1.0.9' }), true, 'an IPv4 client seen on a dual-stack listener')
    assert.equal(rules.matches({ ...req, client: 'fd12::1%eth0' }), true, 'a zone is not part of the address')
    assert.equal(rules.matches({ ...req, client: 'not-an-ip' }), false)
    // No backtracking: a long agent against a pattern of many parts answers at once.
    const started = process.hrtime.bigint()
    assert.equal(new IgnoreRules([{ user_agent: 'a*a*a*a*a*a*a*a*b' }]).matches({ ...req, userAgent: 'a'.repeat(100_000) }), false)
    assert.ok(process.hrtime.bigint() - started < 50_000_000n)
  })

  it('are a backend setting in every input, with errors naming the key', () => {
    const problems = (yaml: string): string => {
      try {
        parseConfig(yaml, 't', {})
        return ''
      } catch (err) {
        return String((err as { problems?: string[] }).problems ?? err)
      }
    }
    assert.equal(problems('defaults:\n  ignore: [{ user_agent: UptimeRobot }, { path: /health, method: HEAD }]\n'), '')
    assert.match(problems('defaults:\n  ignore: [{ path: health }]\n'), /defaults\.ignore\[0\]\.path.*must start with \//)
    assert.match(problems('defaults:\n  ignore: [{}]\n'), /defaults\.ignore\[0\].*needs at least one of/)
    assert.match(problems('defaults:\n  ignore: [{ agent: x }]\n'), /defaults\.ignore\[0\].*agent/)
    assert.match(problems('providers:\n  docker:\n    ignore_status: 200\n'), /providers\.docker\.ignore_status.*300 to 599/)
    assert.match(problems('providers:\n  process:\n    apps:\n      - { name: a, command: [x], ignore: [{ client: 300.1.1.1 }] }\n'), /apps\[0\]\.ignore\[0\]\.client/)
    const label = readLabels({ 'relight.domain': 'a.localhost', 'relight.ignore': 'user_agent=UptimeRobot;path=/up', 'relight.ignore_status': '418' }, 'relight')
    assert.deepEqual(label.settings.ignore, [{ user_agent: 'UptimeRobot' }, { path: '/up' }])
    assert.equal(label.settings.ignore_status, 418)
    const bad = readLabels({ 'relight.domain': 'a.localhost', 'relight.ignore': 'path:/up' }, 'relight')
    assert.match(bad.problems.join(), /relight\.ignore="path:\/up" must be rules such as/)
  })

  it('an ignored request is served while awake without counting, and never wakes a sleeping backend', async () => {
    const c = await core(
      (up) => [
        { id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] },
        { id: 'b', hosts: ['b.example.com'], state: 'stopped', upstreams: [up], settings: { ignore_status: 418 } },
      ],
      'defaults: { idle_timeout: 10s, ignore: [{ user_agent: Uptime-Kuma }] }\n',
    )
    const checker = { 'user-agent': 'Uptime-Kuma/1.23.0', 'x-relight-snippet': '3', 'x-relight-client': '192.0.2.7:4000', 'x-relight-request': 'GET /' }
    c.tickets.connectionOpened({ open: true, proven: true })
    const a = c.registry.get('memory:a')
    c.clock.now += 9_000
    const served = await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', ...checker } })
    assert.equal(served.statusCode, 200)
    assert.equal(served.headers['x-relight-upstream'], upstream.address)
    assert.equal(served.headers['x-relight-ticket'], '-', 'no ticket: its log line ends nothing')
    assert.equal(a?.inflight, 0)
    c.clock.now += 1_000
    assert.equal(a?.isIdle(c.clock.now), true, 'the request did not count as activity')
    await c.registry.sweep()
    assert.equal(a?.phase, 'asleep')
    const asleep = await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', ...checker } })
    assert.equal(asleep.statusCode, 503)
    assert.equal(asleep.headers['retry-after'], '60')
    assert.equal(asleep.headers['x-relight-reply'], 'ignored')
    const configured = await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'b.example.com', ...checker } })
    assert.equal(configured.statusCode, 418)
    assert.equal(configured.headers['retry-after'], undefined)
    assert.equal(c.provider.calls.wake, 0, 'nothing woken')
    const metrics = await c.metrics()
    assert.match(metrics, /relight_auth_requests_total\{outcome="ignored"\} 1/)
    assert.match(metrics, /relight_auth_requests_total\{outcome="ignored_asleep"\} 2/)
    // Anyone else wakes it.
    const user = await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', 'user-agent': 'Firefox' } })
    assert.equal(user.statusCode, 200)
    assert.equal(c.provider.calls.wake, 1)
    await c.close()
  })

  it('matches the method, path and client as snippet 3 reports them, else X-Forwarded-*', async () => {
    const c = await core(
      (up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }],
      'defaults: { idle_timeout: 10s, ignore: [{ method: OPTIONS }, { path: /healthz }, { client: 198.51.100.0/24 }] }\n',
    )
    const status = async (headers: Record<string, string>) => {
      const v3 = headers['x-relight-request'] !== undefined || headers['x-relight-client'] !== undefined ? { 'x-relight-snippet': '3' } : {}
      return (await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', ...v3, ...headers } })).statusCode
    }
    assert.equal(await status({ 'x-relight-request': 'OPTIONS /' }), 503)
    assert.equal(await status({ 'x-forwarded-method': 'OPTIONS', 'x-forwarded-uri': '/' }), 503)
    assert.equal(await status({ 'x-relight-request': 'GET /healthz/deep?x' }), 503)
    assert.equal(await status({ 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/healthz' }), 503)
    assert.equal(await status({ 'x-relight-client': '198.51.100.9:5555' }), 503)
    assert.equal(await status({ 'x-relight-client': '[2001:db8::1]:5555' }), 200, 'not in the list: woken')
    assert.equal(c.provider.calls.wake, 1)
    await c.close()
  })
})

describe('busy_cpu', () => {
  it('refuses a sleep with reason busy while the CPU is at or above it, and sleeps once it drops', async () => {
    const provider = new MeasuringProvider([])
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n', provider)
    const a = c.registry.get('memory:a')
    assert.equal(a?.settings.busy_cpu, 10)
    assert.equal(provider.statsCalls, 1, 'a first reading as it is found running: the next one covers the idle window')
    provider.cpu = 37.5
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(provider.statsCalls, 2)
    assert.equal(a?.phase, 'running')
    assert.deepEqual(c.refusals(), ['busy'])
    const refused = c.events.find((e) => e.type === 'sleep.refused')
    assert.equal(refused?.type === 'sleep.refused' ? refused.cpu_pct : undefined, 37.5)
    // Measured again only after another idle_timeout, not on every sweep tick.
    c.clock.now += 5_000
    await c.registry.sweep()
    assert.equal(provider.statsCalls, 2)
    assert.equal(a?.status().held, 'busy')
    c.clock.now += 5_000
    await c.registry.sweep()
    assert.deepEqual(c.refusals(), ['busy', 'busy'])
    assert.match(await c.metrics(), /relight_sleep_refusals_total\{provider="memory",backend="a",reason="busy"\} 2/)
    provider.cpu = 9.9
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(a?.phase, 'asleep')
    await c.close()
  })

  it('reads at most 8 backends at once (a start-up finds them all running)', async () => {
    const provider = new MeasuringProvider([])
    const held = deferred()
    provider.holdStats = held.promise
    const c = await core(
      (up) => Array.from({ length: 20 }, (_, i) => ({ id: `b${i}`, hosts: [`b${i}.example.com`], state: 'running' as const, upstreams: [up] })),
      'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n',
      provider,
    )
    await new Promise((r) => setImmediate(r))
    assert.equal(provider.mostAtOnce, 8)
    held.resolve()
    await until(() => provider.statsCalls === 20, 'every first reading')
    assert.equal(provider.mostAtOnce, 8)
    await c.close()
  })

  it('one busy member keeps its whole group awake', async () => {
    const provider = new MeasuringProvider([])
    const c = await core(
      (up) => [
        { id: 'web', hosts: ['web.example.com'], state: 'running', upstreams: [up], group: 'g' },
        { id: 'worker', hosts: ['worker.example.com'], state: 'running', upstreams: [up], group: 'g' },
      ],
      'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n',
      provider,
    )
    provider.cpuOf.set('worker', 80)
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:web')?.phase, 'running', 'the idle member waits for the busy one')
    assert.equal(c.registry.get('memory:worker')?.phase, 'running')
    assert.deepEqual(c.refusals(), ['busy'])
    provider.cpuOf.set('worker', 0)
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:web')?.phase, 'asleep')
    assert.equal(c.registry.get('memory:worker')?.phase, 'asleep')
    await c.close()
  })

  it('an operator sleep is not refused for busy; a provider that cannot measure ignores it (and its config refuses it)', async () => {
    const provider = new MeasuringProvider([])
    provider.cpu = 90
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n', provider)
    assert.equal((await c.registry.get('memory:a')?.sleepNow())?.result, 'done')
    await c.close()
    const blind = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n')
    assert.equal(blind.registry.get('memory:a')?.settings.busy_cpu, undefined)
    await blind.close()
    for (const [kind, block] of [
      ['swarm', '{ busy_cpu: 10% }'],
      ['kubernetes', '{ busy_cpu: 10% }'],
      ['slicer', '{ url: /s.sock, busy_cpu: 10% }'],
    ]) {
      assert.throws(() => parseConfig(`providers:\n  ${kind}: ${block}\n`, 't', {}), new RegExp(`providers\\.${kind}\\.busy_cpu.*${kind} cannot measure`))
    }
    assert.throws(() => parseConfig('defaults: { busy_cpu: ten }\n', 't', {}), /defaults\.busy_cpu.*CPU percentage/)
    // a bare number: 0.5 may mean half a core, so it is refused with the way to write it
    assert.throws(() => parseConfig('defaults: { busy_cpu: 0.5 }\n', 't', {}), /defaults\.busy_cpu.*0\.5 has no unit; write it like 0\.5%/)
    assert.throws(() => parseConfig('providers: { process: { apps: [{ name: a, hosts: [a], command: [x], port: 1, busy_cpu: "10" }] } }\n', 't', {}), /busy_cpu.*10 has no unit; write it like 10%/)
    assert.equal(parseConfig('defaults: { busy_cpu: 2.5% }\n', 't', {}).defaults.busy_cpu, 2.5)
  })
})

describe('startup_grace', () => {
  it('a backend found running is not slept before startup_grace; the refusal is said once', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up], settings: { startup_grace: 60_000 } }], 'defaults: { idle_timeout: 10s }\n')
    const a = c.registry.get('memory:a')
    c.clock.now += 30_000
    await c.registry.sweep()
    await c.registry.sweep()
    assert.equal(a?.phase, 'running')
    assert.deepEqual(c.refusals(), ['startup_grace'])
    assert.match(await c.metrics(), /relight_sleep_refusals_total\{provider="memory",backend="a",reason="startup_grace"\} 1/)
    c.clock.now += 30_000
    await c.registry.sweep()
    assert.equal(a?.phase, 'asleep')
    await c.close()
  })

  it('a reload: a provider it adds gets the grace, one it replaces carries the grace over (no restart)', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 60s }\n')
    c.clock.now += 50_000
    const added = new MemoryProvider([{ id: 'b', hosts: ['b.example.com'], state: 'running', upstreams: [upstream.address] }], { id: 'added' })
    await c.registry.addProvider(added)
    const replacement = new MemoryProvider([{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [upstream.address] }])
    await c.registry.replaceProvider(c.provider, replacement)
    c.clock.now += 15_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:a')?.phase, 'asleep', "the replaced provider's backend: its grace ended 60 s after start-up")
    assert.equal(c.registry.get('added:b')?.phase, 'running', 'found by the reload 15 s ago: held')
    c.clock.now += 46_000
    await c.registry.sweep()
    assert.equal(c.registry.get('added:b')?.phase, 'asleep')
    await c.close()
  })

  it('defaults to idle_timeout, and applies to a backend started outside the sidecar', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 1m }\n')
    const a = c.registry.get('memory:a')
    assert.equal(a?.settings.startup_grace, 60_000)
    c.provider.backends.set('a', { ...c.provider.backends.get('a')!, state: 'running' })
    c.provider.emit({ type: 'state', id: 'a', state: 'running' }) // `docker start` by hand
    await new Promise<void>((resolve) => {
      const stop = c.registry.events.subscribe((e) => {
        if (e.type === 'wake.ready') {
          stop()
          setImmediate(resolve) // after the wake's own bookkeeping
        }
      })
    })
    c.clock.now += 30_000
    await c.registry.sweep()
    assert.equal(a?.phase, 'running', 'held by startup_grace')
    c.clock.now += 31_000
    await c.registry.sweep()
    assert.equal(a?.phase, 'asleep', JSON.stringify([a?.status(), c.events.map((e) => e.type)]))
    await c.close()
    const d = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s }\n')
    assert.equal(d.registry.get('memory:a')?.settings.startup_grace, 10_000)
    await d.close()
  })
})

describe('idle policies under load and misuse (review of policies-a)', () => {
  it('one CPU check at a time: sweep ticks during a slow reading neither queue sleeps nor repeat the refusal', async () => {
    const provider = new MeasuringProvider([])
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n', provider)
    await until(() => provider.reading === 0, 'the first reading')
    const before = provider.statsCalls
    const gate = deferred()
    provider.holdStats = gate.promise
    provider.cpu = 50
    c.clock.now += 10_000
    const sweeps = [c.registry.sweep()]
    await until(() => provider.reading === 1, 'the due reading started')
    const a = c.registry.get('memory:a')
    assert.equal(a?.isIdle(c.clock.now), false, 'not idle while its CPU is read')
    for (let i = 0; i < 4; i++) {
      c.clock.now += 1000
      sweeps.push(c.registry.sweep())
      await new Promise((r) => setImmediate(r))
    }
    gate.resolve()
    await Promise.all(sweeps)
    assert.equal(provider.statsCalls - before, 1, 'one reading')
    const refused = c.events.filter((e) => e.type === 'sleep.refused')
    assert.deepEqual(refused.map((e) => (e.type === 'sleep.refused' ? [e.reason, e.cpu_pct] : [])), [['busy', 50]])
    assert.match(await c.metrics(), /relight_sleep_refusals_total\{provider="memory",backend="a",reason="busy"\} 1\n/)
    await c.close()
  })

  it('a group is read once per check, not on every sweep tick of a slow reading', async () => {
    const provider = new MeasuringProvider([])
    const c = await core(
      (up) => ['w', 'x'].map((id) => ({ id, hosts: [`${id}.example.com`], state: 'running' as const, upstreams: [up], group: 'g' })),
      'defaults: { idle_timeout: 10s, busy_cpu: 10% }\n',
      provider,
    )
    await until(() => provider.reading === 0, 'the first readings')
    const before = provider.statsCalls
    const gate = deferred()
    provider.holdStats = gate.promise
    provider.cpuOf.set('x', 80)
    c.clock.now += 10_000
    const sweeps = [c.registry.sweep()]
    await until(() => provider.reading === 2, 'both members read')
    for (let i = 0; i < 4; i++) {
      c.clock.now += 1000
      sweeps.push(c.registry.sweep())
      await new Promise((r) => setImmediate(r))
    }
    gate.resolve()
    await Promise.all(sweeps)
    assert.equal(provider.statsCalls - before, 2, 'one reading per member')
    assert.deepEqual(c.refusals(), ['busy'])
    await c.close()
  })

  it('busy_cpu turned on by a reload takes a first reading, so the due one covers the idle window', async () => {
    /** Like Docker's one-shot stats: the first reading of a container has nothing to compare with and says 0. */
    class DockerLike extends MeasuringProvider {
      readonly seen = new Set<string>()
      override async stats(id: string): Promise<BackendStats> {
        const s = await super.stats(id)
        if (this.seen.has(id)) return s
        this.seen.add(id)
        return { ...s, cpu_pct: 0 }
      }
    }
    const provider = new DockerLike([])
    provider.cpu = 90
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 0s }\n', provider)
    c.registry.applySettings(parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, startup_grace: 0s, busy_cpu: 10% }\n', 't'))
    await until(() => provider.statsCalls === 1 && provider.reading === 0, 'a first reading on the reload')
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:a')?.phase, 'running', 'the container burns 90%')
    assert.deepEqual(c.refusals(), ['busy'])
    await c.close()
  })

  it('a reload that lowers startup_grace ends a grace under way with the new value', async () => {
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 1h }\n')
    c.clock.now += 20_000
    c.registry.applySettings(parseConfig('min_idle_timeout: 1s\nresync_interval: 0s\ndefaults: { idle_timeout: 10s, startup_grace: 30s }\n', 't'))
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:a')?.phase, 'running', '20 s of a 30 s grace')
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:a')?.phase, 'asleep')
    await c.close()
  })

  it('a reading that is not a number is not busy, and a reading the provider never ends does not hold the sleep', async () => {
    const provider = new MeasuringProvider([])
    provider.cpu = Number.NaN
    const c = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 0s, busy_cpu: 10% }\n', provider)
    c.clock.now += 10_000
    await c.registry.sweep()
    assert.equal(c.registry.get('memory:a')?.phase, 'asleep', 'fails open')
    await c.close()
    // A plugin that ignores its abort signal: the core's own bound ends the wait (here: shutdown).
    const hung = new MeasuringProvider([])
    const d = await core((up) => [{ id: 'a', hosts: ['a.example.com'], state: 'running', upstreams: [up] }], 'defaults: { idle_timeout: 10s, startup_grace: 0s, busy_cpu: 10% }\n', hung)
    await until(() => hung.reading === 0, 'the first reading')
    hung.holdStats = new Promise<void>(() => undefined)
    d.clock.now += 10_000
    const check = d.registry.get('memory:a')!.busyNow()
    await until(() => hung.reading === 1, 'the reading started')
    d.registry.close()
    let settled = false
    void check.then(() => (settled = true))
    await until(() => settled, 'the check ends when the sidecar closes, whatever the provider does')
    assert.equal(await check, false)
    await d.app.close()
  })

  it('path rules match at a segment boundary; rules and values are capped, naming the key', () => {
    const rules = new IgnoreRules([{ path: '/healthz' }, { path: '/api/' }])
    const m = (uri: string) => rules.matches({ userAgent: undefined, method: 'GET', uri, client: undefined })
    assert.equal(m('/healthz'), true)
    assert.equal(m('/healthz?x=1'), true)
    assert.equal(m('/healthz/live'), true)
    assert.equal(m('/healthzdashboard'), false)
    assert.equal(m('/api/x'), true)
    assert.equal(m('/api'), false)
    const many = Array.from({ length: 33 }, (_, i) => `{ path: /p${i} }`).join(', ')
    assert.throws(() => parseConfig(`defaults:\n  ignore: [${many}]\n`, 't', {}), /defaults\.ignore.*at most 32 rules \(it has 33\)/)
    assert.throws(() => parseConfig(`defaults:\n  ignore: [{ user_agent: ${'x'.repeat(257)} }]\n`, 't', {}), /defaults\.ignore\[0\]\.user_agent.*at most 256 characters/)
    const label = readLabels({ 'relight.domain': 'a.localhost', 'relight.ignore': Array.from({ length: 33 }, (_, i) => `path=/p${i}`).join(';') }, 'relight')
    assert.match(label.problems.join(), /relight\.ignore=.*at most 32 rules/)
  })

  it('lowercases the User-Agent once per request, not once per rule', () => {
    const rules = new IgnoreRules(Array.from({ length: 20 }, (_, i) => ({ user_agent: `bot${i}` })))
    const lower = String.prototype.toLowerCase
    let calls = 0
    String.prototype.toLowerCase = function (this: string) {
      calls++
      return lower.call(this)
    }
    try {
      assert.equal(rules.matches({ userAgent: 'Mozilla/5.0', method: 'GET', uri: '/', client: undefined }), false)
    } finally {
      String.prototype.toLowerCase = lower
    }
    assert.equal(calls, 1)
  })

  it('X-Relight-Request and X-Relight-Client count only from snippet 3 (an older snippet passes the client\'s own on)', async () => {
    const c = await core(
      (up) => [{ id: 'a', hosts: ['a.example.com'], state: 'stopped', upstreams: [up] }],
      'defaults: { idle_timeout: 10s, ignore: [{ client: 10.0.0.0/8 }, { path: /healthz }] }\n',
    )
    const status = async (headers: Record<string, string>) => (await c.app.inject({ method: 'GET', url: '/_relight/auth', headers: { host: 'a.example.com', ...headers } })).statusCode
    const v2 = { 'x-relight-snippet': '2', 'x-forwarded-method': 'GET', 'x-forwarded-uri': '/healthz' }
    assert.equal(await status(v2), 503, "snippet 2: forward_auth's own X-Forwarded-Uri")
    assert.equal(c.provider.calls.wake, 0)
    assert.equal(await status({ ...v2, 'x-forwarded-uri': '/api', 'x-relight-request': 'GET /healthz' }), 200, 'a forged X-Relight-Request is not read')
    assert.equal(c.provider.calls.wake, 1)
    await c.registry.get('memory:a')?.sleepNow()
    assert.equal(await status({ ...v2, 'x-forwarded-uri': '/api', 'x-relight-client': '10.0.0.1:1' }), 200, 'a forged X-Relight-Client is not read')
    assert.equal(c.provider.calls.wake, 2)
    await c.registry.get('memory:a')?.sleepNow()
    assert.equal(await status({ 'x-relight-snippet': '4', 'x-forwarded-uri': '/api', 'x-relight-request': 'GET /api', 'x-relight-client': '10.0.0.1:1' }), 503, 'snippet 4 speaks 3: its client is read')
    assert.equal(c.provider.calls.wake, 2)
    await c.close()
  })
})
