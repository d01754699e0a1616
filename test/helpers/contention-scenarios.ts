/**
 * The scenarios of the contention suite (docs/plans/issue-21-shared-decisions.md §6.2), shared by
 * the short form (test/integration/*-contention.test.ts) and the long form (test/soak/cluster.ts).
 * Each returns its figures; the callers assert or print them. Edge 0 is A, 1 is B, 2 is C.
 */
import { type Cluster, type Edge, type Judgement, uniform } from './contention.js'
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
  /**
   * The anchor: from the last request of a quiet spell to the scaler's fresh read (ms), measured
   * in quiet spells without bursts (the scaler's engine proxy: Cluster.sleepReads).
   */
  anchorMs: number[]
  /** Per trial, per burst: how long before the anchored read the burst started (ms). */
  leadsMs: number[][]
  /** Per trial: the first read of a scale-down attempt within 1 s after the first burst started, minus that start (ms; none when nobody tried). */
  readAfterBurstMs: (number | undefined)[]
}

/** From a quiet spell's last request (edge 0) to the fresh read of the scale-down that ends it (ms). */
async function quietSpell(c: Cluster): Promise<number | undefined> {
  const o = await c.awake(0)
  const down = await c.waitDown(o.end, 3 * c.idle + 20_000, 'the scale-down of a quiet spell').catch(() => undefined)
  if (down === undefined) return undefined
  const read = c.sleepReads(o.end).find((r) => r.slept)
  return read === undefined ? undefined : read.at - o.end
}

