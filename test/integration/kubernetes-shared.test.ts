/**
 * The shared-engine contract (test/contract/shared-engine-contract.ts) on a real Kubernetes API
 * server (test/k8s-control-plane, 1.20) with the stand-in kubelet: two KubernetesProvider
 * instances are two sidecars. A's connection goes through a TCP pass-through the test can cut
 * (TLS end to end), for the reconnect case. Also: engine requests per wake and per sleep,
 * counted at that pass-through.
 */
import assert from 'node:assert/strict'
import { createServer, type Server, type Socket, connect } from 'node:net'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { readFileSync } from 'node:fs'
import { Agent, type Dispatcher } from 'undici'
import { KubeClient } from '../../sidecar/providers/kubernetes/client.js'
import { kubernetesConfigSchema } from '../../sidecar/providers/kubernetes/config.js'
import { KubernetesProvider } from '../../sidecar/providers/kubernetes/provider.js'
import { runSharedEngineContract } from '../contract/shared-engine-contract.js'
import { type ControlPlane, createNamespace, k8sSkip, replicasOf, startControlPlane, workload, workloadUrl } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'
import { freePort } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const NS = 'shared-k8s'
const skip = k8sSkip()

/** A TCP pass-through to the API server: `cut()` drops every connection and refuses new ones until `restore()`. */
interface Cuttable {
  readonly url: string
  /** HTTP requests are not visible (TLS): connections opened, for a rough count only. */
  connections: number
  cut(): void
  restore(): void
  /** No byte passes either way, nothing closes (a frozen engine), until `thaw()`. */
  freeze(): void
  thaw(): void
  close(): Promise<void>
}

