/**
 * The scenarios of the contention suite (docs/plans/issue-21-shared-decisions.md §6.2), shared by
 * the short form (test/integration/*-contention.test.ts) and the long form (test/soak/cluster.ts).
 * Each returns its figures; the callers assert or print them. Edge 0 is A, 1 is B, 2 is C.
 */
import { type Cluster, type Judgement, uniform } from './contention.js'
import { fakeTimeEnv } from './faketime.js'

const sleep = (ms: number) => new Promise((r) => setTimeout(r, Math.max(0, ms)))

/** Wait for the workload to be scaled down after `after`, the last successful request (bounded). */
async function settle(c: Cluster, after: number): Promise<number | undefined> {
  const down = await c.waitDown(after, 3 * c.idle + 20_000, 'the scale-down after the traffic').catch(() => undefined)
  return down?.at
}

export interface S1Result extends Judgement {
  /** Scale-downs while the traffic ran. */
  downsDuring: number
  /** From the last successful request to the scale-down that followed (ms). */
  sleepAfterMs: number | undefined
  /** Scale-downs after the traffic (one expected). */
  downsAfter: number
  /** Engine requests per minute per sidecar while the traffic ran. */
  busyPerMinute: number[]
}

/** S1: traffic hops between the sidecars every U(0.2, 0.6)·idle for `durationMs`, then silence. */
export async function s1(c: Cluster, durationMs: number): Promise<S1Result> {
  await c.awake(0)
  const from = Date.now()
  const until = from + durationMs
  let edge = 0
  while (Date.now() < until) {
    const next = (edge + 1 + Math.floor(Math.random() * (c.edges.length - 1))) % c.edges.length
    edge = c.edges.length > 1 ? next : 0
    await c.traffic(edge, Math.min(until, Date.now() + uniform(0.2, 0.6) * c.idle))
  }
  const lastEnd = Math.max(...c.outcomes.filter((o) => o.ok).map((o) => o.end))
  const busy = c.engineRequests(from, lastEnd).map((n) => Math.round((n * 60_000) / (lastEnd - from)))
  const downAt = await settle(c, lastEnd)
  // anything after the first scale-down within one more idle counts as a second one
  await sleep((downAt ?? Date.now()) + c.idle - Date.now())
  const j = c.judge(from)
  return {
    ...j,
    downsDuring: c.downs.filter((d) => d.at >= from && d.at <= lastEnd).length,
    sleepAfterMs: downAt === undefined ? undefined : downAt - lastEnd,
    downsAfter: c.downs.filter((d) => d.at > lastEnd).length,
    busyPerMinute: busy,
  }
}

export interface S2Result extends Judgement {
  trials: number
  /** Trials where the workload was scaled down while a burst ran or right after (needless). */
  slept: number
  /** Wakes caused by the bursts (the workload had been scaled down when they came). */
  wakes: number
}

/**
 * S2: everyone quiet after a request at A; as the idle timer expires (the last request + idle),
 * B and C each get a burst of 5 requests starting at independent offsets U(−600, +100) ms.
 */
export async function s2(c: Cluster, trials: number): Promise<S2Result> {
  const from = Date.now()
  let slept = 0
  let wakes = 0
  for (let t = 0; t < trials; t++) {
    const start = await c.awake(0)
    // The earliest a sidecar may scale it down: idle after the last request (the engine's events
    // show the sleeps land 10–30 ms after that on this box, on both protocols).
    const expiry = start.end + c.idle
    const burst = async (edge: number) => {
      await sleep(expiry + uniform(-600, 100) - Date.now())
      for (let i = 0; i < 5; i++) await c.hit(edge)
    }
    const trialFrom = Date.now()
    await Promise.all([burst(1 % c.edges.length), burst(2 % c.edges.length)])
    const burstEnd = Math.max(...c.outcomes.filter((o) => o.ok && o.start >= trialFrom).map((o) => o.end), trialFrom)
    await settle(c, burstEnd)
    wakes += c.ups.filter((u) => u >= trialFrom).length
    if (c.judge(trialFrom).needless > 0) slept++
  }
  return { ...c.judge(from), trials, slept, wakes }
}

export interface S3Result extends Judgement {
  downsAfter: number
}

/** S3: traffic at B; `kill -9` of B mid-traffic; traffic moves to C for 2·idle; then silence. B is restarted after. */
export async function s3(c: Cluster): Promise<S3Result> {
  const b = 1 % c.edges.length
  const other = 2 % c.edges.length
  await c.awake(b)
  const from = Date.now()
  const killAt = from + c.idle / 2
  const killed = sleep(killAt - Date.now()).then(() => c.kill(b))
  await c.traffic(b, killAt + 500)
  await killed
  await c.traffic(other, Date.now() + 2 * c.idle)
  const lastEnd = Math.max(...c.outcomes.filter((o) => o.ok).map((o) => o.end))
  await settle(c, lastEnd)
  await c.restart(b)
  return { ...c.judge(from), downsAfter: c.downs.filter((d) => d.at > lastEnd).length }
}

export interface S4Result extends Judgement {
  mode: 'freeze' | 'cut'
  /** From the engine's resume to the first scale-down after it (ms); ≥ idle is the target. */
  downAfterResumeMs: number | undefined
}

