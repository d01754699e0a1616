/**
 * Hot path: one wrk, the same front Caddy, the same backend, set-ups measured in alternation.
 *   a   Caddy reverse_proxy straight to the backend (the limit)
 *   b   Caddy forward_auth (the relight snippet) to a Caddy-native responder that only sets the
 *       header (the ceiling of the forward_auth design: a sidecar that costs nothing)
 *   n   the snippet to a bare Node http server that only sets the header (the floor of any Node sidecar)
 *   c   the snippet to relight-sidecar (real CLI, own process, TCP loopback)
 *   cu  the same over a unix socket
 *   cl  the same, TCP, with Caddy's access log streamed to the sidecar (in-flight accounting on)
 *   clf like cl, the log filtered down to what the sidecar reads (request headers and TLS dropped)
 *   c0  like c, with another build of the sidecar (--baseline), for before/after comparisons
 *   cl0 like cl, with the --baseline build behind the snippet before tickets (version 1): the
 *       whole accounting pipeline before/after (Caddy's extra snippet work included)
 *   d   wrk straight at the sidecar's /_relight/auth (no Caddy): what the sidecar alone can do
 *   nd  wrk straight at the bare Node responder (no Caddy): d/nd is the sidecar's own cost
 *   d0  like d, with the --baseline build
 *   al  a with the access log on (streamed to the fl sidecar, as fl's is): the limit for fl
 *   fl  the fast lane (snippet 4's relight_fast, issue 25): the app is awake, Caddy stats its flag
 *       and proxies directly, no forward_auth; access log streamed to the sidecar
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { SNIPPET_V1 } from '../helpers/caddy.js'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { type RunningProcess, SIDECAR_MAIN, startBareResponder, startSidecarCli } from './procs.js'
import { cpuMs, median, round, rssMb } from './stats.js'
import { runWrk, type WrkResult } from './wrk.js'

export const HOT_SETUPS = ['a', 'al', 'b', 'n', 'c', 'cu', 'cl', 'clf', 'fl', 'c0', 'cl0', 'd', 'nd', 'd0'] as const
export const DEFAULT_HOT_SETUPS = ['a', 'al', 'b', 'n', 'c', 'cu', 'cl', 'fl']

export const SETUP_LABEL: Record<string, string> = {
  a: 'a  Caddy reverse_proxy → backend (limit)',
  b: 'b  forward_auth → Caddy-native responder (ceiling)',
  n: 'n  forward_auth → bare Node http responder',
  c: 'c  forward_auth → relight-sidecar (TCP)',
  cu: 'cu forward_auth → relight-sidecar (unix socket)',
  cl: 'cl c + access log to the sidecar',
  clf: 'clf cl, log filtered (no request headers)',
  al: 'al a + access log (limit for fl)',
  fl: 'fl fast lane: file matcher → backend, access log on',
  c0: 'c0 forward_auth → baseline sidecar build (TCP)',
  cl0: 'cl0 cl with the baseline build and the version 1 snippet',
  d: 'd  wrk → sidecar /_relight/auth (no Caddy)',
  nd: 'nd wrk → bare Node responder (no Caddy)',
  d0: 'd0 wrk → baseline sidecar build (no Caddy)',
}

const HOST = 'app.bench.test'

const BODY = 'hello from the bench backend'

/** CPU µs per request, by process, during the measured runs (less sensitive to other load than req/s). */
export interface CpuPerRequest {
  front: number
  /** The auth server when it is its own process (sidecar, bare Node); in b it is the front Caddy. */
  auth?: number
  backend: number
  total: number
}

export interface HotSetupResult {
  label: string
  runs: WrkResult[]
  cpuUsPerRequest: CpuPerRequest
  rps: number
  p50: number
  p99: number
  sidecarRssMb?: number
}

