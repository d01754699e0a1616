/**
 * Wake latency, process provider: time to first byte through Caddy + sidecar for a paused and a
 * stopped backend, beside the raw operation measured directly on a twin process of the same app
 * (SIGCONT, or spawn until the app answers, polled every millisecond). Measured in alternation
 * (sidecar, raw, sidecar, raw…). Docker (when dockerd answers): the same with the docker
 * provider and a twin container, see docker-wake.ts. Swarm (when a swarm manager answers): a
 * service at 0 replicas beside the raw scale-up of a twin service, see swarm-wake.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { createServer } from 'node:net'
import { pathToFileURL } from 'node:url'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { type DockerWake, dockerWake } from './docker-wake.js'
import { type SwarmWake, swarmWake } from './swarm-wake.js'
import { HTTP_APP, SIDECAR_MAIN, startSidecarCli, stop, track, waitPort } from './procs.js'
import { load, round, sleep, type Spread, spread } from './stats.js'
import { testSecret } from '../helpers/secret.js'

const TOKEN = testSecret()

export interface WakeModeResult {
  sidecar: Spread
  raw: Spread
  /** The same through the --baseline build of the sidecar, measured in the same alternation. */
  baseline?: Spread
  baselineOverheadP50?: number
  /** p50(sidecar) − p50(raw), ms: what the sidecar and the two Caddy hops add. */
  overheadP50: number
  load: [number, number, number]
}

/** How late the readiness probe notices an app that starts listening L ms after the wake began. */
export interface ProbeLag {
  listenAfterMs: number[]
  /** Mean detection delay after the app listened, ms, per build. */
  lagMs: Record<string, number>
}

export interface WakeResult {
  iterations: { pause: number; stop: number }
  probeLag: ProbeLag
  process: { pause: WakeModeResult; stop: WakeModeResult }
  /** Docker provider and raw unpause / start (when dockerd answers; else why not; error when it failed). */
  docker: DockerWake | { skipped: string } | { error: string }
  /** Swarm provider from 0 replicas and the raw scale-up → ready (when a swarm manager answers). */
  swarm: SwarmWake | { skipped: string } | { error: string }
}

function sidecarYaml(port: number, pausePort: number, stopPort: number): string {
  const app = (name: string, p: number, mode: string) => `      - name: ${name}
        hosts: [${name}.bench.test]
        command: [${JSON.stringify(process.execPath)}, ${JSON.stringify(HTTP_APP)}]
        env: { PORT: "{{port}}", NAME: ${name} }
        port: ${p}
        sleep: ${mode}
        fallback_sleep: ${mode}
        restart: never
        stdout: "null"
        stderr: inherit
        grace_period: 2s
`
  return `listen: 127.0.0.1:${port}
log_level: info
admin: { token: ${TOKEN} }
defaults: { idle_timeout: 10m }
providers:
  process:
    apps:
${app('paused', pausePort, 'pause')}${app('stopped', stopPort, 'stop')}`
}

function spawnApp(port: number, name: string): ChildProcess {
  const child = spawn(process.execPath, [HTTP_APP], { env: { ...process.env, PORT: String(port), NAME: name }, stdio: 'ignore', detached: true })
  track(child)
  return child
}

