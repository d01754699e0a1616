/**
 * Wake latency, Swarm provider: time to first byte through Caddy + sidecar for a service at 0
 * replicas, beside the raw scale-up of a twin service (read the service, POST its spec back with
 * 1 replica, poll its tasks every 20 ms until one runs, then GET until the app answers: the
 * fastest correct "scale-up → ready" a client of the API can do). Measured in alternation.
 *
 * Needs dockerd in an active swarm on a manager (.ci/run: docker swarm init --advertise-addr
 * 127.0.0.1). Both services run busybox httpd from an imported image referenced by its sha256
 * id, publish in host mode (dnsrr, no routing mesh) and run docker-init so a scale-down frees
 * the port at once. Names start with `relight-swarm-test-bench-`; both are removed at the end.
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { Agent, request } from 'undici'
import { freePort } from '../helpers/net.js'
import { busyboxRootfsTar } from '../helpers/rootfs.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { SIDECAR_MAIN, startSidecarCli, trackCleanup } from './procs.js'
import { load, round, sleep, spread, type Spread } from './stats.js'
import { testSecret } from '../helpers/secret.js'

const SOCKET = process.env.RELIGHT_BENCH_DOCKER_SOCKET ?? '/var/run/docker.sock'
const INDEX = 'relight swarm bench'
const TOKEN = testSecret()
const NAME = 'relight-swarm-test-bench-'

export interface SwarmWake {
  /** Request → first byte through Caddy + sidecar, service at 0 replicas. */
  sidecar: Spread
  /** Raw: scale to 1 → task running (polled every 20 ms) → first byte. */
  raw: Spread
  /** Raw: scale to 1 → task running (part of `raw`). */
  rawTaskRunning: Spread
  overheadP50: number
  load: [number, number, number]
}

type Method = 'GET' | 'POST' | 'DELETE'

interface Service {
  ID: string
  Version: { Index: number }
  Spec: { Mode?: { Replicated?: { Replicas?: number } } } & Record<string, unknown>
}

