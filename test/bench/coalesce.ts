/**
 * Coalescing: 1,000 concurrent requests through Caddy to one sleeping backend must cause exactly
 * one provider wake, and all 1,000 must reach the backend. The sidecar runs in its own process
 * over the synthetic provider (wake takes `WAKE_MS`, like a quick engine); the backend is a real
 * Caddy responder.
 */
import { Agent, request } from 'node:http'
import { freePort } from '../helpers/net.js'
import { startBenchCaddy, site } from './caddy.js'
import type { BenchContext } from './context.js'
import { type ChildStats, startSyntheticSidecar } from './procs.js'
import { load, round, type Spread, spread } from './stats.js'

const CONCURRENCY = 1000
const WAKE_MS = 100
const BODY = 'hello from the coalesce backend'

export interface CoalesceRound {
  requests: number
  ok: number
  awakeOk: number
  failed: Record<string, number>
  providerWakes: number
  /** ms from sending to the end of the answer, per request. */
  latency: Spread
  /** The same burst again right after, backend now awake: what the burst itself costs here. */
  awakeLatency: Spread
  load: [number, number, number]
}

export interface CoalesceResult {
  concurrency: number
  simulatedWakeMs: number
  rounds: CoalesceRound[]
  /** Every round: exactly one wake and every request answered 200 by the backend. */
  pass: boolean
}

function fire(port: number, host: string, agent: Agent): Promise<{ status: number; ms: number; error?: string }> {
  return new Promise((resolve) => {
    const t0 = performance.now()
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host }, agent, timeout: 60_000 }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (d: string) => (body += d))
      res.on('end', () => {
        const ok = res.statusCode === 200 && body.includes(BODY)
        resolve({ status: ok ? 200 : (res.statusCode ?? 0), ms: performance.now() - t0 })
      })
    })
    req.on('timeout', () => req.destroy(new Error('timeout')))
    req.on('error', (err) => resolve({ status: 0, ms: performance.now() - t0, error: err.message }))
    req.end()
  })
}

export async function runCoalesce(ctx: BenchContext): Promise<CoalesceResult> {
  const stops: (() => Promise<void>)[] = []
  try {
    const [backendPort, frontPort] = [await freePort(), await freePort()]
    const backend = await startBenchCaddy(ctx.dir, site(backendPort, `respond "${BODY}\n" 200`))
    stops.push(() => backend.close())
    const sidecar = await startSyntheticSidecar(ctx.dir, 'coalesce-sidecar', {
      count: 10,
      upstream: `127.0.0.1:${backendPort}`,
      domain: 'coalesce.test',
      initial: 'paused',
      wakeDelayMs: WAKE_MS,
    })
    stops.push(() => sidecar.stop())
    const front = await startBenchCaddy(ctx.dir, site(frontPort, `import relight ${sidecar.address}`))
    stops.push(() => front.close())

    const rounds: CoalesceRound[] = []
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity })
    for (let r = 0; r < (ctx.quick ? 1 : 3); r++) {
      const host = `app-${r}.coalesce.test` // a different sleeping backend each round
      const before = await sidecar.request<ChildStats>({ type: 'stats' })
      const answers = await Promise.all(Array.from({ length: CONCURRENCY }, () => fire(frontPort, host, agent)))
      const awake = await Promise.all(Array.from({ length: CONCURRENCY }, () => fire(frontPort, host, agent)))
      const after = await sidecar.request<ChildStats>({ type: 'stats' })
      const failed: Record<string, number> = {}
      for (const a of [...answers, ...awake]) if (a.status !== 200) failed[a.error ?? String(a.status)] = (failed[a.error ?? String(a.status)] ?? 0) + 1
      const round_: CoalesceRound = {
        requests: answers.length,
        ok: answers.filter((a) => a.status === 200).length,
        awakeOk: awake.filter((a) => a.status === 200).length,
        failed,
        providerWakes: after.calls.wake - before.calls.wake,
        latency: spread(answers.map((a) => a.ms)),
        awakeLatency: spread(awake.map((a) => a.ms)),
        load: load(),
      }
      rounds.push(round_)
      ctx.note(`coalesce round ${r + 1}: ${round_.ok}/${round_.requests} ok, ${round_.providerWakes} wake(s), p50 ${round(round_.latency.p50)} ms max ${round(round_.latency.max)} ms; same burst awake: p50 ${round(round_.awakeLatency.p50)} ms (load ${round_.load.join(' ')})`)
    }
    agent.destroy()
    return { concurrency: CONCURRENCY, simulatedWakeMs: WAKE_MS, rounds, pass: rounds.every((r) => r.providerWakes === 1 && r.ok === r.requests && r.awakeOk === r.requests) }
  } finally {
    for (const s of stops.reverse()) await s().catch(() => undefined)
  }
}
