/**
 * The Moby kit's container operations in both variants (Docker's Engine API, Podman's libpod),
 * the one inspect → BackendInfo, group dependencies on Podman, and the old `providers.docker.port`
 * name. Engine answers through undici's MockAgent, shaped as the recorded ones in
 * test/fixtures/{docker,podman}; the real engines run in test/integration/{docker,podman}*.
 */
import assert from 'node:assert/strict'
import { afterEach, beforeEach, describe, it } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { parseConfig } from '../../sidecar/config/load.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { EngineClient } from '../../sidecar/providers/moby/client.js'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { checkpointContainer } from '../../sidecar/providers/moby/container-checkpoint.js'
import { ContainerEvents } from '../../sidecar/providers/moby/container-events.js'
import { sleepContainer, wakeContainer } from '../../sidecar/providers/moby/container-wake.js'
import { containerInfo, stateOf } from '../../sidecar/providers/moby/container-info.js'
import { pauseContainer, unpauseContainer } from '../../sidecar/providers/moby/container-pause.js'
import { startContainer } from '../../sidecar/providers/moby/container-start.js'
import { stopContainer } from '../../sidecar/providers/moby/container-stop.js'
import type { ContainerApi, EngineVariant } from '../../sidecar/providers/moby/containers.js'
import { podmanConfigSchema } from '../../sidecar/providers/podman/config.js'
import { LIBPOD_PREFIX } from '../../sidecar/providers/podman/libpod.js'
import { PodmanProvider } from '../../sidecar/providers/podman/provider.js'

const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }

