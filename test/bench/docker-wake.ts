/**
 * Wake latency, Docker provider: time to first byte through Caddy + sidecar for a paused and a
 * stopped container, beside the raw operation on a twin container of the same image, measured
 * directly over the Engine API (unpause → first byte; start → first byte, polling the port
 * every ms). Measured in alternation (sidecar, raw, sidecar, raw…).
 *
 * Every container is a busybox httpd on the host network, listening on a free 127.0.0.1 port,
 * with the same HostConfig (host network, docker-init as PID 1). The routed ones carry labels
 * under a random prefix (`rb<hex>.domain`…), so only the sidecar started here sees them; all
 * carry `relight-bench.run=<id>` and are removed by id at the end (and on SIGINT/SIGTERM).
 */
import { randomBytes } from 'node:crypto'
import { createReadStream, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { Agent, request } from 'undici'
import { busyboxRootfsTar } from '../helpers/rootfs.js'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { startSidecarCli, trackCleanup, waitPort } from './procs.js'
import { load, round, sleep, spread } from './stats.js'
import type { WakeModeResult } from './wake.js'
import { testSecret } from '../helpers/secret.js'

/** RELIGHT_BENCH_DOCKER_SOCKET: another engine socket (or a missing one, to see the skip). */
const SOCKET = process.env.RELIGHT_BENCH_DOCKER_SOCKET ?? '/var/run/docker.sock'
const IMAGE = 'relight-bench-busybox:latest'
const INDEX = 'relight bench'
const RUN_LABEL = 'relight-bench.run'
/** `docker stop -t` for the twin and `providers.docker.stop_timeout` for the sidecar (docker-init forwards SIGTERM, so stops are quick). */
const STOP_TIMEOUT_S = 2
const TOKEN = testSecret()

export interface DockerWake {
  image: string
  pause: WakeModeResult
  stop: WakeModeResult
  /** Why the --baseline build was not measured here (it has no docker provider). */
  baselineSkipped?: string
}

interface Build {
  readonly name: string
  readonly main: string
}

type Method = 'GET' | 'POST' | 'DELETE'

async function api(dispatcher: Agent, method: Method, path: string, body?: unknown, stream?: NodeJS.ReadableStream, timeoutMs = 60_000): Promise<{ status: number; text: string }> {
  const res = await request(`http://docker${path}`, {
    method,
    dispatcher,
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    ...(stream ? { body: stream as never, headers: { 'content-type': 'application/x-tar' } } : body !== undefined ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } } : {}),
  })
  return { status: res.statusCode, text: await res.body.text() }
}

/** The docker provider's entry point next to a build's dist/sidecar/main.js. */
function hasDockerProvider(main: string): boolean {
  return existsSync(join(dirname(main), 'providers', 'docker', 'provider.js'))
}

