/**
 * Scale: the same sidecar over 10 and over 10,000 synthetic backends, each in its own process.
 * wrk asks /_relight/auth straight (no Caddy, so the sidecar is what is measured) for a random
 * known host on every request, the two sidecars in alternation. Reported: throughput, RSS (at
 * rest and after load), start-up time, and the idle sweep's time per tick. A third case sends
 * the 10,000-backend sidecar traffic for 10 of its hosts only: what the registry's size costs,
 * apart from the working set that uniform traffic over 10,000 hosts drags through the CPU caches.
 */
import { freePort } from '../helpers/net.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { type ChildStats, startSyntheticSidecar, type SyntheticSidecar } from './procs.js'
import { cpuMs, load, median, round, rssMb } from './stats.js'
import { knownHostsScript, runWrk, type WrkResult } from './wrk.js'

const SIZES = [10, 10_000] as const
const DOMAIN = 'scale.test'

export interface ScaleSize {
  backends: number
  startupMs: number
  rps: number
  p50: number
  p99: number
  runs: WrkResult[]
  rssAtRestMb: number
  rssAfterLoadMb: number
  peakRssMb: number
  heapUsedMb: number
  sweepMs: { p50: number; max: number; iterations: number }
  /** A full resync (every resync_interval): list, upsert, rebuild the host index. Blocks the event loop. */
  resyncMs: { p50: number; max: number; iterations: number }
  /** Sidecar CPU µs per request over the measured runs (steadier than req/s on a shared machine). */
  cpuUsPerRequest: number
}

export interface ScaleResult {
  sizes: ScaleSize[]
  /** rps(10,000) / rps(10), median of the per-round ratios. */
  throughputRatio: number
  /** CPU per request at 10 / at 10,000: the throughput ratio a CPU-bound sidecar would see. */
  cpuRatio: number
  /** 10,000 backends, traffic for 10 of them only (req/s median, CPU µs/request). */
  hot10: { rps: number; cpuUsPerRequest: number; runs: WrkResult[] }
}

