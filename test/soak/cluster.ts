/**
 * `npm run soak:cluster`: the long form of the contention suite of issue 21
 * (docs/plans/issue-21-shared-decisions.md §6.2) on the real engines — the local swarm and the
 * test control plane with the stand-in kubelet — with three sidecar processes, each behind its
 * own Caddy and its own counting, pausable engine proxy (test/helpers/contention.ts). Not part of
 * `npm test`. Prints a Markdown table for the README and writes the JSON to $RELIGHT_SOAK_OUT.
 *
 *   npm run soak:cluster -- --engine swarm --idle 10 --s1 240 --s2 20 --repeat 3
 *
 * Loopback only; every process, service and workload started here is removed when it ends.
 */
import { writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { parseArgs } from 'node:util'
import { Cluster, type Engine } from '../helpers/contention.js'
import { costCompare, s1, s2, s3, s4, s5, s7, unskew } from '../helpers/contention-scenarios.js'
import { fakeTimeSkip } from '../helpers/faketime.js'
import { createNamespace, k8sSkip, startControlPlane } from '../helpers/k8s.js'
import { StandInKubelet } from '../helpers/kubelet.js'
import { swarmSkip } from '../helpers/swarm.js'

const { values } = parseArgs({
  options: {
    engine: { type: 'string', default: 'both' },
    idle: { type: 'string', default: '10' },
    s1: { type: 'string', default: '240' },
    s2: { type: 'string', default: '20' },
    repeat: { type: 'string', default: '3' },
    s7: { type: 'string', default: '10' },
    lead: { type: 'string', default: '100,500' },
    calibrate: { type: 'string', default: '2' },
    only: { type: 'string', default: 'S1,S2,S3,S4,S5,S7,S8' },
  },
})
const idleMs = Number(values.idle) * 1000
const repeat = Number(values.repeat)
const only = new Set(values.only.split(','))
const engines: Engine[] = values.engine === 'both' ? ['swarm', 'kubernetes'] : [values.engine as Engine]

interface Row {
  engine: Engine
  scenario: string
  runs: number
  requests: number
  failed: number
  deadEdge: number
  scaleDowns: number
  needless: number
  minMarginMs: number | undefined
  note: string
}
const rows: Row[] = []
const raw: Record<string, unknown>[] = []

function add(engine: Engine, scenario: string, results: { requests: number; failed: number; deadEdge: number; scaleDowns: number; needless: number; minMarginMs: number | undefined }[], note: string): void {
  const margins = results.map((r) => r.minMarginMs).filter((m): m is number => m !== undefined)
  const sum = (k: 'requests' | 'failed' | 'deadEdge' | 'scaleDowns' | 'needless') => results.reduce((n, r) => n + r[k], 0)
  rows.push({ engine, scenario, runs: results.length, requests: sum('requests'), failed: sum('failed'), deadEdge: sum('deadEdge'), scaleDowns: sum('scaleDowns'), needless: sum('needless'), minMarginMs: margins.length ? Math.min(...margins) : undefined, note })
  raw.push({ engine, scenario, results })
  process.stderr.write(`${engine} ${scenario}: ${JSON.stringify(results)}\n`)
}

async function soak(engine: Engine, cluster: (sidecars: number) => Promise<Cluster>): Promise<void> {
  if (only.has('S8')) {
    // 3 sidecars, then the first alone on the same cluster (costCompare stops and restarts the others)
    const c = await cluster(3)
    try {
      const r = await costCompare(c, Math.max(15_000, 2 * idleMs))
      for (const f of [r.one, r.many]) {
        raw.push({ engine, scenario: `S8 cost, ${f.sidecars} sidecar(s)`, r: f })
        rows.push({ engine, scenario: `S8 cost, ${f.sidecars} sidecar(s)`, runs: 1, requests: 0, failed: 0, deadEdge: 0, scaleDowns: 0, needless: 0, minMarginMs: undefined, note: `engine requests per sidecar: wake ${f.wake.join('/')}; busy at A ${f.busyPerMinute.join('/')} /min, at each ${f.busyEachPerMinute.join('/')} /min; asleep after a scale-down ${f.idlePerMinute.join('/')} /min` })
      }
      process.stderr.write(`${engine} S8: ${JSON.stringify(r)}\n`)
    } finally {
      await c.close()
    }
  }
  const c = await cluster(3)
  try {
    if (only.has('S1')) {
      const r = await s1(c, Number(values.s1) * 1000)
      add(engine, `S1 hopping traffic ${values.s1} s`, [r], `scale-down ${r.sleepAfterMs} ms after the last request; ${r.downsDuring} during, ${r.downsAfter} after; busy ${r.busyPerMinute.join('/')} req/min per sidecar`)
    }
    if (only.has('S2')) {
      const [lo = 100, hi = 500] = values.lead.split(',').map(Number)
      const r = await s2(c, Number(values.s2), { calibrate: Number(values.calibrate), leadMs: [lo, hi] })
      add(engine, 'S2 bursts at expiry', [r], `${r.slept} of ${r.trials} trials slept under a burst; ${r.wakes} wakes; read ${r.anchorMs.join('/')} ms after the last request, bursts ${lo}–${hi} ms before it`)
    }
    if (only.has('S3')) {
      const rs = []
      for (let i = 0; i < repeat; i++) rs.push(await s3(c))
      add(engine, 'S3 kill -9 of the busy sidecar', rs, '')
    }
    for (const mode of ['freeze', 'cut'] as const) {
      if (!only.has('S4')) break
      const rs = []
      for (let i = 0; i < repeat; i++) rs.push(await s4(c, mode))
      add(engine, `S4 engine ${mode} 1.5·idle`, rs, `first scale-down after resume: ${rs.map((r) => r.downAfterResumeMs).join(', ')} ms`)
    }
    if (engine === 'swarm' && only.has('S7')) {
      const r = await s7(c, Number(values.s7))
      add(engine, 'S7 request right after a scale-down', [r], `${r.trials} trials`)
    }
    if (only.has('S5') && !fakeTimeSkip()) {
      const rs = []
      for (let i = 0; i < repeat; i++) {
        rs.push(await s5(c))
        await unskew(c)
      }
      add(engine, 'S5 clocks +120 s / −120 s', rs, `scale-down ${rs.map((r) => r.sleepAfterMs).join(', ')} ms after the last request`)
    }
  } finally {
    await c.close()
  }
}

const started = Date.now()
for (const engine of engines) {
  if (engine === 'swarm') {
    if (await swarmSkip()) continue
    await soak(engine, (n) => Cluster.start({ engine, sidecars: n, idleMs }))
  } else {
    if (k8sSkip()) continue
    const cp = await startControlPlane()
    try {
      await createNamespace(cp, 'soak')
      const kubelet = await StandInKubelet.start(cp, 'soak')
      try {
        await soak(engine, (n) => Cluster.start({ engine, sidecars: n, idleMs, cp, namespace: 'soak' }))
      } finally {
        await kubelet.close()
      }
    } finally {
      await cp.close()
    }
  }
}

const fmt = (v: number | undefined) => (v === undefined ? '–' : String(v))
const lines = [
  `Contention soak, idle_timeout ${values.idle} s, ${Math.round((Date.now() - started) / 60_000)} min, load ${loadavg()[0]?.toFixed(1)}`,
  '',
  '| engine | scenario | runs | requests | failed | dead edge | scale-downs | needless | min margin (ms) | notes |',
  '|---|---|---|---|---|---|---|---|---|---|',
  ...rows.map((r) => `| ${r.engine} | ${r.scenario} | ${r.runs} | ${r.requests} | ${r.failed} | ${r.deadEdge} | ${r.scaleDowns} | ${r.needless} | ${fmt(r.minMarginMs)} | ${r.note} |`),
]
process.stdout.write(`${lines.join('\n')}\n`)
if (process.env.RELIGHT_SOAK_OUT) writeFileSync(process.env.RELIGHT_SOAK_OUT, JSON.stringify({ rows, raw }, null, 2))