/** A skip reason (string) when dockerd does not answer; the figures otherwise. */
export async function dockerWake(ctx: BenchContext, n: { pause: number; stop: number }, builds: readonly Build[]): Promise<DockerWake | string> {
  if (!existsSync(SOCKET)) return `no ${SOCKET}: dockerd is not running`
  const measured = builds.filter((b) => hasDockerProvider(b.main))
  const left = builds.filter((b) => !hasDockerProvider(b.main))
  if (measured[0]?.name !== 'sidecar') return 'the docker provider is not in this build (dist/sidecar/providers/docker)'
  const dispatcher = new Agent({ connect: { socketPath: SOCKET } })
  const run = `rb${randomBytes(4).toString('hex')}`
  const created: string[] = []
  const stops: (() => Promise<void>)[] = []
  const removeAll = async () => {
    // By id, each container this run created; then anything else carrying this run's label.
    for (const id of created.splice(0)) await api(dispatcher, 'DELETE', `/containers/${id}?force=true`).catch(() => undefined)
    const filters = encodeURIComponent(JSON.stringify({ label: [`${RUN_LABEL}=${run}`] }))
    const rest = await api(dispatcher, 'GET', `/containers/json?all=true&filters=${filters}`).catch(() => undefined)
    if (rest?.status === 200) for (const c of JSON.parse(rest.text) as { Id: string }[]) await api(dispatcher, 'DELETE', `/containers/${c.Id}?force=true`).catch(() => undefined)
  }
  const forget = trackCleanup(removeAll)
  try {
    const ping = await api(dispatcher, 'GET', '/_ping', undefined, undefined, 5000).catch((err: unknown) => ({ status: 0, text: (err as Error).message }))
    if (ping.status !== 200) return `dockerd does not answer on ${SOCKET}: ${ping.status ? `${ping.status} ` : ''}${ping.text.trim()}`
    if ((await api(dispatcher, 'GET', `/images/${IMAGE}/json`)).status !== 200) {
      const tar = busyboxRootfsTar(ctx.dir, `${INDEX}\n`)
      const made = await api(dispatcher, 'POST', `/images/create?fromSrc=-&repo=relight-bench-busybox&tag=latest`, undefined, createReadStream(tar))
      if (made.status !== 200) throw new Error(`docker import failed: ${made.status} ${made.text}`)
    }

    const container = async (name: string, port: number, labels: Record<string, string>): Promise<string> => {
      const made = await api(dispatcher, 'POST', `/containers/create?name=relight-bench-${run}-${name}`, {
        Image: IMAGE,
        Cmd: ['/bin/busybox', 'httpd', '-f', '-p', `127.0.0.1:${port}`, '-h', '/www'],
        Labels: { [RUN_LABEL]: run, ...labels },
        HostConfig: { NetworkMode: 'host', Init: true },
      })
      if (made.status !== 201) throw new Error(`docker create ${name} failed: ${made.status} ${made.text}`)
      const id = (JSON.parse(made.text) as { Id: string }).Id
      created.push(id)
      return id
    }
    const op = async (id: string, what: 'start' | 'stop' | 'pause' | 'unpause') => {
      const r = await api(dispatcher, 'POST', `/containers/${id}/${what}${what === 'stop' ? `?t=${STOP_TIMEOUT_S}` : ''}`)
      if (r.status !== 204 && !((what === 'start' || what === 'stop') && r.status === 304)) throw new Error(`docker ${what} ${id.slice(0, 12)}: ${r.status} ${r.text}`)
    }
    const firstByte = async (port: number, t0: number) => {
      await waitPort('127.0.0.1', port, 15_000)
      const a = await get({ port }, '/', 'raw')
      expectAnswer('busybox httpd in docker', a, 200, INDEX)
      return a.firstByteAt - t0
    }

    // The raw twin: no relight labels, same image and HostConfig.
    const twinPort = await freePort()
    const twin = await container('raw', twinPort, {})
    await op(twin, 'start')
    await firstByte(twinPort, performance.now())

    // Per build: two labelled containers (sleep=pause, sleep=stop), one sidecar, one front site.
    const sides: { build: Build; sc: number; front: number; key: Record<'pause' | 'stop', string>; port: Record<'pause' | 'stop', number> }[] = []
    let sites = ''
    for (const build of measured) {
      const prefix = `${run}${build.name === 'sidecar' ? '' : build.name}`
      const port = { pause: await freePort(), stop: await freePort() }
      const id = { pause: '', stop: '' }
      for (const mode of ['pause', 'stop'] as const) {
        id[mode] = await container(`${build.name}-${mode}`, port[mode], {
          [`${prefix}.domain`]: `d${mode}.bench.test`,
          [`${prefix}.port`]: String(port[mode]),
          [`${prefix}.sleep`]: mode,
        })
        await op(id[mode], 'start')
        await firstByte(port[mode], performance.now())
      }
      const sc = await freePort()
      const yaml = `listen: 127.0.0.1:${sc}
log_level: info
admin: { token: ${TOKEN} }
defaults: { idle_timeout: 10m }
providers:
  docker:
    socket: ${SOCKET}
    label_prefix: ${prefix}
    stop_timeout: ${STOP_TIMEOUT_S}s
`
      const sidecar = await startSidecarCli(ctx.dir, `wake-docker-${build.name}`, yaml, { host: '127.0.0.1', port: sc }, build.main)
      stops.push(() => sidecar.stop())
      const front = await freePort()
      sites += site(front, `import relight 127.0.0.1:${sc}`)
      sides.push({ build, sc, front, key: { pause: `docker:${id.pause}`, stop: `docker:${id.stop}` }, port })
    }
    const caddy = await startBenchCaddy(ctx.dir, sites)
    stops.push(() => caddy.close())

    const auth = { authorization: `Bearer ${TOKEN}` }
    // The sidecar lists the labelled containers at start: wait until both keys are known.
    for (const s of sides) {
      const deadline = Date.now() + 15_000
      for (;;) {
        const a = await get({ port: s.sc }, '/_relight/admin/backends', '127.0.0.1', { headers: auth })
        expectAnswer(`admin backends (${s.build.name})`, a, 200)
        const keys = new Set((JSON.parse(a.body) as { backends: { key: string }[] }).backends.map((b) => b.key))
        if (keys.has(s.key.pause) && keys.has(s.key.stop)) break
        if (Date.now() > deadline) throw new Error(`${s.build.name}: the sidecar does not list ${s.key.pause} and ${s.key.stop} after 15 s (has ${[...keys].join(', ') || 'none'}); see ${ctx.dir}/wake-docker-${s.build.name}.log`)
        await sleep(50)
      }
    }
    const admin = async (s: (typeof sides)[number], mode: 'pause' | 'stop', what: 'wake' | 'sleep') => {
      const a = await get({ port: s.sc }, `/_relight/admin/backends/${s.key[mode]}/${what}`, '127.0.0.1', { method: 'POST', headers: auth })
      expectAnswer(`admin ${what} docker ${mode} (${s.build.name})`, a, 200)
      const phase = (JSON.parse(a.body) as { phase?: string }).phase
      const want = what === 'wake' ? 'running' : 'asleep'
      if (phase !== want) throw new Error(`admin ${what} docker ${mode} (${s.build.name}): backend is ${phase}, expected ${want}`)
    }
    const viaSidecar = async (s: (typeof sides)[number], mode: 'pause' | 'stop'): Promise<number> => {
      await admin(s, mode, 'sleep')
      await sleep(50)
      const a = await get({ port: s.front }, '/', `d${mode}.bench.test`)
      expectAnswer(`wake docker ${mode} through Caddy (${s.build.name})`, a, 200, INDEX)
      return a.ttfb
    }
    // Routing check while awake (and warm-up of Caddy's and the sidecar's paths).
    for (const s of sides) {
      for (const mode of ['pause', 'stop'] as const) {
        await admin(s, mode, 'wake')
        const a = await get({ port: s.front }, '/', `d${mode}.bench.test`)
        expectAnswer(`docker ${mode} through Caddy, awake (${s.build.name})`, a, 200, INDEX)
      }
    }

    const rawPause = async (): Promise<number> => {
      await op(twin, 'pause')
      await sleep(50)
      const t0 = performance.now()
      await op(twin, 'unpause')
      return firstByte(twinPort, t0) // from the unpause call to the first byte
    }
    const rawStart = async (): Promise<number> => {
      await op(twin, 'stop')
      await sleep(50)
      const t0 = performance.now()
      await op(twin, 'start')
      return firstByte(twinPort, t0) // from the start call to the first byte (port polled every ms)
    }
    const measure = async (mode: 'pause' | 'stop'): Promise<WakeModeResult> => {
      const side: number[][] = sides.map(() => [])
      const raw: number[] = []
      for (let i = 0; i < n[mode]; i++) {
        for (let j = 0; j < sides.length; j++) side[j]?.push(await viaSidecar(sides[j] as (typeof sides)[number], mode))
        raw.push(mode === 'pause' ? await rawPause() : await rawStart())
        ctx.note(`wake docker ${mode} ${i + 1}/${n[mode]}: ${sides.map((s, j) => `${s.build.name} ${round(side[j]?.at(-1) as number)} ms`).join(', ')}, raw ${round(raw.at(-1) as number)} ms (load ${load().join(' ')})`)
      }
      const s = spread(side[0] as number[])
      const r = spread(raw)
      const base = side[1] ? spread(side[1]) : undefined
      return { sidecar: s, raw: r, overheadP50: round(s.p50 - r.p50), ...(base ? { baseline: base, baselineOverheadP50: round(base.p50 - r.p50) } : {}), load: load() }
    }
    // The twin is running here (awake for the pause series); the stop series leaves it running too.
    const pause = await measure('pause')
    const stop = await measure('stop')
    return { image: IMAGE, pause, stop, ...(left.length > 0 ? { baselineSkipped: `${left.map((b) => b.name).join(', ')}: no docker provider in that build` } : {}) }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined)
    await removeAll().catch(() => undefined)
    forget()
    await dispatcher.close()
  }
}