async function passThrough(target: string): Promise<Cuttable> {
  const { hostname, port } = new URL(target)
  const sockets = new Set<Socket>()
  let down = false
  let frozen = false
  const server: Server = createServer((client) => {
    if (down) return void client.destroy()
    proxy.connections++
    const upstream = connect(Number(port), hostname)
    sockets.add(client).add(upstream)
    if (frozen) {
      client.pause()
      upstream.pause()
    }
    const drop = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const address = server.address() as { port: number }
  const proxy: Cuttable = {
    url: `https://127.0.0.1:${address.port}`,
    connections: 0,
    cut: () => {
      down = true
      for (const s of sockets) s.destroy()
      sockets.clear()
    },
    restore: () => {
      down = false
    },
    freeze: () => {
      frozen = true
      for (const s of sockets) s.pause()
    },
    thaw: () => {
      frozen = false
      for (const s of sockets) s.resume()
    },
    close: async () => {
      proxy.cut()
      await new Promise<void>((r) => server.close(() => r()))
    },
  }
  return proxy
}

let cp: ControlPlane
let kubelet: StandInKubelet
let proxy: Cuttable
if (!skip) {
  before(async () => {
    cp = await startControlPlane()
    await createNamespace(cp, NS)
    kubelet = await StandInKubelet.start(cp, NS)
    proxy = await passThrough(cp.url)
  })
  after(async () => {
    await proxy?.close()
    await kubelet?.close()
    await cp?.close()
  })
}

function sidecar(identity: string, kubeconfig: string): KubernetesProvider {
  return new KubernetesProvider(kubernetesConfigSchema.parse({ kubeconfig, namespaces: [NS], identity }), pino({ level: 'silent' }), { baseDir: cp.dir })
}

/** Every request a provider's client sends, as `METHOD path` (watches apart): the engine cost. */
class CountingAgent extends Agent {
  readonly requests: string[] = []
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    const path = String(options.path)
    if (!path.includes('watch=1')) this.requests.push(`${options.method} ${path.split('?')[0]}`)
    return super.dispatch(options, handler)
  }
}

function countedSidecar(identity: string): { provider: KubernetesProvider; agent: CountingAgent; client: KubeClient } {
  const agent = new CountingAgent({ connect: { ca: readFileSync(cp.ca, 'utf8') } })
  const client = new KubeClient({ server: cp.url, token: cp.token, namespace: NS, source: 'test' }, { dispatcher: agent })
  const provider = new KubernetesProvider(kubernetesConfigSchema.parse({ namespaces: [NS], identity }), pino({ level: 'silent' }), { client })
  return { provider, agent, client }
}

if (skip) {
  describe('shared-engine contract: kubernetes', { skip }, () => undefined)
} else {
  runSharedEngineContract('kubernetes (real API server 1.20, stand-in kubelet, two provider instances)', {
    timeout: 30_000,
    make: async () => {
      const port = await freePort()
      await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'contract', NS, port, { 'relight.domain': 'contract.k8s.test' }))
      const a = sidecar('shared-k8s-a', cp.kubeconfigFor('shared-k8s-a', cp.token, proxy.url))
      const b = sidecar('shared-k8s-b', cp.kubeconfig)
      return {
        a,
        b,
        id: `deployment/${NS}/contract`,
        replicas: () => replicasOf(cp, 'Deployment', NS, 'contract'),
        cut: async () => {
          proxy.cut()
          return async () => proxy.restore()
        },
        freeze: async () => {
          proxy.freeze()
          return async () => proxy.thaw()
        },
        cleanup: async () => {
          proxy.thaw()
          proxy.restore()
          await Promise.all([a.close(), b.close()])
        },
      }
    },
  })

  describe('kubernetes shared decisions: what the engine sees', { timeout: 120_000 }, () => {
    it('a wake is ONE PATCH carrying the token and the replicas; a wake of a running workload writes a token only; the other sidecar learns of it by an upsert', async () => {
      const port = await freePort()
      await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'once', NS, port, { 'relight.domain': 'once.k8s.test' }))
      const a = sidecar('shared-k8s-once-a', cp.kubeconfig)
      const b = sidecar('shared-k8s-once-b', cp.kubeconfig)
      const stop = new AbortController()
      const seen = { b: 0 }
      const id = `deployment/${NS}/once`
      try {
        a.watch(() => undefined, stop.signal)
        b.watch((e) => e.type === 'upsert' && e.backend.id === id && e.backend.state !== 'running' && seen.b++, stop.signal)
        await until(() => a.shared.observe(id)?.live && b.shared.observe(id)?.live, 'both views live')
        const info = await a.wake(id, AbortSignal.timeout(30_000))
        assert.equal(info.state, 'running')
        const d = await cp.ok<{ metadata: { annotations: Record<string, string>; managedFields: { manager: string }[] }; spec: { replicas: number } }>('GET', workloadUrl('Deployment', NS, 'once'))
        assert.equal(d.spec.replicas, 1)
        assert.match(d.metadata.annotations['relight.activity'] ?? '', /^v1 shared-k8s-once-a [0-9a-f]{16} 0$/)
        assert.ok(d.metadata.managedFields.some((f) => f.manager === 'relight-sidecar'), 'fieldManager names the sidecar')
        await until(() => b.shared.observe(id)?.version === d.metadata.annotations['relight.activity'], "B's view to see A's token")
        assert.ok(seen.b >= 1, 'B (not the writer) learnt of the scale-up by an upsert')
      } finally {
        stop.abort()
        await Promise.all([a.close(), b.close()])
      }
    })

    it('engine requests: a wake from 0 is 1 request on the waking sidecar and 0 on the other; a sleep is a fresh GET + a conditional PATCH', async () => {
      const port = await freePort()
      await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'counted', NS, port, { 'relight.domain': 'counted.k8s.test' }))
      const a = countedSidecar('shared-k8s-count-a')
      const b = countedSidecar('shared-k8s-count-b')
      const stop = new AbortController()
      const id = `deployment/${NS}/counted`
      try {
        a.provider.watch(() => undefined, stop.signal)
        b.provider.watch(() => undefined, stop.signal)
        await until(() => a.provider.shared.observe(id)?.live && b.provider.shared.observe(id)?.live, 'both views live')
        a.agent.requests.length = 0
        b.agent.requests.length = 0
        await a.provider.wake(id, AbortSignal.timeout(30_000))
        await until(() => b.provider.shared.observe(id)?.version === a.provider.shared.observe(id)?.version, "B's view to see the wake")
        const wake = { a: [...a.agent.requests], b: [...b.agent.requests] }
        process.stderr.write(`# kubernetes engine requests per wake from 0: waker ${wake.a.length} (${wake.a.join(', ')}), other sidecar ${wake.b.length}\n`)
        assert.deepEqual(wake.a, [`PATCH ${workloadUrl('Deployment', NS, 'counted')}`])
        assert.deepEqual(wake.b, [])
        a.agent.requests.length = 0
        await a.provider.shared.recordActivity(id, 0, AbortSignal.timeout(30_000))
        assert.deepEqual(a.agent.requests, [`PATCH ${workloadUrl('Deployment', NS, 'counted')}`], 'recordActivity: one PATCH')
        const v = await until(() => {
          const va = a.provider.shared.observe(id)?.version
          return va !== undefined && va === b.provider.shared.observe(id)?.version ? va : undefined
        }, 'both views to agree')
        a.agent.requests.length = 0
        b.agent.requests.length = 0
        assert.equal((await b.provider.shared.sleepIf(id, v, AbortSignal.timeout(30_000))).result, 'slept')
        const sleep = [...b.agent.requests]
        process.stderr.write(`# kubernetes engine requests per sleep: ${sleep.length} (${sleep.join(', ')}); other sidecar ${a.agent.requests.length}\n`)
        // GET + PATCH, plus GET + PATCH again per 409 from a controller's status write (≤ 3 tries).
        assert.ok(sleep.length >= 2 && sleep.length <= 6 && sleep.length % 2 === 0, sleep.join(', '))
        assert.deepEqual(a.agent.requests, [])
      } finally {
        stop.abort()
        await Promise.all([a.provider.close(), b.provider.close()])
        await Promise.all([a.client.close(), b.client.close(), a.agent.close(), b.agent.close()])
      }
    })
  })
}
