// `npm test` (after the build): node --test over dist/test/**/*.test.js, or over the files given as
// arguments, run by the Node that runs this script (.ci/run starts it once with Node 24 too).
// Every run gets the same bounds:
//  - --test-timeout: no test waits past RELIGHT_TEST_TIMEOUT_MS (default 10 min; Node 20 also
//    applies it to each whole file);
//  - exit-watchdog.ts in every file: a file whose tests have ended but whose process stays alive
//    (something not released) fails with what held it instead of holding the run.
// RELIGHT_TEST_TIMES=FILE also writes the counts and each file's time there (times-reporter.ts),
// printed by summary.ts. The usual report (and its closing summary) goes to stdout as before.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'

const here = dirname(fileURLToPath(import.meta.url))
const distTest = join(here, '..')

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.js') ? [join(dir, e.name)] : [])
}

const files = process.argv.length > 2 ? process.argv.slice(2) : testFiles(distTest).map((f) => relative(process.cwd(), f)).sort()
const timeout = process.env.RELIGHT_TEST_TIMEOUT_MS ?? '600000'
const concurrency = process.env.RELIGHT_TEST_CONCURRENCY ?? '2'
// node:test's own default report: spec on a terminal, TAP otherwise on Node 20, spec on Node 22+.
const major = Number(process.versions.node.split('.')[0])
const stdoutReporter = process.stdout.isTTY || major >= 22 ? 'spec' : 'tap'
const args = [
  '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeout}`,
  '--import', pathToFileURL(join(here, 'exit-watchdog.js')).href,
  `--test-reporter=${stdoutReporter}`, '--test-reporter-destination=stdout',
]
const times = process.env.RELIGHT_TEST_TIMES
if (times) args.push(`--test-reporter=${pathToFileURL(join(here, 'times-reporter.js')).href}`, `--test-reporter-destination=${times}`)
const r = spawnSync(process.execPath, [...args, ...files], { stdio: 'inherit' })
process.exit(r.status ?? 1)
