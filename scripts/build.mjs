#!/usr/bin/env node
// `npm run build`, and `npm pack` (prepack): a clean TypeScript build into dist/.
// There is deliberately no `prepare` script: the tarball from `npm pack` ships dist/, so
// installing it runs no script (npm 11.16+ lists any install-time script as "not covered by
// allowScripts"), and `npm ci --omit=dev` in a built checkout needs no TypeScript.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
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
if (r.status !== 0) process.exit(r.status ?? 1)
// The Kubernetes manifests carry the Caddy snippet as a file (kustomize reads files only from its
// own folder): written here from `relight-sidecar snippet`, never copied by hand. A test fails
// when the committed file differs. (The image build has no deploy/ folder: nothing to write.)
const k8sSnippet = join(root, 'deploy/kubernetes/base/relight.caddy')
if (existsSync(dirname(k8sSnippet))) {
  const snippet = spawnSync(process.execPath, [join(root, 'dist/sidecar/main.js'), 'snippet'], { encoding: 'utf8' })
  if (snippet.status !== 0) {
    console.error(`relight-sidecar build: relight-sidecar snippet failed: ${snippet.stderr}`)
    process.exit(1)
  }
  const before = existsSync(k8sSnippet) ? readFileSync(k8sSnippet, 'utf8') : undefined
  if (before !== snippet.stdout) {
    writeFileSync(k8sSnippet, snippet.stdout)
    console.error('relight-sidecar build: wrote deploy/kubernetes/base/relight.caddy from `relight-sidecar snippet` (commit it)')
  }
}