const median = (xs: readonly number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number

/**
 * S2: everyone quiet after a request at A; B and C each get a burst of 5 requests starting
 * `lead` = U(leadMs) before the scaler's fresh read. That read is anchored on the sidecars
 * themselves: `calibrate` quiet spells without bursts measure it (the last request → the fresh
 * read of the scale-down, from the engine proxies (Cluster.sleepReads); the idle
 * sweep ticks every 50 ms in these tests, so it repeats within about that), and each trial
 * bursts at its last request + that median − lead. A burst there is the window the protocol
 * must close: a request served just before the read, whose activity must reach the engine first.
 */
export async function s2(c: Cluster, trials: number, options: { calibrate?: number; leadMs?: readonly [number, number] } = {}): Promise<S2Result> {
  const [lo, hi] = options.leadMs ?? [100, 500]
  const anchorMs: number[] = []
  for (let i = 0; i < (options.calibrate ?? 1); i++) {
    const a = await quietSpell(c)
    if (a !== undefined) anchorMs.push(a)
  }
  if (anchorMs.length === 0) throw new Error('S2: no quiet spell ended in a scale-down, nothing to anchor the bursts on')
  const anchor = median(anchorMs)
  const from = Date.now()
  let slept = 0
  let wakes = 0
  const leadsMs: number[][] = []
  const readAfterBurstMs: (number | undefined)[] = []
  for (let t = 0; t < trials; t++) {
    const start = await c.awake(0)
    const read = start.end + anchor
    const edges = [1 % c.edges.length, 2 % c.edges.length]
    const leads = edges.map(() => Math.round(uniform(lo, hi)))
    leadsMs.push(leads)
    const burst = async (edge: number, lead: number) => {
      await sleep(read - lead - Date.now())
      for (let i = 0; i < 5; i++) await c.hit(edge)
    }
    const trialFrom = Date.now()
    await Promise.all(edges.map((e, i) => burst(e, leads[i] as number)))
    const burstEnd = Math.max(...c.outcomes.filter((o) => o.ok && o.start >= trialFrom).map((o) => o.end), trialFrom)
    await settle(c, burstEnd)
    const first = read - Math.max(...leads)
    const attempt = c.sleepReads(first).find((r) => r.at <= first + 1000)
    readAfterBurstMs.push(attempt === undefined ? undefined : attempt.at - first)
    wakes += c.ups.filter((u) => u >= trialFrom).length
    if (c.judge(trialFrom).needless > 0) slept++
  }
  return { ...c.judge(from), trials, slept, wakes, anchorMs, leadsMs, readAfterBurstMs }
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

/**
 * S8's figures: operation requests (GET of one object, task lists, writes) per running sidecar;
 * the view's upkeep (lists, watches, event streams) is only shown, in `classes`.
 */
export interface CostFigures {
  /** Sidecars running during the measure. */
  sidecars: number
  /** Engine requests per running sidecar during one wake from 0 (its first attempt to its answer + 1 s); the first one woke it. */
  wake: number[]
  /** Per running sidecar, per minute, while the first one has traffic (right after the wake; a request every ~100 ms). */
  busyPerMinute: number[]
  /** The same while every running sidecar has traffic (right after), a request every ~100 ms each. */
  busyEachPerMinute: number[]
  /** Per running sidecar, per minute, asleep and quiet: from 1 s after a real scale-down, for the window. */
  idlePerMinute: number[]
  /** Per window, per running sidecar: the requests by class (`get:2 tasks:8`), to read the figures by. */
  classes: Record<'wake' | 'busy' | 'busyEach' | 'asleep', string[]>
}

/**
 * S8 on the sidecars running now: the workload is put to sleep first (a wake and the scale-down
 * after it) when it is up; then one wake through the first running sidecar, traffic there for
 * `windowMs`, then through every running sidecar for `windowMs`, silence until the scale-down, and an asleep spell of `windowMs` from 1 s after it
 * (a spell that follows a real scale-down, as in production, not one right after the start).
 */
export async function cost(c: Cluster, windowMs: number): Promise<CostFigures> {
  const live = c.live.map((e) => e.index)
  const first = live[0] as number
  // operation requests only: list / watch / events are the view's upkeep, periodic per sidecar
  // whatever the traffic (Swarm's registry re-list every 30 s, Kubernetes' watches renewed every
  // 5 min), and land in a window of a few seconds by chance; they are shown in `classes`
  const per = (from: number, to: number) =>
    live.map((i) => {
      const n = (c.edges[i] as Edge).proxy.counts(from, to)
      return n.get + n.tasks + n.write
    })
  const perMinute = (from: number, to: number) => per(from, to).map((n) => Math.round((n * 60_000) / (to - from)))
  const classes = (from: number, to: number) =>
    live.map((i) => {
      const { total: _, ...by } = (c.edges[i] as Edge).proxy.counts(from, to)
      return Object.entries(by).filter(([, n]) => n > 0).map(([k, n]) => `${k}:${n}`).join(' ')
    })
  if ((await c.replicas()) !== 0) {
    const o = await c.awake(first)
    await c.waitDown(o.end, 3 * c.idle + 20_000, 'the scale-down before the cost run')
    await sleep(1000)
  }
  const wakeFrom = Date.now()
  const w = await c.awake(first)
  await sleep(w.end + 1000 - Date.now())
  const wake = per(wakeFrom, w.end + 1000)
  const busyFrom = Date.now()
  await c.traffic(first, busyFrom + windowMs)
  const busyTo = Date.now()
  const busyPerMinute = perMinute(busyFrom, busyTo)
  // then every running sidecar has traffic: each writes tokens and follows the others' writes
  await Promise.all(live.map((i) => c.traffic(i, busyTo + windowMs)))
  const allTo = Date.now()
  const busyEachPerMinute = perMinute(busyTo, allTo)
  const lastEnd = Math.max(...c.outcomes.filter((o) => o.ok).map((o) => o.end))
  const down = await c.waitDown(lastEnd, 3 * c.idle + 20_000, 'the scale-down after the busy spell')
  const idleFrom = Math.max(down.at, lastEnd) + 1000
  await sleep(idleFrom + windowMs - Date.now())
  const idleTo = idleFrom + windowMs
  return {
    sidecars: live.length,
    wake,
    busyPerMinute,
    busyEachPerMinute,
    idlePerMinute: perMinute(idleFrom, idleTo),
    classes: { wake: classes(wakeFrom, w.end + 1000), busy: classes(busyFrom, busyTo), busyEach: classes(busyTo, allTo), asleep: classes(idleFrom, idleTo) },
  }
}

/**
 * S8 with all the sidecars, then with the first alone (the others stopped, SIGTERM, and started
 * again after): the same cluster, so the two figures differ only in the number of sidecars.
 */
export async function costCompare(c: Cluster, windowMs: number): Promise<{ many: CostFigures; one: CostFigures }> {
  const many = await cost(c, windowMs)
  const others = c.live.slice(1).map((e) => e.index)
  for (const i of others) await c.stop(i)
  try {
    return { many, one: await cost(c, windowMs) }
  } finally {
    for (const i of others) await c.restart(i)
  }
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