export async function runScale(ctx: BenchContext): Promise<ScaleResult> {
  const sidecars: SyntheticSidecar[] = []
  try {
    // Nothing listens on the upstream: these backends start running and are never probed or proxied to.
    const upstream = `127.0.0.1:${await freePort()}`
    const started: { startupMs: number; rest: number }[] = []
    for (const count of SIZES) {
      const t0 = performance.now()
      const s = await startSyntheticSidecar(ctx.dir, `scale-${count}`, { count, upstream, domain: DOMAIN })
      sidecars.push(s)
      const startupMs = round(performance.now() - t0, 0)
      const stats = await s.request<ChildStats>({ type: 'stats' })
      if (stats.backends !== count) throw new Error(`scale: sidecar knows ${stats.backends} backends, expected ${count}`)
      const port = Number(s.address.split(':')[1])
      const a = await get({ port }, '/_relight/auth', `app-${count - 1}.${DOMAIN}`)
      expectAnswer(`scale ${count}: last backend`, a, 200)
      if (a.headers['x-relight-upstream'] !== upstream) throw new Error(`scale ${count}: wrong upstream ${String(a.headers['x-relight-upstream'])}`)
      started.push({ startupMs, rest: (await rssMb(s.pid))?.rss ?? Number.NaN })
      ctx.note(`scale: ${count} backends up in ${startupMs} ms, RSS ${started.at(-1)?.rest} MB`)
    }
    const scripts = SIZES.map((count) => knownHostsScript(ctx.dir, count, DOMAIN))
    const urls = sidecars.map((s) => `http://${s.address}/_relight/auth`)
    // case 2: the 10,000-backend sidecar with the 10-host script
    const wrkOf = (i: number, seconds: number) =>
      runWrk({ url: urls[Math.min(i, 1)] as string, seconds, connections: ctx.connections, threads: ctx.threads, script: scripts[i === 2 ? 0 : i] as string })
    for (let i = 0; i < 3; i++) await wrkOf(i, 1) // warm-up
    const hot10 = { ms: 0, requests: 0, runs: [] as WrkResult[] }
    const runs: WrkResult[][] = SIZES.map(() => [])
    const cpu = SIZES.map(() => ({ ms: 0, requests: 0 }))
    for (let r = 0; r < ctx.rounds; r++) {
      for (let i = 0; i < SIZES.length; i++) {
        const pid = (sidecars[i] as SyntheticSidecar).pid
        const before = await cpuMs(pid)
        const w = await wrkOf(i, ctx.seconds)
        const c = cpu[i] as { ms: number; requests: number }
        c.ms += (await cpuMs(pid)) - before
        c.requests += w.requests
        if (w.non2xx > 0 || w.socketErrors > 0) throw new Error(`scale ${SIZES[i]}: ${w.non2xx} non-2xx, ${w.socketErrors} socket errors`)
        runs[i]?.push(w)
        ctx.note(`scale: round ${r + 1}/${ctx.rounds} ${SIZES[i]} backends: ${w.rps} req/s p50 ${w.p50} ms (load ${w.load.join(' ')})`)
      }
      const pid = (sidecars[1] as SyntheticSidecar).pid
      const before = await cpuMs(pid)
      const w = await wrkOf(2, ctx.seconds)
      hot10.ms += (await cpuMs(pid)) - before
      hot10.requests += w.requests
      hot10.runs.push(w)
      ctx.note(`scale: round ${r + 1}/${ctx.rounds} 10000 backends, 10 hosts hit: ${w.rps} req/s (load ${w.load.join(' ')})`)
    }
    const sizes: ScaleSize[] = []
    for (let i = 0; i < SIZES.length; i++) {
      const s = sidecars[i] as SyntheticSidecar
      const list = runs[i] as WrkResult[]
      const mem = await rssMb(s.pid)
      const stats = await s.request<ChildStats>({ type: 'stats' })
      const sweepMs = await s.request<ScaleSize['sweepMs']>({ type: 'sweep', iterations: ctx.quick ? 50 : 200 })
      const resyncMs = await s.request<ScaleSize['resyncMs']>({ type: 'resync', iterations: ctx.quick ? 2 : 5 })
      const c = cpu[i] as { ms: number; requests: number }
      sizes.push({
        backends: SIZES[i] as number,
        startupMs: started[i]?.startupMs ?? Number.NaN,
        rps: round(median(list.map((w) => w.rps)), 0),
        p50: round(median(list.map((w) => w.p50)), 3),
        p99: round(median(list.map((w) => w.p99)), 3),
        runs: list,
        rssAtRestMb: started[i]?.rest ?? Number.NaN,
        rssAfterLoadMb: mem?.rss ?? Number.NaN,
        peakRssMb: mem?.hwm ?? Number.NaN,
        heapUsedMb: stats.heapUsedMb,
        sweepMs,
        resyncMs,
        cpuUsPerRequest: round((c.ms * 1000) / c.requests, 1),
      })
      ctx.note(`scale: ${SIZES[i]} backends: sweep p50 ${sweepMs.p50} ms max ${sweepMs.max} ms (load ${load().join(' ')})`)
    }
    const small = runs[0] as WrkResult[]
    const large = runs[1] as WrkResult[]
    return {
      sizes,
      throughputRatio: round(median(large.map((w, r) => w.rps / (small[r]?.rps ?? Number.NaN))), 3),
      cpuRatio: round((sizes[0]?.cpuUsPerRequest ?? Number.NaN) / (sizes[1]?.cpuUsPerRequest ?? Number.NaN), 3),
      hot10: { rps: round(median(hot10.runs.map((w) => w.rps)), 0), cpuUsPerRequest: round((hot10.ms * 1000) / hot10.requests, 1), runs: hot10.runs },
    }
  } finally {
    for (const s of sidecars) await s.stop().catch(() => undefined)
  }
}
