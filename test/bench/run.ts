/**
 * `npm run bench`: hot path, wake latency (processes, Docker, Kubernetes), coalescing, scale and
 * unknown-host flood on loopback.
 * Prints one table and writes the figures as JSON. Not part of `npm test`.
 *
 *   npm run bench -- --only hot,wake --quick --out .tmp/bench/results.json
 *
 * Every process it starts (Caddy, sidecars, backends, wrk) is its own process on 127.0.0.1,
 * stopped by pid when its section ends; every run is bounded in time.
 */
import { spawnSync } from 'node:child_process'
import { mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, resolve } from 'node:path'
import { parseArgs } from 'node:util'
import { caddyInstalled } from '../helpers/caddy.js'
import type { BenchContext } from './context.js'
import { Skip } from './context.js'
import { runCoalesce } from './coalesce.js'
import { runFlood } from './flood.js'
import { runLogFlood } from './logflood.js'
import { DEFAULT_HOT_SETUPS, HOT_SETUPS, runHot } from './hot.js'
import { killAllTracked, stopAllTracked } from './procs.js'
import { runScale } from './scale.js'
import { runK8sWake } from './k8s-wake.js'
import { load } from './stats.js'
import { renderTable } from './table.js'
import { runWake } from './wake.js'

const SECTIONS = ['hot', 'wake', 'k8s', 'coalesce', 'scale', 'flood', 'logflood'] as const
type Section = (typeof SECTIONS)[number]

const HELP = `npm run bench -- [options]

  --only LIST        sections to run, comma-separated: ${SECTIONS.join(', ')} (default: all)
  --quick            short runs, one round (a smoke test of the harness, not figures to quote)
  --out FILE         JSON results (default .tmp/bench/results.json)
  --seconds N        seconds per wrk run (default 5; quick 2)
  --rounds N         alternation rounds for the hot path (default 3; quick 1)
  --connections N    wrk connections (default 32)
  --threads N        wrk threads (default 1: the machine has few cores to share)
  --setups LIST      hot-path set-ups (default ${DEFAULT_HOT_SETUPS.join(',')}; all: ${HOT_SETUPS.join(',')})
  --baseline FILE    another build's dist/sidecar/main.js, measured as set-up c0 beside c (and cl0 beside cl)
`

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: 'string' },
      quick: { type: 'boolean', default: false },
      out: { type: 'string', default: '.tmp/bench/results.json' },
      seconds: { type: 'string' },
      rounds: { type: 'string' },
      connections: { type: 'string', default: '32' },
      threads: { type: 'string', default: '1' },
      setups: { type: 'string' },
      baseline: { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
    strict: true,
  })
  if (values.help) {
    process.stdout.write(HELP)
    return
  }
  const only = (values.only?.split(',').map((s) => s.trim()).filter(Boolean) ?? [...SECTIONS]) as Section[]
  for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`unknown section "${s}" (sections: ${SECTIONS.join(', ')})`)
  const setups = values.setups?.split(',').map((s) => s.trim()) ?? (values.baseline ? [...DEFAULT_HOT_SETUPS, 'c0'] : DEFAULT_HOT_SETUPS)
  for (const s of setups) if (!(HOT_SETUPS as readonly string[]).includes(s)) throw new Error(`unknown set-up "${s}" (set-ups: ${HOT_SETUPS.join(', ')})`)

  const quick = values.quick
  const dir = resolve('.tmp/bench/work')
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  const ctx: BenchContext = {
    dir,
    quick,
    seconds: Number(values.seconds ?? (quick ? 2 : 5)),
    rounds: Number(values.rounds ?? (quick ? 1 : 3)),
    connections: Number(values.connections),
    threads: Number(values.threads),
    setups,
    ...(values.baseline ? { baseline: resolve(values.baseline) } : {}),
    note: (m) => process.stderr.write(`# ${m}\n`),
  }

  const missing = [!caddyInstalled() && 'caddy', spawnSync('sh', ['-c', 'command -v wrk'], { stdio: 'ignore' }).status !== 0 && 'wrk'].filter(Boolean)
  if (missing.length > 0) throw new Error(`${missing.join(' and ')} not installed: apt-get install -y caddy wrk (see .ci/run)`)

  const results: Record<string, unknown> = {
    started: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      cpu_model: cpus()[0]?.model ?? 'unknown',
      memory_gib: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      caddy: spawnSync('caddy', ['version'], { encoding: 'utf8' }).stdout.trim().split(' ')[0],
      wrk: (spawnSync('wrk', ['--version'], { encoding: 'utf8' }).stdout.trim().split('\n')[0] ?? '').split(' [')[0]?.replace('debian/', ''),
      load_at_start: load(),
    },
    options: { only, quick, seconds: ctx.seconds, rounds: ctx.rounds, connections: ctx.connections, threads: ctx.threads, setups },
  }
  const runners: Record<Section, (c: BenchContext) => Promise<unknown>> = { hot: runHot, wake: runWake, k8s: runK8sWake, coalesce: runCoalesce, scale: runScale, flood: runFlood, logflood: runLogFlood }
  let failed = false
  for (const section of only) {
    ctx.note(`${section}: starting (load ${load().join(' ')})`)
    try {
      results[section] = await runners[section](ctx)
    } catch (err) {
      if (err instanceof Skip) {
        results[section] = { skipped: err.reason }
        ctx.note(`${section}: skipped: ${err.reason}`)
      } else {
        failed = true
        results[section] = { error: (err as Error).message }
        ctx.note(`${section}: FAILED: ${(err as Error).stack ?? String(err)}`)
      }
    }
  }
  results.finished = new Date().toISOString()
  ;(results.machine as Record<string, unknown>).load_at_end = load()
  const out = resolve(values.out)
  mkdirSync(dirname(out), { recursive: true })
  writeFileSync(out, `${JSON.stringify(results, null, 2)}\n`)
  process.stdout.write(renderTable(results))
  process.stdout.write(`\nJSON: ${out}\nlogs: ${dir}\n`)
  if (failed) process.exitCode = 1
}

// `node --test dist/test/` runs every file under a `test` directory, this one included: do nothing there.
if (process.env.NODE_TEST_CONTEXT) {
  process.stdout.write('# test/bench/run.js is the benchmark (npm run bench), not a test: skipped\n')
} else {
  let interrupted = false
  const cleanup = (code: number) => {
    if (interrupted) process.exit(code) // second signal: leave now (the exit hook still SIGKILLs)
    interrupted = true
    process.stderr.write('bench: interrupted; stopping what it started\n')
    void stopAllTracked().finally(() => process.exit(code))
  }
  process.on('SIGINT', () => cleanup(130))
  process.on('SIGTERM', () => cleanup(143))
  process.on('exit', () => killAllTracked())
  main().then(
    () => killAllTracked(),
    (err: unknown) => {
      process.stderr.write(`bench: ${process.env.BENCH_DEBUG ? ((err as Error).stack ?? String(err)) : (err as Error).message}\n`)
      killAllTracked()
      process.exitCode = 1
    },
  )
}