describe('moby kit: container operations, Docker and libpod variants', () => {
  let agent: MockAgent
  beforeEach(() => {
    agent = new MockAgent({ enableCallHistory: true })
    agent.disableNetConnect()
  })
  afterEach(() => agent.close())

  const api = (variant: EngineVariant): ContainerApi => ({
    engine: new EngineClient({ address: '/nonexistent.sock', name: variant === 'docker' ? 'docker' : 'podman', dispatcher: agent, ...(variant === 'libpod' ? { apiPrefix: LIBPOD_PREFIX } : {}) }),
    variant,
  })
  const base = (variant: EngineVariant) => (variant === 'libpod' ? LIBPOD_PREFIX : '') + '/containers/c1'
  const pool = () => agent.get('http://localhost')
  const calls = () => (agent.getCallHistory()?.calls() ?? []).map((c) => `${c.method} ${c.path}${Object.keys(c.searchParams).length ? `?${new URLSearchParams(c.searchParams).toString()}` : ''}`)

  it('stop names its grace period t (Docker) or timeout (libpod); 304 is success', async () => {
    pool().intercept({ path: `${base('docker')}/stop?t=7`, method: 'POST' }).reply(304, '')
    pool().intercept({ path: `${base('libpod')}/stop?timeout=7`, method: 'POST' }).reply(204, '')
    await stopContainer(api('docker'), 'c1', 7, AbortSignal.timeout(5000))
    await stopContainer(api('libpod'), 'c1', 7, AbortSignal.timeout(5000))
    assert.deepEqual(calls(), ['POST /containers/c1/stop?t=7', `POST ${LIBPOD_PREFIX}/containers/c1/stop?timeout=7`])
  })

  for (const variant of ['docker', 'libpod'] as const) {
    it(`${variant}: a refused pause is done when the container is paused already, else the refusal stands`, async () => {
      const refusal = variant === 'docker' ? 409 : 500
      pool().intercept({ path: `${base(variant)}/pause`, method: 'POST' }).reply(refusal, { message: 'container state improper' }, JSON_HEADERS)
      pool().intercept({ path: `${base(variant)}/json`, method: 'GET' }).reply(200, { Id: 'c1', State: { Status: 'paused' } }, JSON_HEADERS)
      await pauseContainer(api(variant), 'c1', AbortSignal.timeout(5000))
      pool().intercept({ path: `${base(variant)}/unpause`, method: 'POST' }).reply(refusal, { message: 'container state improper' }, JSON_HEADERS)
      pool().intercept({ path: `${base(variant)}/json`, method: 'GET' }).reply(200, { Id: 'c1', State: { Status: 'exited' } }, JSON_HEADERS)
      await assert.rejects(unpauseContainer(api(variant), 'c1', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_FAILED'))
    })

    it(`${variant}: an unknown container is RELIGHT_ERR_BACKEND_NOT_FOUND`, async () => {
      pool().intercept({ path: `${base(variant)}/start`, method: 'POST' }).reply(404, { message: 'no such container' }, JSON_HEADERS)
      await assert.rejects(startContainer(api(variant), 'c1', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    })
  }

  it('checkpoint needs libpod: on the Docker variant it is an unsupported sleep mode, with no request', async () => {
    await assert.rejects(checkpointContainer(api('docker'), 'c1', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED'))
    assert.deepEqual(calls(), [])
  })
})

describe('moby kit: one inspect → BackendInfo', () => {
  const options = { labelPrefix: 'relight', sleepModes: ['pause', 'stop'] as const, appPort: 8080, settings: {} }
  const container = (labels: Record<string, string>, exposed?: string[]) => ({
    Id: 'c1',
    Name: '/web',
    State: { Status: 'running' },
    Config: { Labels: labels, ...(exposed ? { ExposedPorts: Object.fromEntries(exposed.map((p) => [p, {}])) } : {}) },
    HostConfig: { NetworkMode: 'host' },
  })

  it('port: label, then the block app_port, then the only exposed port, then defaults.app_port', () => {
    const up = (labels: Record<string, string>, exposed: string[] | undefined, blockPort?: number) =>
      containerInfo(container({ 'relight.domain': 'a.localhost', ...labels }, exposed), { ...options, ...(blockPort ? { blockPort } : {}) })?.upstreams[0]
    assert.equal(up({ 'relight.port': '3000' }, ['80/tcp'], 4000), '127.0.0.1:3000')
    assert.equal(up({}, ['80/tcp'], 4000), '127.0.0.1:4000')
    assert.equal(up({}, ['80/tcp'], undefined), '127.0.0.1:80')
    assert.equal(up({}, ['80/tcp', '443/tcp'], undefined), '127.0.0.1:8080')
    assert.equal(up({}, undefined, undefined), '127.0.0.1:8080')
  })

  it('one state map for both engines (libpod checkpointed, Docker restarting)', () => {
    assert.equal(stateOf({ State: { Status: 'restarting', Running: true } }), 'starting')
    assert.equal(stateOf({ State: { Status: 'dead' } }), 'stopped')
    assert.equal(stateOf({ State: { Status: 'paused', Running: true, Paused: true } }), 'paused')
    assert.equal(stateOf({ State: { Status: 'exited', Checkpointed: true, CheckpointedAt: '2026-01-02T00:00:00Z', StartedAt: '2026-01-01T00:00:00Z' } }), 'checkpointed')
  })
})

describe('podman: group dependencies through the kit', () => {
  const DB = 'd'.repeat(64)
  const WEB = 'w'.repeat(64)
  const labels = {
    [WEB]: { 'relight.domain': 'shop.localhost', 'relight.group': 'shop' },
    [DB]: { 'relight.group': 'shop' },
  }
  let agent: MockAgent
  let provider: PodmanProvider
  beforeEach(() => {
    agent = new MockAgent({ enableCallHistory: true })
    agent.disableNetConnect()
    provider = new PodmanProvider(podmanConfigSchema.parse({ socket: '/nonexistent/podman.sock' }), pino({ level: 'silent' }), {
      defaults: { app_port: 8080, sleep: 'stop', fallback_sleep: 'pause' },
      dispatcher: agent,
    })
  })
  afterEach(async () => {
    await provider.close()
    await agent.close()
  })
  const pool = () => agent.get('http://localhost')
  const inspect = (id: string, status: string) =>
    pool()
      .intercept({ path: `${LIBPOD_PREFIX}/containers/${id}/json`, method: 'GET' })
      .reply(200, { Id: id, Name: id === WEB ? 'web' : 'db', State: { Status: status, Running: status === 'running' }, Config: { Labels: labels[id] }, HostConfig: { NetworkMode: 'host' } }, JSON_HEADERS)
  const members = (web: string, db: string) => {
    for (let i = 0; i < 2; i++) {
      pool()
        .intercept({ path: (p) => p.startsWith(`${LIBPOD_PREFIX}/containers/json?`), method: 'GET' })
        .reply(200, [
          { Id: WEB, Names: ['web'], State: web, Labels: labels[WEB] },
          { Id: DB, Names: ['db'], State: db, Labels: labels[DB] },
        ], JSON_HEADERS)
    }
  }
  const posts = () => (agent.getCallHistory()?.calls() ?? []).filter((c) => c.method === 'POST').map((c) => c.path.replace(`${LIBPOD_PREFIX}/containers/`, '').replace(/^(.)\1+/, '$1'))

  it('waking a routed member starts the group\'s dependency first', async () => {
    inspect(WEB, 'exited')
    members('exited', 'exited')
    inspect(DB, 'exited')
    pool().intercept({ path: `${LIBPOD_PREFIX}/containers/${DB}/start`, method: 'POST' }).reply(204, '')
    pool().intercept({ path: `${LIBPOD_PREFIX}/containers/${WEB}/start`, method: 'POST' }).reply(204, '')
    inspect(WEB, 'running')
    const info = await provider.wake(WEB, AbortSignal.timeout(5000))
    assert.equal(info.state, 'running')
    assert.deepEqual(posts(), ['d/start', 'w/start'])
  })

  it('once no routed member runs, the dependency sleeps in the same mode', async () => {
    inspect(WEB, 'running')
    pool().intercept({ path: `${LIBPOD_PREFIX}/containers/${WEB}/stop`, method: 'POST' }).reply(204, '')
    members('exited', 'running')
    inspect(DB, 'running')
    pool().intercept({ path: `${LIBPOD_PREFIX}/containers/${DB}/stop`, method: 'POST' }).reply(204, '')
    await provider.sleep(WEB, 'stop', AbortSignal.timeout(5000))
    assert.deepEqual(posts(), ['w/stop', 'd/stop'])
  })
})

describe('providers.docker.port: the old name of app_port', () => {
  it('is accepted, moved to app_port and marked for the deprecation line; both names is an error', () => {
    const block = parseConfig('providers:\n  docker:\n    port: 3000\n', 'test').providers.docker?.[0]
    assert.equal(block?.app_port, 3000)
    assert.deepEqual(block?.aliased, ['port'])
    assert.equal(parseConfig('providers:\n  docker:\n    app_port: 3000\n', 'test').providers.docker?.[0]?.aliased, undefined)
    assert.throws(() => parseConfig('providers:\n  docker:\n    port: 3000\n    app_port: 3000\n', 'test'), /providers\.docker\.port: port is the old name of app_port; give only app_port/)
  })
})

describe('moby kit: container events', () => {
  it('coalesce per container, hand the provider the actions seen, and remove what is gone', async () => {
    const agent = new MockAgent({ enableCallHistory: true })
    agent.disableNetConnect()
    const api: ContainerApi = { engine: new EngineClient({ address: '/nonexistent.sock', dispatcher: agent }), variant: 'docker' }
    const pool = agent.get('http://localhost')
    const answer = { Id: 'c1', Name: '/web', State: { Status: 'exited', ExitCode: 3 }, Config: { Labels: { 'relight.domain': 'web.localhost' } }, HostConfig: { NetworkMode: 'host' } }
    pool.intercept({ path: '/containers/c1/json', method: 'GET' }).reply(200, answer, JSON_HEADERS).delay(100)
    pool.intercept({ path: '/containers/c1/json', method: 'GET' }).reply(200, answer, JSON_HEADERS)
    pool.intercept({ path: '/containers/c2/json', method: 'GET' }).reply(404, { message: 'no such container' }, JSON_HEADERS)
    const seen: string[][] = []
    const emitted: ProviderEvent[] = []
    let upserts = 0
    const done = new Promise<void>((resolve) => {
      const events = new ContainerEvents({
        api,
        toInfo: (c) => containerInfo(c, { labelPrefix: 'relight', sleepModes: ['stop'], appPort: 80, settings: {} }),
        refreshOn: new Set(['start', 'die']),
        removeOn: new Set(['destroy']),
        inspected: (_c, _info, actions) => seen.push([...actions].sort()),
      })
      const emit = (e: ProviderEvent) => {
        emitted.push(e)
        if (e.type === 'upsert' && ++upserts === 2) resolve()
      }
      const signal = AbortSignal.timeout(5000)
      events.handle({ Action: 'start', Actor: { ID: 'c1' } }, emit, signal)
      events.handle({ Action: 'die', Actor: { ID: 'c1' } }, emit, signal) // during the first inspect
      events.handle({ Action: 'start', Actor: { ID: 'c1' } }, emit, signal) // coalesced with it
      events.handle({ Action: 'attach', Actor: { ID: 'c1' } }, emit, signal) // ignored
      events.handle({ Action: 'start', Actor: { ID: 'c2' } }, emit, signal) // gone: remove
      events.handle({ Action: 'destroy', Actor: { ID: 'c3' } }, emit, signal)
    })
    await done
    assert.deepEqual(seen, [['start'], ['die', 'start']])
    assert.deepEqual(emitted.filter((e) => e.type === 'remove').map((e) => (e as { id: string }).id).sort(), ['c2', 'c3'])
    agent.assertNoPendingInterceptors()
    await agent.close()
  })
})

describe('moby kit: waking and sleeping one container', () => {
  const api: ContainerApi = { engine: new EngineClient({ address: '/nonexistent.sock', dispatcher: new MockAgent() }), variant: 'docker' }
  const log = pino({ level: 'silent' })
  it('a dead or removing container cannot be started; a running one, or one asleep already, needs no call', async () => {
    for (const Status of ['dead', 'removing']) {
      await assert.rejects(wakeContainer(api, { Id: 'c1', State: { Status } }, AbortSignal.timeout(5000), log), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_FAILED') && e.message.includes(Status))
    }
    // no interceptor: any request would fail
    assert.equal(await wakeContainer(api, { Id: 'c1', State: { Status: 'running' } }, AbortSignal.timeout(5000), log), 'running')
    await sleepContainer(api, { Id: 'c1', State: { Status: 'exited' } }, 'stop', 10, AbortSignal.timeout(5000))
    await sleepContainer(api, { Id: 'c1', State: { Status: 'exited' } }, 'pause', 10, AbortSignal.timeout(5000))
    await assert.rejects(sleepContainer(api, { Id: 'c1', State: { Status: 'running' } }, 'scale', 10, AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED'))
  })
})
