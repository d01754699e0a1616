/**
 * The libpod request shapes of the Podman provider (checkpoint, restore, start, list, stats)
 * against answers recorded from Podman 4.3.1 (test/fixtures/podman/README.md), through undici's
 * MockAgent. The real engine runs in test/integration/podman*.test.ts; these cover what CRIU
 * cannot do on these hosts (a successful checkpoint and restore).
 */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { afterEach, beforeEach, describe, it } from 'node:test'
import pino from 'pino'
import { MockAgent } from 'undici'
import { isRelightError } from '../../sidecar/core/errors.js'
import { podmanConfigSchema } from '../../sidecar/providers/podman/config.js'
import { stateOf } from '../../sidecar/providers/moby/container-info.js'
import type { ContainerInspect as LibpodInspect } from '../../sidecar/providers/moby/containers.js'
import { PodmanProvider } from '../../sidecar/providers/podman/provider.js'

const fixture = <T>(name: string): T => JSON.parse(readFileSync(new URL(`../../../test/fixtures/podman/${name}`, import.meta.url), 'utf8')) as T

const running = fixture<LibpodInspect>('inspect-running.json')
const stopped = fixture<LibpodInspect>('inspect-stopped.json')
const checkpointed = fixture<LibpodInspect>('inspect-checkpointed.json')
const checkpointFailed = fixture<object>('checkpoint-failed.json')
const restoreFailed = fixture<object>('restore-failed.json')
const notFound = fixture<object>('inspect-404.json')
const stats = fixture<object>('stats-running.json')
const ID = running.Id
const BASE = `/v4.0.0/libpod/containers/${ID}`
const JSON_HEADERS = { headers: { 'content-type': 'application/json' } }