export async function runWake(ctx: BenchContext): Promise<WakeResult> {
  const n = { pause: ctx.quick ? 5 : 20, stop: ctx.quick ? 3 : 10 }
  const stops: (() => Promise<void>)[] = []
  let processResult: Pick<WakeResult, 'probeLag' | 'process'>
  try {
    const ports = async () => ({ sc: await freePort(), pause: await freePort(), stop: await freePort(), front: await freePort() })
    const builds = [{ name: 'sidecar', main: SIDECAR_MAIN, ports: await ports() }]
    if (ctx.baseline) builds.push({ name: 'baseline', main: ctx.baseline, ports: await ports() })
    const [rawPausePort, rawStopPort] = [await freePort(), await freePort()]
    let sites = ''
    for (const b of builds) {
      const sidecar = await startSidecarCli(ctx.dir, `wake-${b.name}`, sidecarYaml(b.ports.sc, b.ports.pause, b.ports.stop), { host: '127.0.0.1', port: b.ports.sc }, b.main)
      stops.push(() => sidecar.stop())
      sites += site(b.ports.front, `import relight 127.0.0.1:${b.ports.sc}`)
    }
    const front = await startBenchCaddy(ctx.dir, sites)
    stops.push(() => front.close())

    const admin = async (scPort: number, key: string, op: 'wake' | 'sleep') => {
      const a = await get({ port: scPort }, `/_relight/admin/backends/process:${key}/${op}`, '127.0.0.1', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
      expectAnswer(`admin ${op} ${key}`, a, 200)
      const phase = (JSON.parse(a.body) as { phase?: string }).phase
      const want = op === 'wake' ? 'running' : 'asleep'
      if (phase !== want) throw new Error(`admin ${op} ${key}: backend is ${phase}, expected ${want}`)
    }
    const viaSidecar = async (b: (typeof builds)[number], name: string): Promise<number> => {
      await admin(b.ports.sc, name, 'sleep')
      await sleep(50)
      const a = await get({ port: b.ports.front }, '/', `${name}.bench.test`)
      expectAnswer(`wake ${name} through Caddy`, a, 200, `${name} pid`)
      return a.ttfb
    }
    // Start both apps once (first start also warms the page cache for node and the app).
    for (const b of builds) {
      await admin(b.ports.sc, 'paused', 'wake')
      await admin(b.ports.sc, 'stopped', 'wake')
    }

    // Raw pause: a twin process of the same app, frozen and thawed by us.
    const twin = spawnApp(rawPausePort, 'raw-paused')
    stops.push(() => stop(twin))
    await waitPort('127.0.0.1', rawPausePort, 15_000, twin)
    const rawPause = async (): Promise<number> => {
      process.kill(-(twin.pid as number), 'SIGSTOP')
      await sleep(50)
      const t0 = performance.now()
      process.kill(-(twin.pid as number), 'SIGCONT')
      const a = await get({ port: rawPausePort }, '/', 'raw')
      expectAnswer('raw paused app', a, 200, 'raw-paused pid')
      return a.firstByteAt - t0 // from SIGCONT to the first byte
    }
    // Raw stop: spawn the app, poll until it accepts a connection (every ms), first byte.
    const rawStart = async (): Promise<number> => {
      const t0 = performance.now()
      const child = spawnApp(rawStopPort, 'raw-stopped')
      try {
        await waitPort('127.0.0.1', rawStopPort, 15_000, child)
        const a = await get({ port: rawStopPort }, '/', 'raw')
        expectAnswer('raw started app', a, 200, 'raw-stopped pid')
        return a.firstByteAt - t0 // from spawn to the first byte
      } finally {
        await stop(child)
      }
    }

    const measure = async (mode: 'pause' | 'stop'): Promise<WakeModeResult> => {
      const side: number[][] = builds.map(() => [])
      const raw: number[] = []
      const app = mode === 'pause' ? 'paused' : 'stopped'
      for (let i = 0; i < n[mode]; i++) {
        for (let j = 0; j < builds.length; j++) side[j]?.push(await viaSidecar(builds[j] as (typeof builds)[number], app))
        raw.push(mode === 'pause' ? await rawPause() : await rawStart())
        ctx.note(`wake ${mode} ${i + 1}/${n[mode]}: ${builds.map((b, j) => `${b.name} ${round(side[j]?.at(-1) as number)} ms`).join(', ')}, raw ${round(raw.at(-1) as number)} ms (load ${load().join(' ')})`)
      }
      const s = spread(side[0] as number[])
      const r = spread(raw)
      const base = side[1] ? spread(side[1]) : undefined
      return { sidecar: s, raw: r, overheadP50: round(s.p50 - r.p50), ...(base ? { baseline: base, baselineOverheadP50: round(base.p50 - r.p50) } : {}), load: load() }
    }
    const pause = await measure('pause')
    const stopped = await measure('stop')
    const probeLag = await measureProbeLag(ctx)
    processResult = { probeLag, process: { pause, stop: stopped } }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined)
  }
  // Docker after the process sidecars and apps are gone, with its own sidecar and front Caddy.
  let docker: WakeResult['docker']
  try {
    const d = await dockerWake(ctx, n, [{ name: 'sidecar', main: SIDECAR_MAIN }, ...(ctx.baseline ? [{ name: 'baseline', main: ctx.baseline }] : [])])
    docker = typeof d === 'string' ? { skipped: d } : d
    if (typeof d === 'string') ctx.note(`wake: docker skipped: ${d}`)
  } catch (err) {
    // The process figures stand; the run still fails.
    docker = { error: (err as Error).message }
    ctx.note(`wake: docker FAILED: ${(err as Error).stack ?? String(err)}`)
    process.exitCode = 1
  }
  let swarm: WakeResult['swarm']
  try {
    const w = await swarmWake(ctx, Math.max(3, Math.ceil(n.stop / 4)))
    swarm = typeof w === 'string' ? { skipped: w } : w
    if (typeof w === 'string') ctx.note(`wake: swarm skipped: ${w}`)
  } catch (err) {
    swarm = { error: (err as Error).message }
    ctx.note(`wake: swarm FAILED: ${(err as Error).stack ?? String(err)}`)
    process.exitCode = 1
  }
  return { iterations: n, ...processResult, docker, swarm }
}

