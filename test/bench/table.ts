/** The one printed table: every section's figures, its target and the load it ran under. */
import type { CoalesceResult } from './coalesce.js'
import type { FloodResult } from './flood.js'
import type { HotResult } from './hot.js'
import type { K8sWakeResult } from './k8s-wake.js'
import type { LogFloodResult } from './logflood.js'
import type { ScaleResult } from './scale.js'
import { fmtLoad } from './stats.js'
import type { WakeResult } from './wake.js'

type Row = [section: string, what: string, result: string, target: string, ok: string, load: string]

const ms = (x: number) => `${x < 10 ? x.toFixed(2) : x < 100 ? x.toFixed(1) : x.toFixed(0)} ms`
const verdict = (ok: boolean) => (ok ? 'yes' : 'NO')

function hotRows(r: HotResult): Row[] {
  const rows: Row[] = []
  for (const s of r.order) {
    const x = r.setups[s]
    if (!x) continue
    const loads = x.runs.map((w) => w.load[0].toFixed(2)).join(',')
    rows.push(['hot', x.label, `${x.rps} req/s  p50 ${ms(x.p50)}  p99 ${ms(x.p99)}`, '', '', loads])
    const c = x.cpuUsPerRequest
    rows.push(['hot', `${s.padEnd(2)} CPU µs/request: total (front Caddy + auth server + backend)`, `${c.total} (${c.front} + ${c.auth ?? '-'} + ${c.backend})`, '', '', ''])
  }
  for (const [k, v] of Object.entries(r.ratios)) {
    const target = k === 'c/b' ? '≥ 0.85' : ''
    const fromCpu = r.cpuRatios[k]
    rows.push(['hot', `ratio ${k}: req/s (median of rounds) | from CPU µs/request`, `${v.toFixed(3)} | ${fromCpu?.toFixed(3) ?? '-'}`, target, target ? `${verdict(v >= 0.85)} | ${verdict((fromCpu ?? 0) >= 0.85)}` : '', ''])
  }
  return rows
}

function wakeRows(r: WakeResult): Row[] {
  const rows: Row[] = []
  for (const mode of ['pause', 'stop'] as const) {
    const m = r.process[mode]
    rows.push(['wake', `process ${mode}: through Caddy + sidecar (n=${m.sidecar.n})`, `p50 ${ms(m.sidecar.p50)}  p90 ${ms(m.sidecar.p90)}  max ${ms(m.sidecar.max)}`, '', '', fmtLoad(m.load)])
    rows.push(['wake', `process ${mode}: raw ${mode === 'pause' ? 'SIGCONT' : 'spawn + listen'} → first byte`, `p50 ${ms(m.raw.p50)}  p90 ${ms(m.raw.p90)}  max ${ms(m.raw.max)}`, '', '', ''])
    rows.push(['wake', `process ${mode}: sidecar overhead at p50`, ms(m.overheadP50), '≤ 25 ms', verdict(m.overheadP50 <= 25), ''])
    if (m.baseline && m.baselineOverheadP50 !== undefined) {
      rows.push(['wake', `process ${mode}: baseline build (n=${m.baseline.n})`, `p50 ${ms(m.baseline.p50)}  p90 ${ms(m.baseline.p90)}  max ${ms(m.baseline.max)}; overhead at p50 ${ms(m.baselineOverheadP50)}`, '', '', ''])
    }
  }
  rows.push([
    'wake',
    `readiness probe: lag after the app listens (L = ${r.probeLag.listenAfterMs.join(', ')} ms)`,
    Object.entries(r.probeLag.lagMs)
      .map(([k, v]) => `${k} ${ms(v)}`)
      .join(', '),
    '',
    '',
    '',
  ])
  const d = r.docker
  if ('pause' in d) {
    for (const mode of ['pause', 'stop'] as const) {
      const m = d[mode]
      rows.push(['wake', `docker ${mode}: through Caddy + sidecar (n=${m.sidecar.n})`, `p50 ${ms(m.sidecar.p50)}  p90 ${ms(m.sidecar.p90)}  max ${ms(m.sidecar.max)}`, '', '', fmtLoad(m.load)])
      rows.push(['wake', `docker ${mode}: raw ${mode === 'pause' ? 'unpause' : 'start (stopped)'} → first byte`, `p50 ${ms(m.raw.p50)}  p90 ${ms(m.raw.p90)}  max ${ms(m.raw.max)}`, '', '', ''])
      rows.push(['wake', `docker ${mode}: sidecar overhead at p50`, ms(m.overheadP50), '≤ 25 ms', verdict(m.overheadP50 <= 25), ''])
      if (m.baseline && m.baselineOverheadP50 !== undefined) {
        rows.push(['wake', `docker ${mode}: baseline build (n=${m.baseline.n})`, `p50 ${ms(m.baseline.p50)}  p90 ${ms(m.baseline.p90)}  max ${ms(m.baseline.max)}; overhead at p50 ${ms(m.baselineOverheadP50)}`, '', '', ''])
      }
    }
    if (d.baselineSkipped) rows.push(['wake', 'docker: baseline build', `skipped: ${d.baselineSkipped}`, '', '', ''])
  } else if ('error' in d) rows.push(['wake', 'docker through Caddy + sidecar', `FAILED: ${d.error.split('\n')[0] ?? ''}`, '≤ 25 ms', 'NO', ''])
  else rows.push(['wake', 'docker through Caddy + sidecar', `skipped: ${d.skipped}`, '', '', ''])
  const w = r.swarm
  if (w === undefined) return rows
  if ('sidecar' in w) {
    rows.push(['wake', `swarm 0 → 1: through Caddy + sidecar (n=${w.sidecar.n})`, `p50 ${ms(w.sidecar.p50)}  p90 ${ms(w.sidecar.p90)}  max ${ms(w.sidecar.max)}`, '', '', fmtLoad(w.load)])
    rows.push(['wake', 'swarm 0 → 1: raw scale-up → first byte (tasks polled every 20 ms)', `p50 ${ms(w.raw.p50)}  p90 ${ms(w.raw.p90)}  max ${ms(w.raw.max)}`, '', '', ''])
    rows.push(['wake', 'swarm 0 → 1: raw scale-up → task running', `p50 ${ms(w.rawTaskRunning.p50)}  p90 ${ms(w.rawTaskRunning.p90)}`, '', '', ''])
    rows.push(['wake', 'swarm 0 → 1: sidecar overhead at p50 (task polling, probe, two Caddy hops)', ms(w.overheadP50), '', '', ''])
  } else if ('error' in w) rows.push(['wake', 'swarm through Caddy + sidecar', `FAILED: ${w.error.split('\n')[0] ?? ''}`, '', 'NO', ''])
  else rows.push(['wake', 'swarm through Caddy + sidecar', `skipped: ${w.skipped}`, '', '', ''])
  return rows
}

