/**
 * Debian's Prometheus and promtool for the metrics tests. Without them a test skips with a
 * printed reason, except under CI, where a missing binary is a failure (.ci/run installs them).
 */
import { spawnSync } from 'node:child_process'

const has = (cmd: string) => spawnSync(cmd, ['--version'], { stdio: 'ignore' }).status === 0

function skipUnless(cmd: string): string | undefined {
  if (has(cmd)) return undefined
  if (process.env.CI) throw new Error(`${cmd} is not installed, and CI requires it (apt-get install prometheus; see .ci/run)`)
  const reason = `${cmd} is not installed (apt-get install prometheus); skipping`
  process.stderr.write(`# ${reason}\n`)
  return reason
}

export const promtoolSkip = (): string | undefined => skipUnless('promtool')
export const prometheusSkip = (): string | undefined => skipUnless('prometheus')
