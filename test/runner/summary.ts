// .ci/run's closing lines: `node dist/test/runner/summary.js TIMES...` (files written by
// times-reporter.ts, one per runner) prints the test counts of each run and the 10 slowest files.
import { readFileSync } from 'node:fs'
import type { RunTimes } from './times-reporter.js'

const runs: RunTimes[] = []
for (const f of process.argv.slice(2)) {
  try {
    runs.push(JSON.parse(readFileSync(f, 'utf8')) as RunTimes)
  } catch (err) {
    console.log(`ci: no test times in ${f} (${(err as Error).message}): that run did not finish`)
  }
}
console.log('ci: tests per runner')
for (const r of runs) {
  const c = (k: string) => r.counts[k] ?? 0
  console.log(`  ${r.runner}: ${c('tests')} tests, ${c('pass')} pass, ${c('fail')} fail, ${c('cancelled')} cancelled, ` +
    `${c('skipped')} skipped, ${c('todo')} todo, ${r.files.length} files, ${(c('duration_ms') / 1000).toFixed(0)} s`)
}
const slowest = runs.flatMap((r) => r.files.map((f) => ({ ...f, runner: r.runner }))).sort((a, b) => b.ms - a.ms).slice(0, 10)
console.log('ci: slowest 10 test files')
for (const f of slowest) {
  console.log(`  ${(f.ms / 1000).toFixed(1).padStart(7)} s  ${f.runner.padEnd(14)} ${f.file}${f.failed ? '  (failed)' : ''}`)
}
