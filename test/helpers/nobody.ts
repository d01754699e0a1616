/**
 * Tests that run a racer or a client as the local user `nobody` (setpriv, util-linux) need root.
 * Without it they skip with the reason, except under CI, which requires them.
 */
import { spawnSync } from 'node:child_process'

export function nobodySkip(what = 'the racer'): string | undefined {
  let reason: string | undefined
  if (process.getuid?.() !== 0) reason = `not root: cannot run ${what} as nobody`
  else if (spawnSync('setpriv', ['--version']).status !== 0) reason = 'setpriv (util-linux) is missing'
  if (reason && process.env.CI) throw new Error(`${reason}; CI requires this test`)
  return reason
}