function k8sRows(r: K8sWakeResult): Row[] {
  return [
    ['k8s', `Deployment 0 → 1: through Caddy + sidecar (n=${r.sidecar.n})`, `p50 ${ms(r.sidecar.p50)}  p90 ${ms(r.sidecar.p90)}  max ${ms(r.sidecar.max)}`, '', '', fmtLoad(r.load)],
    ['k8s', 'Deployment 0 → 1: raw PATCH scale → pod Ready (polled 5 ms) → first byte', `p50 ${ms(r.raw.p50)}  p90 ${ms(r.raw.p90)}  max ${ms(r.raw.max)}`, '', '', ''],
    ['k8s', 'sidecar overhead at p50', ms(r.overheadP50), '≤ 50 ms', verdict(r.overheadP50 <= 50), ''],
  ]
}

function coalesceRows(r: CoalesceResult): Row[] {
  return r.rounds.flatMap((x, i): Row[] => [
    [
      'coalesce',
      `round ${i + 1}: ${x.requests} concurrent → sleeping backend (wake ${r.simulatedWakeMs} ms)`,
      `${x.ok}/${x.requests} ok, ${x.providerWakes} wake; min ${ms(x.latency.min)} p50 ${ms(x.latency.p50)} p99 ${ms(x.latency.p99)} max ${ms(x.latency.max)}`,
      '1 wake, all ok',
      verdict(x.providerWakes === 1 && x.ok === x.requests),
      fmtLoad(x.load),
    ],
    ['coalesce', `round ${i + 1}: same burst, backend awake (reference)`, `${x.awakeOk}/${x.requests} ok; min ${ms(x.awakeLatency.min)} p50 ${ms(x.awakeLatency.p50)} p99 ${ms(x.awakeLatency.p99)} max ${ms(x.awakeLatency.max)}`, '', '', ''],
  ])
}

function scaleRows(r: ScaleResult): Row[] {
  const rows: Row[] = []
  for (const s of r.sizes) {
    const loads = s.runs.map((w) => w.load[0].toFixed(2)).join(',')
    rows.push(['scale', `${s.backends} backends: /_relight/auth, random known host`, `${s.rps} req/s  p50 ${ms(s.p50)}  p99 ${ms(s.p99)}`, '', '', loads])
    const big = s.backends >= 10_000
    rows.push(['scale', `${s.backends} backends: RSS at rest / after load / peak`, `${s.rssAtRestMb} / ${s.rssAfterLoadMb} / ${s.peakRssMb} MB`, big ? '≤ 150 MB' : '', big ? verdict(s.peakRssMb <= 150) : '', ''])
    rows.push(['scale', `${s.backends} backends: idle sweep per tick (p50 / max)`, `${ms(s.sweepMs.p50)} / ${ms(s.sweepMs.max)}`, big ? '≤ 10 ms' : '', big ? verdict(s.sweepMs.p50 <= 10) : '', ''])
    rows.push(['scale', `${s.backends} backends: sidecar CPU µs/request`, String(s.cpuUsPerRequest), '', '', ''])
    rows.push(['scale', `${s.backends} backends: full resync, event loop blocked (p50 / max)`, `${ms(s.resyncMs.p50)} / ${ms(s.resyncMs.max)}`, '', '', ''])
    rows.push(['scale', `${s.backends} backends: start to first answer`, ms(s.startupMs), '', '', ''])
  }
  rows.push(['scale', '10000 backends, traffic to 10 of them: req/s, CPU µs/request', `${r.hot10.rps} req/s, ${r.hot10.cpuUsPerRequest} µs`, '', '', r.hot10.runs.map((w) => w.load[0].toFixed(2)).join(',')])
  rows.push(['scale', 'throughput 10,000 / 10 (req/s, median of rounds)', r.throughputRatio.toFixed(3), '≥ 0.95', verdict(r.throughputRatio >= 0.95), ''])
  rows.push(['scale', 'throughput 10,000 / 10 (from CPU µs/request)', r.cpuRatio.toFixed(3), '≥ 0.95', verdict(r.cpuRatio >= 0.95), ''])
  return rows
}