describe('podman provider: libpod requests (recorded answers)', () => {
  let agent: MockAgent
  let provider: PodmanProvider
  const criuProbe = { ok: false, detail: 'criu check failed: recorded' }

  beforeEach(() => {
    agent = new MockAgent({ enableCallHistory: true })
    agent.disableNetConnect()
    provider = new PodmanProvider(podmanConfigSchema.parse({ socket: '/nonexistent/podman.sock' }), pino({ level: 'silent' }), {
      defaults: { app_port: 8080, sleep: 'checkpoint', fallback_sleep: 'pause' },
      dispatcher: agent,
      probeCriu: async () => criuProbe,
    })
  })
  afterEach(async () => {
    await provider.close()
    await agent.close()
  })

  const pool = () => agent.get('http://localhost')
  const inspectReturns = (...answers: LibpodInspect[]) => {
    for (const a of answers) pool().intercept({ path: `${BASE}/json`, method: 'GET' }).reply(200, a, JSON_HEADERS)
  }
  const calls = () => (agent.getCallHistory()?.calls() ?? []).map((c) => `${c.method} ${c.path}${Object.keys(c.searchParams).length ? `?${new URLSearchParams(c.searchParams).toString()}` : ''}`)

  it('tells a checkpointed container from a plainly stopped one', () => {
    assert.equal(stateOf(running), 'running')
    assert.equal(stateOf(stopped), 'stopped')
    assert.equal(stateOf(checkpointed), 'checkpointed')
  })

  it('checkpoints a running container with keep=true and tcpEstablished=true', async () => {
    inspectReturns(running)
    pool().intercept({ path: `${BASE}/checkpoint`, method: 'POST', query: { keep: 'true', tcpEstablished: 'true' } }).reply(200, [{ Id: ID }], JSON_HEADERS)
    await provider.sleep(ID, 'checkpoint', AbortSignal.timeout(5000))
    assert.deepEqual(calls(), [`GET ${BASE}/json`, `POST ${BASE}/checkpoint?keep=true&tcpEstablished=true`])
    agent.assertNoPendingInterceptors()
  })

  it('a failed checkpoint rejects with RELIGHT_ERR_PROVIDER_FAILED and libpod reason, and check reports it', async () => {
    inspectReturns(running)
    pool().intercept({ path: `${BASE}/checkpoint`, method: 'POST', query: { keep: 'true', tcpEstablished: 'true' } }).reply(500, checkpointFailed, JSON_HEADERS)
    await assert.rejects(provider.sleep(ID, 'checkpoint', AbortSignal.timeout(5000)), (err) => {
      assert.ok(isRelightError(err, 'RELIGHT_ERR_PROVIDER_FAILED'))
      assert.match(err.message, /^checkpoint failed: .*runc checkpoint/)
      assert.deepEqual(err.context.engine && { kind: err.context.engine.kind, status: 'status' in err.context.engine ? err.context.engine.status : undefined }, { kind: 'status', status: 500 })
      return true
    })
    pool().intercept({ path: '/v4.0.0/libpod/version', method: 'GET' }).reply(200, { Version: '4.3.1', ApiVersion: '4.3.1' }, JSON_HEADERS)
    pool().intercept({ path: '/v4.0.0/libpod/info', method: 'GET' }).reply(200, { host: { ociRuntime: { name: 'runc' } } }, JSON_HEADERS)
    pool()
      .intercept({ path: (p) => p.startsWith('/v4.0.0/libpod/containers/json'), method: 'GET' })
      .reply(200, [{ Id: ID, Names: ['relight-rec-app'], Labels: { 'relight.domain': 'app.example.com', 'relight.port': 'eighty' } }], JSON_HEADERS)
      .times(2)
    inspectReturns(running)
    const results = await provider.check(AbortSignal.timeout(5000))
    const text = results.map((r) => `${r.ok ? 'ok' : 'PROBLEM'} ${r.message}`).join('\n')
    assert.match(text, /ok Podman 4\.3\.1 answers at \/nonexistent\/podman\.sock \(OCI runtime runc\)/)
    assert.match(text, /ok 1 container\(s\) labelled relight\.domain: relight-rec-app/)
    assert.match(text, /PROBLEM container relight-rec-app: relight\.port="eighty" is not a port number/)
    assert.match(text, /PROBLEM checkpointing does not work on this host \(criu check failed: recorded\); relight-rec-app sleep with checkpoint and will fall back to pause/)
    assert.match(text, /PROBLEM the last checkpoint \(relight-rec-app, .*\) failed: checkpoint failed/)
  })

  it('restores a checkpointed container (same flags) instead of starting it', async () => {
    inspectReturns(checkpointed)
    pool().intercept({ path: `${BASE}/restore`, method: 'POST', query: { keep: 'true', tcpEstablished: 'true' } }).reply(200, [{ Id: ID }], JSON_HEADERS)
    inspectReturns(running)
    await provider.wake(ID, AbortSignal.timeout(5000))
    assert.deepEqual(calls(), [`GET ${BASE}/json`, `POST ${BASE}/restore?keep=true&tcpEstablished=true`, `GET ${BASE}/json`])
    agent.assertNoPendingInterceptors()
  })

  it('starts a plainly stopped container (never restore)', async () => {
    inspectReturns(stopped)
    pool().intercept({ path: `${BASE}/start`, method: 'POST' }).reply(204, '')
    inspectReturns(running)
    await provider.wake(ID, AbortSignal.timeout(5000))
    assert.deepEqual(calls(), [`GET ${BASE}/json`, `POST ${BASE}/start`, `GET ${BASE}/json`])
  })

  it('starts afresh when a restore fails, so the backend still serves', async () => {
    inspectReturns(checkpointed)
    pool().intercept({ path: `${BASE}/restore`, method: 'POST', query: { keep: 'true', tcpEstablished: 'true' } }).reply(500, restoreFailed, JSON_HEADERS)
    pool().intercept({ path: `${BASE}/start`, method: 'POST' }).reply(204, '')
    inspectReturns(running)
    await provider.wake(ID, AbortSignal.timeout(5000))
    assert.deepEqual(calls(), [`GET ${BASE}/json`, `POST ${BASE}/restore?keep=true&tcpEstablished=true`, `POST ${BASE}/start`, `GET ${BASE}/json`])
  })

  it('treats 304 (already running) as success', async () => {
    inspectReturns(stopped)
    pool().intercept({ path: `${BASE}/start`, method: 'POST' }).reply(304, '')
    inspectReturns(running)
    await provider.wake(ID, AbortSignal.timeout(5000))
    // One start, not retried, and the container read again to see it running.
    assert.deepEqual(calls(), [`GET ${BASE}/json`, `POST ${BASE}/start`, `GET ${BASE}/json`])
    agent.assertNoPendingInterceptors()
  })

  it('lists by the domain label and reads hosts, port and settings from labels', async () => {
    pool()
      .intercept({ path: (p) => p.startsWith('/v4.0.0/libpod/containers/json?'), method: 'GET' })
      .reply(200, [{ Id: ID, Names: ['relight-rec-app'], State: 'running' }], JSON_HEADERS)
    inspectReturns(running)
    const [info, ...rest] = await provider.list(AbortSignal.timeout(5000))
    assert.equal(rest.length, 0)
    const list = agent.getCallHistory()?.firstCall()
    assert.equal(list?.searchParams.all, 'true')
    assert.deepEqual(JSON.parse(list?.searchParams.filters ?? '{}'), { label: ['relight.domain'] })
    assert.ok(info)
    assert.deepEqual(info.hosts, ['app.example.com', 'www.app.example.com'])
    assert.deepEqual(info.upstreams, ['127.0.0.1:18093'])
    assert.equal(info.state, 'running')
    assert.equal(info.settings.sleep, 'checkpoint')
    assert.equal(info.name, 'relight-rec-app')
  })

  it('an unknown container is RELIGHT_ERR_BACKEND_NOT_FOUND', async () => {
    pool().intercept({ path: '/v4.0.0/libpod/containers/nope/json', method: 'GET' }).reply(404, notFound, JSON_HEADERS)
    await assert.rejects(provider.wake('nope', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
  })

  it('stats: one-shot libpod stats, memory in MiB, CPU averaged on the first sample', async () => {
    pool().intercept({ path: '/v4.0.0/libpod/containers/stats', method: 'GET', query: { containers: ID, stream: 'false' } }).reply(200, stats, JSON_HEADERS)
    const s = await provider.stats(ID, AbortSignal.timeout(5000))
    const recorded = (stats as { Stats: { MemUsage: number; CPU: number }[] }).Stats[0]
    assert.ok(recorded)
    assert.equal(s.mem_mb, Math.round((recorded.MemUsage / 1024 / 1024) * 10) / 10)
    assert.equal(s.cpu_pct, Math.round(recorded.CPU * 10) / 10)
  })
})
