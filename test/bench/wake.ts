/**
 * Wake latency, process provider: time to first byte through Caddy + sidecar for a paused and a
 * stopped backend, beside the raw operation measured directly on a twin process of the same app
 * (SIGCONT, or spawn until the app answers, polled every millisecond). Measured in alternation
 * (sidecar, raw, sidecar, raw…). Docker: see `dockerNote`.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { HTTP_APP, startSidecarCli, stop, track, waitPort } from './procs.js'
import { load, round, sleep, type Spread, spread } from './stats.js'

const TOKEN = 'bench-admin-token-0123456789'

export interface WakeModeResult {
  sidecar: Spread
  raw: Spread
  /** p50(sidecar) − p50(raw), ms: what the sidecar and the two Caddy hops add. */
  overheadP50: number
  load: [number, number, number]
}

export interface WakeResult {
  iterations: { pause: number; stop: number }
  process: { pause: WakeModeResult; stop: WakeModeResult }
  docker: { skipped: string }
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

/** What the Docker part needs, and why it does not run in this tree. */
function dockerNote(): string {
  const provider = fileURLToPath(new URL('../../sidecar/providers/docker/', import.meta.url))
  if (!existsSync(provider)) return 'the docker provider is not in this tree (it is being written on branch docker); wake latency for docker pause/stop is not measured yet'
  return 'the docker provider is present, but this benchmark does not drive it yet'
}

export async function runWake(ctx: BenchContext): Promise<WakeResult> {
  const n = { pause: ctx.quick ? 5 : 20, stop: ctx.quick ? 3 : 10 }
  const stops: (() => Promise<void>)[] = []
  try {
    const [scPort, pausePort, stopPort, rawPausePort, rawStopPort, frontPort] = await Promise.all([freePort(), freePort(), freePort(), freePort(), freePort(), freePort()])
    const sidecar = await startSidecarCli(ctx.dir, 'wake-sidecar', sidecarYaml(scPort as number, pausePort as number, stopPort as number), { host: '127.0.0.1', port: scPort as number })
    stops.push(() => sidecar.stop())
    const front = await startBenchCaddy(ctx.dir, site(frontPort as number, `import relight 127.0.0.1:${scPort}`))
    stops.push(() => front.close())

    const admin = async (key: string, op: 'wake' | 'sleep') => {
      const a = await get({ port: scPort as number }, `/_relight/admin/backends/process:${key}/${op}`, '127.0.0.1', { method: 'POST', headers: { authorization: `Bearer ${TOKEN}` } })
      expectAnswer(`admin ${op} ${key}`, a, 200)
      const phase = (JSON.parse(a.body) as { phase?: string }).phase
      const want = op === 'wake' ? 'running' : 'asleep'
      if (phase !== want) throw new Error(`admin ${op} ${key}: backend is ${phase}, expected ${want}`)
    }
    const viaSidecar = async (name: string): Promise<number> => {
      await admin(name, 'sleep')
      await sleep(50)
      const a = await get({ port: frontPort as number }, '/', `${name}.bench.test`)
      expectAnswer(`wake ${name} through Caddy`, a, 200, `${name} pid`)
      return a.ttfb
    }
    // Start both apps once (first start also warms the page cache for node and the app).
    await admin('paused', 'wake')
    await admin('stopped', 'wake')

    // Raw pause: a twin process of the same app, frozen and thawed by us.
    const twin = spawnApp(rawPausePort as number, 'raw-paused')
    stops.push(() => stop(twin))
    await waitPort('127.0.0.1', rawPausePort as number, 15_000, twin)
    const rawPause = async (): Promise<number> => {
      process.kill(-(twin.pid as number), 'SIGSTOP')
      await sleep(50)
      const t0 = performance.now()
      process.kill(-(twin.pid as number), 'SIGCONT')
      const a = await get({ port: rawPausePort as number }, '/', 'raw')
      expectAnswer('raw paused app', a, 200, 'raw-paused pid')
      return a.firstByteAt - t0 // from SIGCONT to the first byte
    }
    // Raw stop: spawn the app, poll until it accepts a connection (every ms), first byte.
    const rawStart = async (): Promise<number> => {
      const t0 = performance.now()
      const child = spawnApp(rawStopPort as number, 'raw-stopped')
      try {
        await waitPort('127.0.0.1', rawStopPort as number, 15_000, child)
        const a = await get({ port: rawStopPort as number }, '/', 'raw')
        expectAnswer('raw started app', a, 200, 'raw-stopped pid')
        return a.firstByteAt - t0 // from spawn to the first byte
      } finally {
        await stop(child)
      }
    }

    const measure = async (mode: 'pause' | 'stop'): Promise<WakeModeResult> => {
      const side: number[] = []
      const raw: number[] = []
      for (let i = 0; i < n[mode]; i++) {
        side.push(await viaSidecar(mode === 'pause' ? 'paused' : 'stopped'))
        raw.push(mode === 'pause' ? await rawPause() : await rawStart())
        ctx.note(`wake ${mode} ${i + 1}/${n[mode]}: sidecar ${round(side.at(-1) as number)} ms, raw ${round(raw.at(-1) as number)} ms (load ${load().join(' ')})`)
      }
      const s = spread(side)
      const r = spread(raw)
      return { sidecar: s, raw: r, overheadP50: round(s.p50 - r.p50), load: load() }
    }
    const pause = await measure('pause')
    const stopped = await measure('stop')
    return { iterations: n, process: { pause, stop: stopped }, docker: { skipped: dockerNote() } }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined)
  }
}
