/**
 * Unknown-host flood: wrk sends a fresh random Host on every request straight at the sidecar's
 * /_relight/auth, as fast as it can. Expected: 404 for all, no provider call, RSS flat.
 * Two variants: the default (providers that follow events; `relistOnMiss` off), and a provider
 * with `relistOnMiss` on, whose misses may cause a list at most once a second.
 */
import { freePort } from '../helpers/net.js'
import type { BenchContext } from './context.js'
import { expectAnswer, get } from './http.js'
import { type ChildStats, startSyntheticSidecar } from './procs.js'
import { load, round, rssMb, sleep } from './stats.js'
import { randomHostsScript, runWrk, type WrkResult } from './wrk.js'

export interface FloodVariant {
  relistOnMiss: boolean
  seconds: number
  wrk: WrkResult
  /** 2xx answers (wrk counts the rest as non-2xx): must be 0, every host is unknown. */
  answered2xx: number
  providerCalls: { list: number; wake: number; sleep: number }
  /** RSS samples every 500 ms during the flood, MB. */
  rssMb: { before: number; afterFirstSecond: number; max: number; end: number; samples: number[] }
}

export interface FloodResult {
  variants: FloodVariant[]
}

export async function runFlood(ctx: BenchContext): Promise<FloodResult> {
  const upstream = `127.0.0.1:${await freePort()}`
  const script = randomHostsScript(ctx.dir, 'flood.test')
  const seconds = ctx.quick ? 3 : Math.max(10, ctx.seconds * 2)
  const variants: FloodVariant[] = []
  for (const relistOnMiss of [false, true]) {
    const s = await startSyntheticSidecar(ctx.dir, `flood-${relistOnMiss ? 'relist' : 'events'}`, { count: 10, upstream, domain: 'known.test', relistOnMiss })
    try {
      const port = Number(s.address.split(':')[1])
      expectAnswer('flood: unknown host', await get({ port }, '/_relight/auth', 'nobody.flood.test'), 404)
      const before = await s.request<ChildStats>({ type: 'stats' })
      const samples: number[] = []
      const sampleOnce = async () => {
        const m = await rssMb(s.pid)
        if (m) samples.push(m.rss)
      }
      await sampleOnce()
      let sampling = true
      const sampler = (async () => {
        while (sampling) {
          await sleep(500)
          await sampleOnce()
        }
      })()
      const w = await runWrk({ url: `http://${s.address}/_relight/auth`, seconds, connections: ctx.connections, threads: ctx.threads, script })
      sampling = false
      await sampler
      const after = await s.request<ChildStats>({ type: 'stats' })
      const calls = { list: after.calls.list - before.calls.list, wake: after.calls.wake - before.calls.wake, sleep: after.calls.sleep - before.calls.sleep }
      const v: FloodVariant = {
        relistOnMiss,
        seconds,
        wrk: w,
        answered2xx: w.requests - w.non2xx,
        providerCalls: calls,
        rssMb: { before: samples[0] ?? Number.NaN, afterFirstSecond: samples[2] ?? Number.NaN, max: Math.max(...samples), end: samples.at(-1) ?? Number.NaN, samples },
      }
      variants.push(v)
      ctx.note(`flood (relistOnMiss ${relistOnMiss}): ${w.rps} req/s, ${w.requests - w.non2xx} 2xx, provider calls ${JSON.stringify(calls)}, RSS ${v.rssMb.before} → max ${v.rssMb.max} → ${v.rssMb.end} MB (load ${load().join(' ')})`)
    } finally {
      await s.stop().catch(() => undefined)
    }
  }
  return { variants: variants.map((v) => ({ ...v, rssMb: { ...v.rssMb, samples: v.rssMb.samples.map((x) => round(x, 1)) } })) }
}
