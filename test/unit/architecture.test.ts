/**
 * Rules about the source itself (issue 10): dependency arrows point downwards (core/ imports
 * nothing above it), and RELIGHT_ERR_CONFIG is raised only where a configuration is loaded or
 * the daemon starts (a run-time failure is another code).
 */
import assert from 'node:assert/strict'
import { readFileSync, readdirSync, statSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const SIDECAR = join(ROOT, 'sidecar')

function tsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    if (statSync(path).isDirectory()) return tsFiles(path)
    return name.endsWith('.ts') ? [path] : []
  })
}

/** Every module a file imports or re-exports (static `from '…'`, dynamic `import('…')`, bare `import '…'`). */
export function importsOf(source: string): string[] {
  const specs: string[] = []
  for (const m of source.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"]+)['"]/gm)) specs.push(m[1] as string)
  return specs
}

describe('architecture', () => {
  it('the scanner sees static, type-only, dynamic and side-effect imports', () => {
    const text = "import a from '../x.js'\nimport type { B } from './b.js'\nexport { c } from '../c/d.js'\nconst e = await import('../e.js')\nimport '../f.js'\n"
    assert.deepEqual(importsOf(text), ['../x.js', './b.js', '../c/d.js', '../e.js', '../f.js'])
  })

  it('core/ imports nothing from config/, providers/, server/ or any other folder above it', () => {
    const core = join(SIDECAR, 'core')
    const upward: string[] = []
    for (const file of tsFiles(core)) {
      for (const spec of importsOf(readFileSync(file, 'utf8'))) {
        if (!spec.startsWith('.')) continue // node: built-ins and packages
        const target = resolve(dirname(file), spec)
        if (relative(core, target).startsWith('..')) upward.push(`${relative(ROOT, file)} → ${relative(ROOT, target)}`)
      }
    }
    assert.deepEqual(upward, [], `core/ must not import upwards:\n${upward.join('\n')}`)
  })

  it('RELIGHT_ERR_CONFIG is raised only while loading the configuration or starting listeners', () => {
    // Each place, and why it is load or start-up time.
    const allowed = new Map([
      ['sidecar/config/load.ts', 'parsing the file'],
      ['sidecar/startup/preflight.ts', 'start-up checks (serve and check)'],
      ['sidecar/daemon.ts', 'binding the listen address at start'],
      ['sidecar/core/unix-socket.ts', 'creating a listening unix socket at start'],
      ['sidecar/providers/kubernetes/credentials.ts', 'reading the kubeconfig while the provider is built from the config'],
      ['sidecar/pages/template.ts', 'reading the waiting page templates the loaded config names'],
      ['sidecar/routing/stateful/token.ts', 'the stateful router is built from the loaded config (the secret is checked by the schema first)'],
    ])
    const found: string[] = []
    for (const file of tsFiles(SIDECAR)) {
      const text = readFileSync(file, 'utf8')
      if (!/new RelightError\(\s*'RELIGHT_ERR_CONFIG'/.test(text)) continue
      const rel = relative(ROOT, file)
      if (!allowed.has(rel)) found.push(rel)
    }
    assert.deepEqual(found, [], `RELIGHT_ERR_CONFIG raised outside load/start-up code: ${found.join(', ')}; use another code or check it at load time`)
  })
})