type WaitReady = (upstream: string, readiness: 'tcp', signal: AbortSignal) => Promise<void>

/**
 * The readiness probe alone (sidecar/core/readiness.ts, in this process): a listener opens L ms
 * after the probe starts; how long after that does the probe notice? Deterministic enough to
 * compare builds on a noisy machine, where app start times vary by hundreds of ms.
 */
async function measureProbeLag(ctx: BenchContext): Promise<ProbeLag> {
  const listenAfterMs = ctx.quick ? [50, 300] : [50, 150, 300, 600]
  const builds: [string, string][] = [['sidecar', new URL('../../sidecar/core/readiness.js', import.meta.url).href]]
  if (ctx.baseline) builds.push(['baseline', new URL('./core/readiness.js', pathToFileURL(ctx.baseline)).href])
  const fns = await Promise.all(builds.map(async ([name, url]) => [name, ((await import(url)) as { waitReady: WaitReady }).waitReady] as const))
  const lags: Record<string, number[]> = Object.fromEntries(builds.map(([name]) => [name, []]))
  for (let rep = 0; rep < (ctx.quick ? 1 : 3); rep++) {
    for (const after of listenAfterMs) {
      for (const [name, waitReady] of fns) {
        const port = await freePort()
        const server = createServer((s) => s.destroy())
        let listenedAt = 0
        const t0 = performance.now()
        const timer = setTimeout(() => server.listen(port, '127.0.0.1', () => (listenedAt = performance.now())), after)
        await waitReady(`127.0.0.1:${port}`, 'tcp', AbortSignal.timeout(10_000))
        lags[name]?.push(performance.now() - (listenedAt || t0 + after))
        clearTimeout(timer)
        await new Promise<void>((resolve) => server.close(() => resolve()))
      }
    }
  }
  const lagMs = Object.fromEntries(Object.entries(lags).map(([k, v]) => [k, round(v.reduce((a, b) => a + b, 0) / v.length)]))
  ctx.note(`wake: readiness probe lag ${JSON.stringify(lagMs)} ms`)
  return { listenAfterMs, lagMs }
}
