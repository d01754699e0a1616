#!/usr/bin/env node
// `npm run build`, and `npm pack` (prepack): a clean TypeScript build into dist/.
// There is deliberately no `prepare` script: the tarball from `npm pack` ships dist/, so
// installing it runs no script (npm 11.16+ lists any install-time script as "not covered by
// allowScripts"), and `npm ci --omit=dev` in a built checkout needs no TypeScript.
import { spawnSync } from 'node:child_process'
import { readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
let tsc
try {
  const pkgFile = createRequire(join(root, 'package.json')).resolve('typescript/package.json')
  const bin = JSON.parse(readFileSync(pkgFile, 'utf8')).bin
  tsc = join(dirname(pkgFile), typeof bin === 'string' ? bin : bin.tsc)
} catch {
  console.error('relight-sidecar build: TypeScript is not installed; run `npm ci` (with dev dependencies) first')
  process.exit(1)
}
rmSync(join(root, 'dist'), { recursive: true, force: true }) // no stale output from deleted sources
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit', cwd: root })
process.exit(r.status ?? 1)