/** A skip reason (string) when no swarm manager answers; the figures otherwise. */
export async function swarmWake(ctx: BenchContext, n: number): Promise<SwarmWake | string> {
  if (!existsSync(SOCKET)) return `no ${SOCKET}: dockerd is not running`
  const dispatcher = new Agent({ connect: { socketPath: SOCKET } })
  const api = async (method: Method, path: string, body?: unknown, stream?: NodeJS.ReadableStream): Promise<{ status: number; text: string }> => {
    const res = await request(`http://docker${path}`, {
      method,
      dispatcher,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
      ...(stream ? { body: stream as never, headers: { 'content-type': 'application/x-tar' } } : body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
    })
    return { status: res.statusCode, text: await res.body.text() }
  }
  const run = randomBytes(4).toString('hex')
  const services: string[] = []
  let image = ''
  const stops: (() => Promise<void>)[] = []
  const removeAll = async () => {
    for (const id of services.splice(0)) await api('DELETE', `/services/${id}`).catch(() => undefined)
    if (image) {
      // In use until the task containers are gone.
      for (let i = 0; i < 100; i++) {
        const r = await api('DELETE', `/images/${image}?force=true`).catch(() => undefined)
        if (!r || r.status === 200 || r.status === 404) break
        await sleep(200)
      }
    }
  }
  const forget = trackCleanup(removeAll)
  try {
    const info = await api('GET', '/info').catch((err: unknown) => ({ status: 0, text: (err as Error).message }))
    if (info.status !== 200) return `dockerd does not answer on ${SOCKET}: ${info.text.trim()}`
    const swarm = (JSON.parse(info.text) as { Swarm?: { LocalNodeState?: string; ControlAvailable?: boolean } }).Swarm
    if (swarm?.LocalNodeState !== 'active' || !swarm.ControlAvailable) return 'the Docker engine is not a swarm manager (docker swarm init --advertise-addr 127.0.0.1)'

    const tar = busyboxRootfsTar(ctx.dir, `${INDEX}\n`)
    const tag = `${NAME}img:${run}`
    const made = await api('POST', `/images/create?fromSrc=-&repo=${NAME}img&tag=${run}`, undefined, createReadStream(tar))
    if (made.status !== 200) throw new Error(`docker import failed: ${made.status} ${made.text}`)
    image = (JSON.parse((await api('GET', `/images/${encodeURIComponent(tag)}/json`)).text) as { Id: string }).Id

    const prefix = `rs${run}`
    const create = async (name: string, port: number, labels: Record<string, string>): Promise<string> => {
      const r = await api('POST', '/services/create', {
        Name: `${NAME}${run}-${name}`,
        Labels: labels,
        TaskTemplate: {
          ContainerSpec: { Image: image, Args: ['/bin/busybox', 'httpd', '-f', '-p', '8080', '-h', '/www'], Init: true, StopGracePeriod: 1_000_000_000 },
        },
        Mode: { Replicated: { Replicas: 0 } },
        EndpointSpec: { Mode: 'dnsrr', Ports: [{ Protocol: 'tcp', TargetPort: 8080, PublishedPort: port, PublishMode: 'host' }] },
      })
      if (r.status !== 201) throw new Error(`service create ${name} failed: ${r.status} ${r.text}`)
      const id = (JSON.parse(r.text) as { ID: string }).ID
      services.push(id)
      return id
    }
    const inspect = async (id: string): Promise<Service> => JSON.parse((await api('GET', `/services/${id}`)).text) as Service
    const scale = async (id: string, replicas: number) => {
      const s = await inspect(id)
      const r = await api('POST', `/services/${id}/update?version=${s.Version.Index}`, { ...s.Spec, Mode: { Replicated: { Replicas: replicas } } })
      if (r.status !== 200) throw new Error(`scale ${id} to ${replicas}: ${r.status} ${r.text}`)
    }
    const tasks = async (id: string) => {
      const filters = encodeURIComponent(JSON.stringify({ service: [id], 'desired-state': ['running'] }))
      return JSON.parse((await api('GET', `/tasks?filters=${filters}`)).text) as { Status: { State: string } }[]
    }
    /** Until no task of the service runs and its port is closed (the next scale-up can take the port). */
    const gone = async (id: string, port: number) => {
      const deadline = Date.now() + 60_000
      for (;;) {
        const all = JSON.parse((await api('GET', `/tasks?filters=${encodeURIComponent(JSON.stringify({ service: [id] }))}`)).text) as { Status: { State: string } }[]
        const up = all.some((t) => ['new', 'pending', 'assigned', 'accepted', 'preparing', 'ready', 'starting', 'running'].includes(t.Status.State))
        if (!up && (await get({ port }, '/', 'raw', { timeoutMs: 1000 }).then(() => false, () => true))) return
        if (Date.now() > deadline) throw new Error(`service ${id} still has tasks after 60 s`)
        await sleep(50)
      }
    }

    const routedPort = await freePort()
    const rawPort = await freePort()
    const routed = await create('routed', routedPort, { [`${prefix}.domain`]: 'swarm.bench.test', [`${prefix}.port`]: '8080' })
    const twin = await create('raw', rawPort, {})
    const sc = await freePort()
    const yaml = `listen: 127.0.0.1:${sc}
log_level: info
admin: { token: ${TOKEN} }
defaults: { idle_timeout: 10m, wake_timeout: 60s }
providers:
  swarm:
    socket: ${SOCKET}
    label_prefix: ${prefix}
`
    const sidecar = await startSidecarCli(ctx.dir, 'wake-swarm', yaml, { host: '127.0.0.1', port: sc }, SIDECAR_MAIN)
    stops.push(() => sidecar.stop())
    const front = await freePort()
    const caddy = await startBenchCaddy(ctx.dir, site(front, `import relight 127.0.0.1:${sc}`))
    stops.push(() => caddy.close())
    const auth = { authorization: `Bearer ${TOKEN}` }
    const key = `swarm:${routed}`
    for (const deadline = Date.now() + 15_000; ; ) {
      const a = await get({ port: sc }, '/_relight/admin/backends', '127.0.0.1', { headers: auth })
      if (a.status === 200 && a.body.includes(key)) break
      if (Date.now() > deadline) throw new Error(`the sidecar does not list ${key} after 15 s; see ${ctx.dir}/wake-swarm.log`)
      await sleep(50)
    }

    const phase = async (): Promise<string | undefined> => {
      const a = await get({ port: sc }, '/_relight/admin/backends', '127.0.0.1', { headers: auth })
      return (JSON.parse(a.body) as { backends: { key: string; phase: string }[] }).backends.find((b) => b.key === key)?.phase
    }
    const viaSidecar = async (): Promise<number> => {
      // Scaled down the way an operator would (the sidecar's own sleep is refused for
      // idle_timeout after the last request: the shared activity says the service is busy).
      await scale(routed, 0)
      await gone(routed, routedPort)
      for (const deadline = Date.now() + 15_000; (await phase()) !== 'asleep'; ) {
        if (Date.now() > deadline) throw new Error('the sidecar did not see the service scaled to zero within 15 s')
        await sleep(20)
      }
      const a = await get({ port: front }, '/', 'swarm.bench.test', { timeoutMs: 90_000 })
      expectAnswer('wake swarm through Caddy', a, 200, INDEX)
      return a.ttfb
    }
    const raw = async (): Promise<[number, number]> => {
      await scale(twin, 0)
      await gone(twin, rawPort)
      const t0 = performance.now()
      await scale(twin, 1)
      while (!(await tasks(twin)).some((t) => t.Status.State === 'running')) await sleep(20)
      const running = performance.now() - t0
      for (;;) {
        const a = await get({ port: rawPort }, '/', 'raw', { timeoutMs: 2000 }).catch(() => undefined)
        if (a?.status === 200) return [running, a.firstByteAt - t0]
        await sleep(5)
      }
    }
    const side: number[] = []
    const rawReady: number[] = []
    const rawRunning: number[] = []
    for (let i = 0; i < n; i++) {
      side.push(await viaSidecar())
      const [running, ready] = await raw()
      rawRunning.push(running)
      rawReady.push(ready)
      ctx.note(`wake swarm ${i + 1}/${n}: sidecar ${round(side.at(-1) as number)} ms, raw ${round(ready)} ms (task running at ${round(running)} ms) (load ${load().join(' ')})`)
    }
    const s = spread(side)
    const r = spread(rawReady)
    return { sidecar: s, raw: r, rawTaskRunning: spread(rawRunning), overheadP50: round(s.p50 - r.p50), load: load() }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined)
    await removeAll().catch(() => undefined)
    forget()
    await dispatcher.close()
  }
}