export interface HotResult {
  wrk: { seconds: number; connections: number; threads: number; rounds: number }
  setups: Record<string, HotSetupResult>
  /** Median over rounds of the ratio within each round (same load for both). */
  ratios: Record<string, number>
  /**
   * The same ratios from CPU µs per request (total of all processes): x/y = cpu(y)/cpu(x). On a
   * CPU-bound machine this is the throughput ratio, and it moves much less with other load.
   */
  cpuRatios: Record<string, number>
  order: string[]
}

/**
 * Each sidecar manages a backend of its own: a Caddy answering the same short body as the one the
 * Caddy-only set-ups use (a sidecar routes only to processes it started, so a placeholder app
 * pointing at a server it did not start would be refused as a foreign port holder).
 */
async function sidecarYaml(ctx: BenchContext, name: string, listen: string, extra = ''): Promise<{ yaml: string; upstream: string }> {
  const port = await freePort()
  const home = join(ctx.dir, `backend-${name}`)
  mkdirSync(home, { recursive: true })
  const file = join(home, 'Caddyfile')
  writeFileSync(file, `{\n\tadmin off\n\tauto_https off\n\tstorage file_system ${join(home, 'data')}\n}\n${site(port, `respond "${BODY}\n" 200`)}`)
  const yaml = `listen: ${listen}
log_level: info
${extra}providers:
  process:
    apps:
      - name: app
        hosts: [${HOST}]
        command: [caddy, run, --config, ${JSON.stringify(file)}, --adapter, caddyfile]
        env: { HOME: ${JSON.stringify(home)}, XDG_DATA_HOME: ${JSON.stringify(join(home, 'data'))}, XDG_CONFIG_HOME: ${JSON.stringify(join(home, 'config'))} }
        port: ${port}
        always_on: true
        stdout: "null"
        stderr: "null"
        grace_period: 2s
`
  return { yaml, upstream: `127.0.0.1:${port}` }
}

/** The first child process of `pid` (the backend a sidecar supervises). */
function childPid(pid: number): number | undefined {
  try {
    const first = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]
    return first ? Number(first) : undefined
  } catch {
    return undefined
  }
}

