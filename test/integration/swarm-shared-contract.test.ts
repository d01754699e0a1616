/**
 * The shared-engine contract (test/contract/shared-engine-contract.ts) on the real local swarm:
 * two SwarmProvider instances are two sidecars on one engine; A reaches dockerd through the
 * counting, pausable engineProxy (test/helpers/engine-proxy.ts), B directly. The first
 * real-engine Swarm test that interleaves two deciders: A observes, B records, A's sleepIf
 * answers changed and the service stays up.
 *
 * Also reports (diagnostic, not asserted: performance figures belong to the bench) the engine
 * requests one wake from 0 costs a single sidecar, counted at its proxy.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { swarmConfigSchema } from '../../sidecar/providers/swarm/config.js'
import { SwarmProvider } from '../../sidecar/providers/swarm/provider.js'
import { runSharedEngineContract } from '../contract/shared-engine-contract.js'
import { DOCKER_SOCKET } from '../helpers/docker.js'
import { type EngineProxy, engineProxy } from '../helpers/engine-proxy.js'
import { TestSwarm, swarmSkip } from '../helpers/swarm.js'
import { until } from '../helpers/wait.js'

const skip = await swarmSkip()

/** The proxy's unix socket (engineProxy over a Docker socket always has one). */
function socketOf(proxy: EngineProxy): string {
  assert.ok(proxy.socket, 'engineProxy over a unix socket listens on one')
  return proxy.socket
}

const sidecar = (socket: string, prefix: string, identity: string) =>
  new SwarmProvider(swarmConfigSchema.parse({ socket, label_prefix: prefix, identity }), pino({ level: 'silent' }))

if (skip) {
  describe('shared-engine contract: swarm', { skip }, () => undefined)
} else {
  const swarm = new TestSwarm('shared-swarm')
  let proxy: EngineProxy
  before(async () => {
    await swarm.importImage('<h1>shared swarm</h1>\n')
    proxy = await engineProxy({ socket: DOCKER_SOCKET })
  })
  after(async () => {
    await proxy?.close()
    await swarm.cleanup()
  })

  runSharedEngineContract('swarm (local single-node swarm, two provider instances)', {
    timeout: 60_000,
    make: async () => {
      const prefix = `${swarm.run}c`
      const svc = await swarm.service({ labels: { [`${prefix}.domain`]: 'contract.localhost', [`${prefix}.port`]: '8080' }, replicas: 0 })
      const a = sidecar(socketOf(proxy), prefix, 'edge-a')
      const b = sidecar(DOCKER_SOCKET, prefix, 'edge-b')
      return {
        a,
        b,
        id: svc.id,
        replicas: () => swarm.replicas(svc.id),
        cut: async () => {
          proxy.pause('cut')
          return async () => proxy.resume()
        },
        cleanup: async () => {
          await a.close()
          await b.close()
        },
      }
    },
  })

  describe('swarm: watch() reports changes made by someone else', () => {
    it('a scale-down and a scale-up by another writer arrive as upserts; the started task is followed until it runs', async () => {
      const prefix = `${swarm.run}o`
      const svc = await swarm.service({ labels: { [`${prefix}.domain`]: 'other.localhost', [`${prefix}.port`]: '8080' }, replicas: 1 })
      const p = sidecar(DOCKER_SOCKET, prefix, 'edge-watch')
      const events: ProviderEvent[] = []
      try {
        p.watch((e) => events.push(e), AbortSignal.timeout(120_000))
        await until(() => p.shared.observe(svc.id)?.live === true, 'the view to go live', 30_000, 10)
        const state = (s: string) => events.some((e) => e.type === 'upsert' && e.backend.id === svc.id && e.backend.state === s)
        await swarm.scale(svc.id, 0)
        await until(() => state('scaled_to_zero'), 'an upsert scaled_to_zero', 30_000, 10)
        await swarm.scale(svc.id, 1)
        await until(() => state('running'), 'an upsert running, with the task', 60_000, 10)
        const running = events.find((e) => e.type === 'upsert' && e.backend.id === svc.id && e.backend.state === 'running')
        assert.ok(running?.type === 'upsert' && running.backend.upstreams.length === 1, 'with the task\'s upstream (the core adopts it)')
      } finally {
        await p.close()
      }
    })
  })

  describe('swarm: engine requests per wake (one sidecar)', () => {
    it('counts the requests of one wake from 0 at the sidecar\'s proxy', async (t) => {
      const prefix = `${swarm.run}w`
      const svc = await swarm.service({ labels: { [`${prefix}.domain`]: 'count.localhost', [`${prefix}.port`]: '8080' }, replicas: 0 })
      const p = sidecar(socketOf(proxy), prefix, 'edge-count')
      try {
        p.watch(() => undefined, AbortSignal.timeout(120_000))
        await until(() => p.shared.observe(svc.id)?.live === true, 'the view to go live', 30_000, 10)
        proxy.reset()
        const started = performance.now()
        const info = await p.wake(svc.id, AbortSignal.timeout(60_000))
        const ms = Math.round(performance.now() - started)
        assert.equal(info.state, 'running')
        // What the core's readiness probe adds: the start-failure hook polls while it probes (≤ 1 s here).
        const probe = new AbortController()
        const failure = p.startFailure(svc.id, probe.signal)
        await new Promise((r) => setTimeout(r, 300))
        probe.abort()
        void failure
        const counts = proxy.counts()
        t.diagnostic(`one wake from 0: ${counts.total} engine requests in ${ms} ms (+300 ms of start-failure polling) ${JSON.stringify(counts)}`)
        process.stderr.write(`# swarm wake request count: ${counts.total} in ${ms} ms ${JSON.stringify(counts)}\n`)
      } finally {
        await p.close()
      }
    })
  })
}
