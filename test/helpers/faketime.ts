/**
 * libfaketime (Debian `faketime`) for a sidecar whose wall clock is off: `fakeTimeEnv(120)` is the
 * environment that shifts Date.now by +120 s in a child process, leaving its monotonic clock
 * (performance.now, process.hrtime) alone. Probed on Node 20 and 24 (issue 21 probe 4): without
 * FAKETIME_DONT_FAKE_MONOTONIC=1 the monotonic clock is shifted too. Node is multi-threaded: the
 * MT variant of the library. Only the sidecar runs under it (Caddy is Go and reads the vDSO).
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'

export const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1'

/** The environment that runs a child `offsetSeconds` ahead (positive) or behind (negative). */
export function fakeTimeEnv(offsetSeconds: number): Record<string, string> {
  return {
    LD_PRELOAD: LIBFAKETIME,
    FAKETIME: `${offsetSeconds >= 0 ? '+' : ''}${offsetSeconds}`,
    FAKETIME_DONT_FAKE_MONOTONIC: '1',
  }
}

/** undefined when a Node child under fakeTimeEnv(±120) sees the shifted wall clock; a skip reason otherwise (throws under CI). */
export function fakeTimeSkip(): string | undefined {
  let reason: string | undefined
  if (!existsSync(LIBFAKETIME)) reason = `${LIBFAKETIME} missing (apt-get install faketime; .ci/run does it)`
  else {
    for (const offset of [120, -120]) {
      const before = Date.now()
      const seen = Number(execFileSync(process.execPath, ['-e', 'console.log(Date.now())'], { env: { ...process.env, ...fakeTimeEnv(offset) }, encoding: 'utf8', timeout: 30_000 }).trim())
      const shift = seen - before
      // the child starts some time after `before`: allow for it on the late side
      if (!(shift > offset * 1000 - 5000 && shift < offset * 1000 + 15_000)) reason = `libfaketime did not shift Date.now by ${offset} s in a Node child (shift ${shift} ms)`
    }
  }
  if (reason === undefined) return undefined
  if (process.env.CI) throw new Error(`${reason}; CI requires the clock-skew tests`)
  process.stderr.write(`# ${reason}; skipping the clock-skew scenarios\n`)
  return reason
}