/** S4: B has traffic; every proxy `mode` for 1.5·idle; traffic goes on for one idle after the resume; then silence. */
export async function s4(c: Cluster, mode: 'freeze' | 'cut'): Promise<S4Result> {
  const b = 1 % c.edges.length
  await c.awake(b)
  const from = Date.now()
  const pauseAt = from + c.idle / 2
  const resumeAt = pauseAt + 1.5 * c.idle
  let resumed = 0
  const outage = (async () => {
    await sleep(pauseAt - Date.now())
    for (const e of c.edges) e.proxy.pause(mode)
    await sleep(resumeAt - Date.now())
    for (const e of c.edges) e.proxy.resume()
    resumed = Date.now()
  })()
  await c.traffic(b, resumeAt + c.idle)
  await outage
  const lastEnd = Math.max(...c.outcomes.filter((o) => o.ok).map((o) => o.end))
  await settle(c, lastEnd)
  const first = c.downs.find((d) => d.at > pauseAt)
  return { ...c.judge(from), mode, downAfterResumeMs: first ? first.at - resumed : undefined }
}

export interface S5Result extends Judgement {
  sleepAfterMs: number | undefined
  downsAfter: number
}

/** S5: A 120 s ahead, C 120 s behind (libfaketime); traffic through A only for 2·idle, then C only, then silence. */
export async function s5(c: Cluster): Promise<S5Result> {
  const last = c.edges.length - 1
  await c.restart(0, fakeTimeEnv(120), 120)
  if (last > 0) await c.restart(last, fakeTimeEnv(-120), -120)
  await c.awake(0)
  const from = Date.now()
  await c.traffic(0, from + 2 * c.idle)
  await c.traffic(last, Date.now() + 2 * c.idle)
  const lastEnd = Math.max(...c.outcomes.filter((o) => o.ok).map((o) => o.end))
  const downAt = await settle(c, lastEnd)
  await sleep((downAt ?? Date.now()) + c.idle - Date.now())
  return { ...c.judge(from), sleepAfterMs: downAt === undefined ? undefined : downAt - lastEnd, downsAfter: c.downs.filter((d) => d.at > lastEnd).length }
}

/** Back to true clocks after S5. */
export async function unskew(c: Cluster): Promise<void> {
  for (const e of c.edges) if (e.skew !== 0) await c.restart(e.index)
}

export interface S7Result extends Judgement {
  trials: number
  /** Trials where no scale-down came within 3·idle + 20 s (no request right after one was possible). */
  missed: number
}

/** S7 (Swarm): right after a scale-down, a request at once (the old task may still hold the host port). */
export async function s7(c: Cluster, trials: number): Promise<S7Result> {
  const from = Date.now()
  let missed = 0
  for (let t = 0; t < trials; t++) {
    const o = await c.awake(t % c.edges.length)
    if ((await settle(c, o.end)) === undefined) {
      missed++
      continue
    }
    await c.hit((t + 1) % c.edges.length)
  }
  return { ...c.judge(from), trials, missed }
}

export interface CostResult {
  sidecars: number
  /** Engine requests per sidecar during one wake (from the request to its answer + 1 s); edge 0 woke it. */
  wake: number[]
  /** Per sidecar, per minute, while asleep and quiet. */
  idlePerMinute: number[]
  /** Per sidecar, per minute, while edge 0 has traffic. */
  busyPerMinute: number[]
}

/** S8: engine requests for one wake, a quiet asleep spell and a busy spell of `windowMs` each. */
export async function cost(c: Cluster, windowMs: number): Promise<CostResult> {
  if ((await c.replicas()) !== 0) {
    const o = await c.awake(0)
    await c.waitDown(o.end, 3 * c.idle + 20_000, 'the scale-down before the cost run')
  }
  await sleep(1000)
  const idleFrom = Date.now()
  await sleep(windowMs)
  const idlePerMinute = c.engineRequests(idleFrom, Date.now()).map((n) => Math.round((n * 60_000) / windowMs))
  const w = await c.hit(0)
  await sleep(1000)
  const wake = c.engineRequests(w.start, w.end + 1000)
  const busyFrom = Date.now()
  await c.traffic(0, busyFrom + windowMs)
  const busyPerMinute = c.engineRequests(busyFrom, Date.now()).map((n) => Math.round((n * 60_000) / (Date.now() - busyFrom)))
  return { sidecars: c.edges.length, wake, idlePerMinute, busyPerMinute }
}

export interface S10Result extends Judgement {
  /** From the restarted sidecar's start (listening) to the scale-down (ms); the target is ≥ idle. */
  downAfterStartMs: number | undefined
  /** From the last request to the scale-down (ms). */
  downAfterRequestMs: number | undefined
}

/**
 * S10: the others stopped (SIGTERM), a request through B, B restarted at once: B, alone now, must
 * not scale the workload down before its start + idle (a restarted sidecar knows nothing of the
 * traffic before it; the protocol has it wait one idle_timeout). The others are started again after.
 */
export async function s10(c: Cluster): Promise<S10Result> {
  const b = 1 % c.edges.length
  await c.awake(b)
  for (const e of c.edges) if (e.index !== b) await c.stop(e.index)
  const o = await c.awake(b)
  await c.restart(b)
  const started = Date.now()
  const down = await c.waitDown(o.end, 3 * c.idle + 20_000, 'the scale-down after the restart').catch(() => undefined)
  for (const e of c.edges) if (e.index !== b) await c.restart(e.index)
  return {
    ...c.judge(o.start),
    downAfterStartMs: down ? down.at - started : undefined,
    downAfterRequestMs: down ? down.at - o.end : undefined,
  }
}
