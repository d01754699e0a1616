/** The package version (package.json), for healthz, the status page and `check`. */
import { readFileSync } from 'node:fs'

function read(): string {
  try {
    // dist/sidecar/core/version.js → the package root, in a checkout and in the installed tarball
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown'
  } catch {
    return 'unknown'
  }
}

export const VERSION = read()