function floodRows(r: FloodResult): Row[] {
  return r.variants.flatMap((v): Row[] => {
    const name = v.relistOnMiss ? 'provider with relistOnMiss' : 'default (relistOnMiss off)'
    const calls = v.providerCalls.list + v.providerCalls.wake + v.providerCalls.sleep
    return [
      ['flood', `${name}: random hosts, ${v.seconds} s`, `${v.wrk.rps} req/s, ${v.answered2xx} answered 2xx, provider calls list ${v.providerCalls.list} wake ${v.providerCalls.wake}`, v.relistOnMiss ? '≤ 1 list/s, 0 wakes' : '0 calls', verdict(v.relistOnMiss ? v.providerCalls.wake === 0 && v.providerCalls.list <= v.seconds + 1 : calls === 0), fmtLoad(v.wrk.load)],
      ['flood', `${name}: RSS before / after 1 s / max / end`, `${v.rssMb.before} / ${v.rssMb.afterFirstSecond} / ${v.rssMb.max} / ${v.rssMb.end} MB`, 'flat', verdict(v.rssMb.end - v.rssMb.afterFirstSecond <= 10), ''],
    ]
  })
}

function logFloodRows(r: LogFloodResult): Row[] {
  return [
    ['logflood', `/auth paced, no flood (n=${r.quiet.n}; ${r.rounds} rounds in alternation with the flood)`, `p50 ${ms(r.quiet.p50)}  p99 ${ms(r.quiet.p99)}  max ${ms(r.quiet.max)}`, '', '', ''],
    [
      'logflood',
      `/auth paced, ${r.lineMb} MB lines on all ${r.connections} log connections (n=${r.flood.n}, ${r.floodMb} MB sent)`,
      `p50 ${ms(r.flood.p50)}  p99 ${ms(r.flood.p99)}  max ${ms(r.flood.max)}`,
      'p99 < 50 ms',
      verdict(r.flood.p99 < 50),
      fmtLoad(r.load),
    ],
    ['logflood', 'sidecar RSS before / max / end of the flood', `${r.rssMb.before} / ${r.rssMb.max} / ${r.rssMb.end} MB`, 'bounded (≤ +50 MB)', verdict(r.rssMb.max - r.rssMb.before <= 50), ''],
  ]
}

export function renderTable(results: Record<string, unknown>): string {
  const machine = results.machine as Record<string, unknown>
  const options = results.options as Record<string, unknown>
  const rows: Row[] = []
  const add = (section: string, value: unknown, f: (v: never) => Row[]) => {
    if (value === undefined) return
    const v = value as { skipped?: string; error?: string }
    if (v.skipped) rows.push([section, 'skipped', v.skipped, '', '', ''])
    else if (v.error) rows.push([section, 'FAILED', v.error.split('\n')[0] ?? '', '', 'NO', ''])
    else rows.push(...f(value as never))
  }
  add('hot', results.hot, hotRows)
  add('wake', results.wake, wakeRows)
  add('k8s', results.k8s, k8sRows)
  add('coalesce', results.coalesce, coalesceRows)
  add('scale', results.scale, scaleRows)
  add('flood', results.flood, floodRows)
  add('logflood', results.logflood, logFloodRows)
  const header: Row = ['section', 'measurement', 'result', 'target', 'met', 'load (1 min)']
  const widths = header.map((h, i) => Math.min(i === 2 ? 90 : 70, Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length))))
  const line = (r: Row) => r.map((c, i) => c.padEnd(widths[i] as number)).join('  ').trimEnd()
  const title =
    `relight-sidecar bench — ${String(machine.cpus)} CPU (${String(machine.cpu_model)}), ${String(machine.memory_gib)} GiB, Node ${String(machine.node)}, ` +
    `Caddy ${String(machine.caddy)}, ${String(machine.wrk)}\n` +
    `wrk -t${String(options.threads)} -c${String(options.connections)}, ${String(options.rounds)} round(s) of ${String(options.seconds)} s in alternation${options.quick ? ' (QUICK: smoke test, not figures)' : ''}; ` +
    `load at start ${fmtLoad(machine.load_at_start as number[])}, at end ${fmtLoad((machine.load_at_end as number[] | undefined) ?? [])}\n`
  return `\n${title}\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${rows.map(line).join('\n')}\n`
}
