/**
 * Hot reload in process (the sidecar's own objects are inspected): providers added and removed,
 * a provider instance replaced without a routing gap, backends kept (same object: in-flight
 * count and idle clock), settings live, restart-only keys named, invalid files refused.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { loadConfig, parseConfig } from '../../sidecar/config/load.js'
import { RelightError } from '../../sidecar/core/errors.js'
import { Registry } from '../../sidecar/core/registry.js'
import { type Sidecar, startSidecar } from '../../sidecar/daemon.js'
import { MemoryProvider } from '../fakes/memory-provider.js'
import { freePort, tempDir } from '../helpers/net.js'
import { pidAlive, until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const silent = pino({ level: 'silent' })

describe('reload (in process)', () => {
  const tmp = tempDir('relight-rl-')
  const file = join(tmp.dir, 'relight.yaml')
  let sidecar: Sidecar | undefined
  after(async () => {
    await sidecar?.close()
    tmp.remove()
  })
  const head = `listen: 127.0.0.1:0\nstate_dir: ${tmp.dir}/state\nmin_idle_timeout: 500ms\n`
  const app = (name: string, port: number) =>
    `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${port}, stdout: "null", grace_period: 2s }\n`
  const auth = (host: string) => sidecar?.app.inject({ url: '/_relight/auth', headers: { host } })

  it('adds a provider (routable when reload resolves), keeps backends, applies settings live, names restart-only keys, and removes the provider', async () => {
    const [p1, p2] = [await freePort(), await freePort()]
    writeFileSync(file, `${head}defaults: { idle_timeout: 1h }\n`)
    sidecar = await startSidecar(loadConfig(file), { logger: silent, baseDir: tmp.dir, configFile: file })
    assert.equal(sidecar.registry.providers.length, 0)
    assert.equal((await auth('a.localhost'))?.statusCode, 404)

    // added provider
    writeFileSync(file, `${head}defaults: { idle_timeout: 1h }\nproviders:\n  process:\n    apps:\n${app('a', p1)}`)
    const added = await sidecar.reload()
    assert.ok(added.ok)
    assert.deepEqual(added.summary.providers.added, ['process'])
    const first = await auth('a.localhost')
    assert.equal(first?.statusCode, 200)
    assert.equal(first?.headers['x-relight-upstream'], `127.0.0.1:${p1}`)
    const backend = sidecar.registry.get('process:a')
    assert.ok(backend)

    // another app, a new default and a changed listen: same backend object, settings live,
    // listen named and not applied
    writeFileSync(file, `listen: 127.0.0.1:1\n${head.replace('listen: 127.0.0.1:0\n', '')}defaults: { idle_timeout: 2h }\nproviders:\n  process:\n    apps:\n${app('a', p1)}${app('b', p2)}`)
    const grown = await sidecar.reload()
    assert.ok(grown.ok)
    assert.deepEqual(grown.summary.restart_needed, ['listen'])
    assert.deepEqual(grown.summary.settings, ['defaults'])
    assert.deepEqual(grown.summary.details.process, { added: ['b'], removed: [], updated: [], replaced: [] })
    assert.equal(sidecar.registry.get('process:a'), backend, 'the unchanged app keeps its backend (in-flight count, idle clock)')
    assert.equal(backend.settings.idle_timeout, 2 * 3600_000)
    assert.equal(backend.phase, 'running')
    assert.equal((await auth('b.localhost'))?.statusCode, 200)
    const pid = Number(backend.info.details?.pids)
    assert.ok(pidAlive(pid))

    // an invalid file: nothing changes
    writeFileSync(file, `${head}providers:\n  process:\n    apps: [{ name: x, command: [x], colour: blue }]\n`)
    const refused = await sidecar.reload()
    assert.equal(refused.ok, false)
    assert.match(refused.ok ? '' : refused.errors.join('\n'), /colour/)
    assert.equal(sidecar.registry.get('process:a'), backend)

    // removed provider: its hosts answer 404 at once, its processes stop
    writeFileSync(file, head)
    const removed = await sidecar.reload()
    assert.ok(removed.ok)
    assert.deepEqual(removed.summary.providers.removed, ['process'])
    assert.equal((await auth('a.localhost'))?.statusCode, 404)
    assert.equal((await auth('b.localhost'))?.statusCode, 404)
    await until(() => !pidAlive(pid), 'the removed provider to stop its apps')
  })
})

describe('reload with several process instances', () => {
  it("adds an instance by id; its crash recovery leaves the running instance's children alone", async (t) => {
    const tmp = tempDir('relight-rli-')
    const file = join(tmp.dir, 'relight.yaml')
    const [p1, p2] = [await freePort(), await freePort()]
    const app = (name: string, port: number) =>
      `{ name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${port}, stdout: "null" }`
    const head = `listen: 127.0.0.1:0\nstate_dir: ${tmp.dir}/state\n`
    writeFileSync(file, `${head}providers:\n  process: { apps: [${app('a', p1)}] }\n`)
    const sidecar = await startSidecar(loadConfig(file), { logger: silent, baseDir: tmp.dir, configFile: file })
    t.after(async () => {
      await sidecar.close()
      tmp.remove()
    })
    const inject = (host: string) => sidecar.app.inject({ url: '/_relight/auth', headers: { host } })
    assert.equal((await inject('a.localhost')).statusCode, 200)
    const a = sidecar.registry.get('process:a')
    const pid = Number(a?.info.details?.pids)
    assert.ok(pidAlive(pid))

    writeFileSync(file, `${head}providers:\n  process:\n    - { apps: [${app('a', p1)}] }\n    - { id: extra, apps: [${app('b', p2)}] }\n`)
    const result = await sidecar.reload()
    assert.ok(result.ok)
    assert.deepEqual(result.summary.providers, { added: ['extra'], removed: [], replaced: [], reconfigured: [] })
    assert.equal((await inject('b.localhost')).statusCode, 200, 'the new instance serves (after its crash recovery ran)')
    assert.ok(sidecar.registry.get('extra:b'))
    assert.ok(pidAlive(pid), "the first instance's child is not taken for a leftover")
    assert.equal(sidecar.registry.get('process:a'), a)
  })
})

describe('Registry.replaceProvider', () => {
  const config = parseConfig('base_domains: []\n', 'test')
  const backends = () => [{ id: 'b', hosts: ['b.localhost'], state: 'running' as const, upstreams: ['127.0.0.1:9'] }]

  it('swaps instances without a gap: the backend keeps its in-flight count and idle clock', async () => {
    const old = new MemoryProvider(backends())
    const registry = new Registry([old], config, silent)
    await registry.start()
    const before = registry.index.resolve('b.localhost')
    assert.ok(before)
    before.started(true)
    const idleSince = before.lastActivity
    const next = new MemoryProvider(backends())
    await registry.replaceProvider(old, next)
    const after = registry.index.resolve('b.localhost')
    assert.ok(after && after !== before)
    assert.equal(after.provider, next)
    assert.equal(after.inflight, 1)
    assert.equal(after.lastActivity, idleSince)
    assert.equal(after.upstream(), '127.0.0.1:9', 'routed at once, no wake')
    assert.deepEqual(registry.providers, [next])
    registry.close()
  })

  it('keeps the running instance when the new one cannot be listed', async () => {
    const old = new MemoryProvider(backends())
    const registry = new Registry([old], config, silent)
    await registry.start()
    const next = new MemoryProvider(backends())
    next.failList = new RelightError('RELIGHT_ERR_PROVIDER_UNAVAILABLE', 'engine down')
    await assert.rejects(registry.replaceProvider(old, next), /engine down/)
    assert.deepEqual(registry.providers, [old])
    assert.equal(registry.index.resolve('b.localhost')?.provider, old)
    registry.close()
  })
})

describe('ProcessProvider.applyConfig', () => {
  const appEntry = (name: string, port: number, label: string, extra: Record<string, unknown> = {}) => ({
    name,
    hosts: [`${name}.localhost`],
    command: [process.execPath, APP],
    env: { PORT: '{{port}}', NAME: label },
    port,
    stdout: 'null',
    grace_period: '2s',
    ...extra,
  })
  const body = async (port: number) => (await (await fetch(`http://127.0.0.1:${port}/`)).text()).split(' ')

  it('replaces an asleep app at once and an always_on app by stopping and starting it', async (t) => {
    const { ProcessProvider } = await import('../../sidecar/providers/process/provider.js')
    const { processConfigSchema } = await import('../../sidecar/providers/process/config.js')
    const { waitReady } = await import('../../sidecar/core/readiness.js')
    const [p1, p2] = [await freePort(), await freePort()]
    const p = new ProcessProvider(processConfigSchema.parse({ apps: [appEntry('sleepy', p1, 'one'), appEntry('always', p2, 'one', { always_on: true })] }), silent)
    t.after(() => p.close())
    const signal = () => AbortSignal.timeout(10_000)
    await p.wake('always', signal())
    await waitReady(`127.0.0.1:${p2}`, 'tcp', signal())
    const [, , oldPid] = await body(p2)

    const changes = p.applyConfig(processConfigSchema.parse({ apps: [appEntry('sleepy', p1, 'two'), appEntry('always', p2, 'two', { always_on: true })] }))
    assert.deepEqual(changes, { added: [], removed: [], updated: [], replaced: ['sleepy', 'always'] })
    // always_on: stopped and started again with the new config, without a request
    await until(async () => {
      try {
        return (await body(p2))[0] === 'two'
      } catch {
        return false
      }
    }, 'the always_on app to run its new config')
    assert.equal(pidAlive(Number(oldPid)), false)
    // asleep: the next wake starts the new config
    await p.wake('sleepy', signal())
    await waitReady(`127.0.0.1:${p1}`, 'tcp', signal())
    assert.equal((await body(p1))[0], 'two')
  })
})
