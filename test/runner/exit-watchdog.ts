// Loaded into every test file's process by `npm test` (test/runner/run.ts passes it with --import).
// When a file's tests have ended, the process must exit: a provider, child process, server or
// socket a test forgot to release would otherwise keep it alive, and the runner would wait on it
// without end (Node 24 puts no bound on a file, only on each test). If the file is still alive
// RELIGHT_TEST_EXIT_GRACE_MS (default 90 s, enough for the slowest `after` hook) after its tests
// ended, this prints what is holding it and exits 1, so the runner reports the file as failed.
import { basename } from 'node:path'
import { after } from 'node:test'

// Only in a test file's own process: a test may start Node children that inherit this flag.
if (/\.test\.[cm]?js$/.test(process.argv[1] ?? '')) {
  const grace = Number(process.env.RELIGHT_TEST_EXIT_GRACE_MS ?? 90_000)
  // The first root-level after hook: it runs once every test of the file has ended.
  after(() => {
    setTimeout(() => {
      const holding = process.getActiveResourcesInfo().filter((r) => r !== 'TTYWrap' && r !== 'Timeout')
      process.stderr.write(
        `exit-watchdog: ${basename(process.argv[1] ?? '')} is still running ${grace} ms after its tests ended; ` +
          `something it started was not released in an after hook (still active: ${holding.join(', ') || 'nothing visible'})\n`,
      )
      process.exit(1)
    }, grace).unref()
  })
}