export async function runHot(ctx: BenchContext): Promise<HotResult> {
  const setups = ctx.setups.filter((s) => (s !== 'c0' && s !== 'd0' && s !== 'cl0') || ctx.baseline)
  const stops: (() => Promise<void>)[] = []
  try {
    // The backend: its own Caddy answering a short body, started first (the sidecar probes it).
    const backendPort = await freePort()
    const backend = await startBenchCaddy(ctx.dir, site(backendPort, `respond "${BODY}\n" 200`))
    stops.push(() => backend.close())
    const upstream = `127.0.0.1:${backendPort}`

    const ports: Record<string, number> = {}
    for (const s of ['a', 'al', 'b', 'n', 'c', 'cu', 'cl', 'clf', 'fl', 'c0', 'cl0', 'auth', 'bare', 'sc', 'sc0', 'scl', 'sclf', 'scl0', 'sfl']) ports[s] = await freePort()
    const accessSockFl = join(ctx.dir, 'hot-access-fl.sock')
    const laneDir = join(ctx.dir, 'hot-fast-lane')
    const unixSock = join(ctx.dir, 'hot-sidecar.sock')
    const accessSock = join(ctx.dir, 'hot-access.sock')
    const accessSockF = join(ctx.dir, 'hot-access-f.sock')
    const accessSock0 = join(ctx.dir, 'hot-access-0.sock')
    const sidecars: Record<string, RunningProcess> = {}
    /** Each sidecar's own backend address. */
    const upstreams: Record<string, string> = {}
    const need = (s: string) => setups.includes(s)

    if (need('c') || need('d')) {
      const y = await sidecarYaml(ctx, 'hot-c', `127.0.0.1:${ports.sc}`)
      sidecars.c = await startSidecarCli(ctx.dir, 'hot-c', y.yaml, { host: '127.0.0.1', port: ports.sc as number })
      upstreams.c = y.upstream
    }
    if (need('cu')) {
      const y = await sidecarYaml(ctx, 'hot-cu', `unix:${unixSock}`)
      sidecars.cu = await startSidecarCli(ctx.dir, 'hot-cu', y.yaml, { path: unixSock })
      upstreams.cu = y.upstream
    }
    if (need('cl')) {
      const y = await sidecarYaml(ctx, 'hot-cl', `127.0.0.1:${ports.scl}`, `access_log: unix:${accessSock}\n`)
      sidecars.cl = await startSidecarCli(ctx.dir, 'hot-cl', y.yaml, { host: '127.0.0.1', port: ports.scl as number })
      upstreams.cl = y.upstream
    }
    if (need('clf')) {
      const y = await sidecarYaml(ctx, 'hot-clf', `127.0.0.1:${ports.sclf}`, `access_log: unix:${accessSockF}\n`)
      sidecars.clf = await startSidecarCli(ctx.dir, 'hot-clf', y.yaml, { host: '127.0.0.1', port: ports.sclf as number })
      upstreams.clf = y.upstream
    }
    if (need('fl') || need('al')) {
      const y = await sidecarYaml(ctx, 'hot-fl', `127.0.0.1:${ports.sfl}`, `access_log: unix:${accessSockFl}\nfast_lane_dir: ${JSON.stringify(laneDir)}\ndefaults: { fast_lane: on }\n`)
      sidecars.fl = await startSidecarCli(ctx.dir, 'hot-fl', y.yaml, { host: '127.0.0.1', port: ports.sfl as number })
      upstreams.fl = y.upstream
    }
    if ((need('c0') || need('d0')) && ctx.baseline) {
      const y = await sidecarYaml(ctx, 'hot-c0', `127.0.0.1:${ports.sc0}`)
      sidecars.c0 = await startSidecarCli(ctx.dir, 'hot-c0', y.yaml, { host: '127.0.0.1', port: ports.sc0 as number }, ctx.baseline)
      upstreams.c0 = y.upstream
    }
    if (need('cl0') && ctx.baseline) {
      const y = await sidecarYaml(ctx, 'hot-cl0', `127.0.0.1:${ports.scl0}`, `access_log: unix:${accessSock0}\n`)
      sidecars.cl0 = await startSidecarCli(ctx.dir, 'hot-cl0', y.yaml, { host: '127.0.0.1', port: ports.scl0 as number }, ctx.baseline)
      upstreams.cl0 = y.upstream
    }
    for (const s of Object.values(sidecars)) stops.push(() => s.stop())
    // Every set-up reaches one backend: the Caddy sidecar c supervises when c runs (so a/b/n and c
    // differ only in what answers forward_auth), else the standalone one.
    const shared = upstreams.c ?? upstream
    const sharedPid = (sidecars.c ? childPid(sidecars.c.pid) : undefined) ?? backend.pid
    let bare: RunningProcess | undefined
    if (need('n') || need('nd')) {
      const b = await startBareResponder(ports.bare as number, shared)
      bare = b
      stops.push(() => b.stop())
    }

    // The front Caddy: one site per set-up, all alike but for what forward_auth asks.
    let sites = site(ports.a as number, `reverse_proxy ${shared}`)
    sites += site(ports.auth as number, `header X-Relight-Upstream ${shared}\nrespond 200`)
    sites += site(ports.b as number, `import relight 127.0.0.1:${ports.auth}`)
    if (need('n')) sites += site(ports.n as number, `import relight 127.0.0.1:${ports.bare}`)
    if (sidecars.c) sites += site(ports.c as number, `import relight 127.0.0.1:${ports.sc}`)
    if (sidecars.cu) sites += site(ports.cu as number, `import relight unix/${unixSock}`)
    if (sidecars.cl) sites += site(ports.cl as number, `log {\n\toutput net unix/${accessSock}\n\tformat json\n}\nimport relight 127.0.0.1:${ports.scl}`)
    if (sidecars.clf) {
      const filter = 'format filter {\n\twrap json\n\tfields {\n\t\trequest>headers delete\n\t\trequest>tls delete\n\t}\n}'
      sites += site(ports.clf as number, `log {\n\toutput net unix/${accessSockF}\n${filter.split('\n').map((l) => `\t${l}`).join('\n')}\n}\nimport relight 127.0.0.1:${ports.sclf}`)
    }
    if (sidecars.c0) sites += site(ports.c0 as number, `import relight 127.0.0.1:${ports.sc0}`)
    const flLog = `log {\n\toutput net unix/${accessSockFl}\n\tformat json\n}\n`
    if (sidecars.fl) sites += site(ports.fl as number, `${flLog}import relight_fast 127.0.0.1:${ports.sfl} ${laneDir}`)
    if (need('al')) sites += site(ports.al as number, `${flLog}reverse_proxy ${shared}`)
    if (sidecars.cl0) sites = `${SNIPPET_V1}${sites}${site(ports.cl0 as number, `log {\n\toutput net unix/${accessSock0}\n\tformat json\n}\nimport relight_v1 127.0.0.1:${ports.scl0}`)}`
    const front = await startBenchCaddy(ctx.dir, sites)
    stops.push(() => front.close())

    // Correctness first: every set-up must route to the backend, the sidecar must answer exactly.
    const urlOf = (s: string) =>
      s === 'd' ? `http://127.0.0.1:${ports.sc}/_relight/auth` : s === 'd0' ? `http://127.0.0.1:${ports.sc0}/_relight/auth` : s === 'nd' ? `http://127.0.0.1:${ports.bare}/_relight/auth` : `http://127.0.0.1:${ports[s]}/`
    for (const s of setups) {
      if (s === 'nd') expectAnswer('bare responder', await get({ port: ports.bare as number }, '/_relight/auth', HOST), 200)
      else if (s === 'd' || s === 'd0') {
        const a = await get({ port: (s === 'd' ? ports.sc : ports.sc0) as number }, '/_relight/auth', HOST)
        expectAnswer('sidecar /_relight/auth', a, 200)
        const own = s === 'd' ? upstreams.c : upstreams.c0
        if (a.headers['x-relight-upstream'] !== own) throw new Error(`sidecar answered X-Relight-Upstream ${String(a.headers['x-relight-upstream'])}, expected ${own}`)
      } else {
        const a = await get({ port: ports[s] as number }, '/', HOST)
        expectAnswer(`set-up ${s}`, a, 200, BODY)
        // the fast lane answers without the forward_auth ticket; wait for the flag (always_on wakes at start)
        if (s === 'fl' && a.headers['x-relight-ticket'] !== undefined) {
          const deadline = Date.now() + 10_000
          while ((await get({ port: ports.fl as number }, '/', HOST)).headers['x-relight-ticket'] !== undefined) {
            if (Date.now() > deadline) throw new Error('set-up fl: still answered through forward_auth after 10 s (no fast-lane flag)')
            await new Promise((r) => setTimeout(r, 100))
          }
        }
      }
    }

    const wrkOf = (s: string, seconds: number) =>
      runWrk({ url: urlOf(s), seconds, connections: ctx.connections, threads: ctx.threads, headers: { Host: HOST } })
    // Warm-up (JIT, connection pools), not recorded.
    for (const s of setups) {
      ctx.note(`hot: warm-up ${s}`)
      await wrkOf(s, 1)
    }
    const runs: Record<string, WrkResult[]> = Object.fromEntries(setups.map((s) => [s, []]))
    const authPid = (s: string): number | undefined =>
      s === 'n' || s === 'nd' ? bare?.pid : s === 'd' ? sidecars.c?.pid : s === 'd0' ? sidecars.c0?.pid : sidecars[s]?.pid
    const cpu: Record<string, { front: number; auth: number; backend: number; requests: number }> = Object.fromEntries(
      setups.map((s) => [s, { front: 0, auth: 0, backend: 0, requests: 0 }]),
    )
    for (let round = 0; round < ctx.rounds; round++) {
      for (const s of setups) {
        // A sidecar set-up's backend is the Caddy that sidecar supervises.
        const sidecarPid = s === 'd' ? sidecars.c?.pid : s === 'd0' ? sidecars.c0?.pid : sidecars[s]?.pid
        const backendPid = (sidecarPid === undefined ? undefined : childPid(sidecarPid)) ?? sharedPid
        const pids = { front: s === 'd' || s === 'd0' || s === 'nd' ? undefined : front.pid, auth: authPid(s), backend: backendPid }
        const snap = async () => ({
          front: pids.front ? await cpuMs(pids.front) : 0,
          auth: pids.auth ? await cpuMs(pids.auth) : 0,
          backend: await cpuMs(pids.backend),
        })
        const before = await snap()
        const r = await wrkOf(s, ctx.seconds)
        const after = await snap()
        const c = cpu[s]
        if (c) {
          c.front += after.front - before.front
          c.auth += after.auth - before.auth
          c.backend += after.backend - before.backend
          c.requests += r.requests
        }
        if (r.non2xx > 0 || r.socketErrors > 0) throw new Error(`set-up ${s}: ${r.non2xx} non-2xx answers and ${r.socketErrors} socket errors under load`)
        runs[s]?.push(r)
        ctx.note(`hot: round ${round + 1}/${ctx.rounds} ${s.padEnd(2)} ${r.rps} req/s p50 ${r.p50} ms p99 ${r.p99} ms (load ${r.load.join(' ')})`)
      }
    }

    const result: HotResult = { wrk: { seconds: ctx.seconds, connections: ctx.connections, threads: ctx.threads, rounds: ctx.rounds }, setups: {}, ratios: {}, cpuRatios: {}, order: setups }
    for (const s of setups) {
      const list = runs[s] as WrkResult[]
      const pid = s === 'd' ? sidecars.c?.pid : s === 'd0' ? sidecars.c0?.pid : sidecars[s]?.pid
      const mem = pid === undefined ? undefined : await rssMb(pid)
      result.setups[s] = {
        label: SETUP_LABEL[s] ?? s,
        runs: list,
        cpuUsPerRequest: cpuPerRequest(cpu[s], authPid(s) !== undefined),
        rps: round(median(list.map((r) => r.rps)), 0),
        p50: round(median(list.map((r) => r.p50)), 3),
        p99: round(median(list.map((r) => r.p99)), 3),
        ...(mem ? { sidecarRssMb: mem.rss } : {}),
      }
    }
    const paired = (x: string, y: string) => {
      const xs = runs[x]
      const ys = runs[y]
      if (!xs || !ys) return
      result.ratios[`${x}/${y}`] = round(median(xs.map((r, i) => r.rps / (ys[i]?.rps ?? Number.NaN))), 3)
      const cx = result.setups[x]?.cpuUsPerRequest.total
      const cy = result.setups[y]?.cpuUsPerRequest.total
      if (cx && cy) result.cpuRatios[`${x}/${y}`] = round(cy / cx, 3)
    }
    for (const s of ['c', 'cu', 'cl', 'clf', 'c0', 'cl0', 'n']) {
      paired(s, 'b')
      paired(s, 'a')
    }
    paired('b', 'a')
    paired('fl', 'a')
    paired('fl', 'al')
    paired('fl', 'cl')
    paired('al', 'a')
    paired('d', 'nd')
    paired('clf', 'cl')
    if (runs.c0 && runs.c) paired('c', 'c0')
    if (runs.cl0 && runs.cl) paired('cl', 'cl0')
    if (runs.d0 && runs.d) paired('d', 'd0')
    return result
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined)
  }
}

export { SIDECAR_MAIN }

function cpuPerRequest(c: { front: number; auth: number; backend: number; requests: number } | undefined, ownAuth: boolean): CpuPerRequest {
  if (!c || c.requests === 0) return { front: Number.NaN, backend: Number.NaN, total: Number.NaN }
  const us = (ms: number) => round((ms * 1000) / c.requests, 1)
  return { front: us(c.front), ...(ownAuth ? { auth: us(c.auth) } : {}), backend: us(c.backend), total: us(c.front + c.auth + c.backend) }
}
