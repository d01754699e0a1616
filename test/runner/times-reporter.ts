// A node:test reporter (test/runner/run.ts adds it when RELIGHT_TEST_TIMES names a file): writes
// one JSON object with the run's counts and each test file's duration, read by summary.ts.
import { relative, resolve } from 'node:path'

interface Event { type: string; data?: { name?: string; file?: string; nesting?: number; message?: string; details?: { duration_ms?: number; passed?: boolean; error?: unknown } } }

export interface RunTimes {
  runner: string
  counts: Record<string, number>
  files: { file: string; ms: number; failed: boolean }[]
}

export default async function* timesReporter(source: AsyncIterable<Event>): AsyncGenerator<string> {
  const out: RunTimes = { runner: `node ${process.version}`, counts: {}, files: [] }
  const failedFiles = new Set<string>()
  for await (const ev of source) {
    const d = ev.data
    if (!d) continue
    if (ev.type === 'test:fail' && d.file) failedFiles.add(d.file)
    // The file itself completes as a test at nesting 0 named after the file (as given on the command
    // line on Node 24, absolute on Node 20) and carries the file's wall time.
    if (ev.type === 'test:complete' && d.nesting === 0 && d.file && d.name && resolve(d.name) === d.file) {
      out.files.push({ file: relative(process.cwd(), d.file), ms: d.details?.duration_ms ?? 0, failed: d.details?.passed === false })
    }
    // The closing summary: `tests 486`, `pass 484`, … at nesting 0, outside any file.
    if (ev.type === 'test:diagnostic' && !d.file && d.nesting === 0) {
      const m = /^(tests|suites|pass|fail|cancelled|skipped|todo|duration_ms) ([\d.]+)$/.exec(d.message ?? '')
      if (m?.[1] && m[2]) out.counts[m[1]] = Number(m[2])
    }
  }
  for (const f of out.files) if (failedFiles.has(f.file)) f.failed = true
  yield JSON.stringify(out) + '\n'
}
