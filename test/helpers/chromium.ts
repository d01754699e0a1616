/**
 * Debian's headless Chromium for browser tests (driven by puppeteer-core, which downloads no
 * browser). Missing: the test skips with a reason, except under CI (.ci/run installs it).
 */
import { existsSync } from 'node:fs'

export const CHROMIUM = process.env.RELIGHT_CHROMIUM ?? '/usr/bin/chromium'

export function chromiumSkip(): string | undefined {
  if (existsSync(CHROMIUM)) return undefined
  if (process.env.CI) throw new Error(`${CHROMIUM} is missing, and CI requires the browser tests (apt-get install chromium; see .ci/run)`)
  const reason = `${CHROMIUM} is missing (apt-get install chromium); skipping browser tests`
  process.stderr.write(`# ${reason}\n`)
  return reason
}
