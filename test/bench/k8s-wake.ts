/**
 * Wake latency, Kubernetes provider: a Deployment at 0 replicas, first request through Caddy +
 * sidecar (the real CLI) until the first byte, beside the raw operation on a twin Deployment
 * (PATCH its scale to 1, poll its pods every 5 ms until one is Ready with an IP, GET it).
 * Measured in alternation (sidecar, raw, sidecar, raw…).
 *
 * The API server is the real one from test/k8s-control-plane (kube-apiserver and
 * kube-controller-manager 1.20, no scheduler); the stand-in kubelet from test/helpers runs each
 * pod as a real HTTP process on its own 127.0.0.x address and marks it Ready. So the figures
 * hold the controllers' work (Deployment → ReplicaSet → Pod), the stand-in kubelet's process
 * start (a Node process, ~50–150 ms) and the sidecar's part; not image pulls or scheduling.
 * Between rounds both Deployments are scaled to 0 through the API.
 */
import { existsSync } from 'node:fs'
import { join } from 'node:path'
import { type ControlPlane, createNamespace, K8S_BIN, replicasOf, startControlPlane, workload, workloadUrl } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import { Skip, type BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { startSidecarCli, trackCleanup } from './procs.js'
import { load, round, sleep, spread, type Spread } from './stats.js'
import { testSecret } from '../helpers/secret.js'

const NS = 'bench'
const TOKEN = testSecret()

export interface K8sWakeResult {
  /** Through Caddy + sidecar: request → first byte, from 0 replicas. */
  sidecar: Spread
  /** PATCH scale → pod Ready (polled every 5 ms) → first byte. */
  raw: Spread
  overheadP50: number
  load: [number, number, number]
}

export async function runK8sWake(ctx: BenchContext): Promise<K8sWakeResult> {
  const missing = ['kube-apiserver', 'kube-controller-manager'].filter((b) => !existsSync(join(K8S_BIN, b)))
  if (missing.length > 0) throw new Skip(`${missing.join(', ')} not built in ${K8S_BIN}: run test/k8s-control-plane/build.sh (see .ci/run)`)
  const n = ctx.quick ? 3 : 10
  const cleanups: (() => Promise<void>)[] = []
  let cp: ControlPlane | undefined
  const forget = trackCleanup(async () => {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  })
  try {
    cp = await startControlPlane()
    const plane = cp
    cleanups.push(() => plane.close())
    await createNamespace(cp, NS)
    const kubelet = await StandInKubelet.start(cp, NS)
    cleanups.push(() => kubelet.close())
    const port = { kw: await freePort(), raw: await freePort() }
    await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'kw', NS, port.kw, { 'relight.domain': 'kw.bench.test', 'relight.idle_timeout': '10m' }))
    await cp.ok('POST', workloadUrl('Deployment', NS), workload('Deployment', 'raw', NS, port.raw, {}))

    const sc = await freePort()
    const yaml = `listen: 127.0.0.1:${sc}
log_level: info
admin: { token: ${TOKEN} }
defaults: { idle_timeout: 10m, wake_timeout: 30s }
providers:
  kubernetes:
    kubeconfig: ${cp.kubeconfig}
    namespaces: [${NS}]
    identity: bench
`
    const sidecar = await startSidecarCli(ctx.dir, 'wake-k8s', yaml, { host: '127.0.0.1', port: sc })
    cleanups.push(() => sidecar.stop())
    const front = await freePort()
    const caddy = await startBenchCaddy(ctx.dir, site(front, `import relight 127.0.0.1:${sc}`))
    cleanups.push(() => caddy.close())

    const key = 'kubernetes:deployment/bench/kw'
    const phase = async (): Promise<string | undefined> => {
      const a = await get({ port: sc }, '/_relight/admin/backends', '127.0.0.1', { headers: { authorization: `Bearer ${TOKEN}` } })
      expectAnswer('admin backends', a, 200)
      return (JSON.parse(a.body) as { backends: { key: string; phase: string }[] }).backends.find((b) => b.key === key)?.phase
    }
    const waitFor = async (what: string, check: () => Promise<boolean>) => {
      const deadline = Date.now() + 30_000
      while (!(await check())) {
        if (Date.now() > deadline) throw new Error(`k8s wake: ${what} after 30 s; see ${ctx.dir}/wake-k8s.log`)
        await sleep(20)
      }
    }
    const scale = (name: string, replicas: number) => plane.ok('PATCH', workloadUrl('Deployment', NS, name, 'scale'), { spec: { replicas } }, 'application/merge-patch+json')
    await waitFor('the sidecar does not list the Deployment', async () => (await phase()) === 'asleep')

    const viaSidecar = async (): Promise<number> => {
      const a = await get({ port: front }, '/', 'kw.bench.test')
      expectAnswer('wake kubernetes through Caddy', a, 200, 'pod=kw-')
      await scale('kw', 0)
      await kubelet.waitGone('kw-')
      await waitFor('the sidecar does not see kw asleep', async () => (await phase()) === 'asleep')
      return a.ttfb
    }
    const raw = async (): Promise<number> => {
      const t0 = performance.now()
      await scale('raw', 1)
      let ip: string | undefined
      while (!ip) {
        const pods = await plane.ok<{ items: { status?: { podIP?: string; conditions?: { type: string; status: string }[] } }[] }>('GET', `/api/v1/namespaces/${NS}/pods?labelSelector=app%3Draw`)
        ip = pods.items.find((p) => p.status?.podIP && p.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))?.status?.podIP
        if (!ip) await sleep(5)
      }
      const a = await get({ host: ip, port: port.raw }, '/', 'raw')
      expectAnswer('raw pod', a, 200, 'pod=raw-')
      const ms = a.firstByteAt - t0
      await scale('raw', 0)
      await kubelet.waitGone('raw-')
      await waitFor('raw to reach 0', async () => (await replicasOf(plane, 'Deployment', NS, 'raw')) === 0)
      return ms
    }
    const side: number[] = []
    const rawMs: number[] = []
    for (let i = 0; i < n; i++) {
      side.push(await viaSidecar())
      rawMs.push(await raw())
      ctx.note(`wake k8s ${i + 1}/${n}: sidecar ${round(side.at(-1) as number)} ms, raw ${round(rawMs.at(-1) as number)} ms (load ${load().join(' ')})`)
    }
    const s = spread(side)
    const r = spread(rawMs)
    return { sidecar: s, raw: r, overheadP50: round(s.p50 - r.p50), load: load() }
  } finally {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
    forget()
  }
}
