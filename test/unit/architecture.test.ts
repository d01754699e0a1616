/**
 * Rules about the source itself (issues 10 and 20): every file stands on a floor
 * (docs/architecture.md), imports point down or sideways, never up and never in a circle; no
 * provider imports a sibling; runtime entries are the composition root's; and RELIGHT_ERR_CONFIG is raised only where a configuration is loaded or
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

/**
 * The floors, bottom first (docs/architecture.md draws them). A file imports files of its own
 * floor or lower ones, never a higher one. Paths are relative to sidecar/; the first match wins.
 */
export const FLOORS: readonly { readonly name: string; readonly match: RegExp }[] = [
  { name: 'core', match: /^(core\/|logger\.ts$)/ },
  { name: 'leaves', match: /^(config\/types\.ts|providers\/kit\/)/ },
  {
    // …and the pure parsers they check values with (Slicer's tag grammar, the stateful router's CIDRs, policies, secrets).
    name: 'feature configs and provider descriptors',
    match: /^(heartbeat\/config\.ts|ops\/config\.ts|routing\/stateful\/(config|balancer|ip|token)\.ts|providers\/descriptors?\.ts|providers\/[^/]+\/(config|descriptor)\.ts|providers\/slicer\/tags\.ts)$/,
  },
  { name: 'config', match: /^config\// },
  { name: 'features', match: /^(heartbeat|routing|startup)\// },
  { name: 'providers, server, ops, pages, reload', match: /^((providers|server|ops|pages)\/|reload(-client)?\.ts$|health-client\.ts$)/ },
  { name: 'composition root', match: /^(daemon|main)\.ts$/ },
]

export function floorOf(rel: string): number | undefined {
  const i = FLOORS.findIndex((f) => f.match.test(rel))
  return i < 0 ? undefined : i
}

/** file → the sidecar files it imports (paths relative to sidecar/, `.ts`). */
type Graph = ReadonlyMap<string, readonly string[]>

function sourceGraph(): Graph {
  const graph = new Map<string, string[]>()
  for (const file of tsFiles(SIDECAR)) {
    const targets = importsOf(readFileSync(file, 'utf8'))
      .filter((spec) => spec.startsWith('.'))
      .map((spec) => relative(SIDECAR, resolve(dirname(file), spec)).replace(/\.js$/, '.ts'))
    graph.set(relative(SIDECAR, file), targets)
  }
  return graph
}

function upwardImports(graph: Graph): string[] {
  const out: string[] = []
  for (const [from, targets] of graph) {
    for (const to of targets) {
      const a = floorOf(from)
      const b = floorOf(to)
      if (a !== undefined && b !== undefined && b > a) out.push(`${from} (${FLOORS[a]?.name}) → ${to} (${FLOORS[b]?.name})`)
    }
  }
  return out
}

/** Each circle once, as the path that closes it. */
function importCircles(graph: Graph): string[] {
  const state = new Map<string, 'open' | 'done'>()
  const path: string[] = []
  const out: string[] = []
  const visit = (file: string): void => {
    state.set(file, 'open')
    path.push(file)
    for (const to of graph.get(file) ?? []) {
      if (state.get(to) === 'open') out.push([...path.slice(path.indexOf(to)), to].join(' → '))
      else if (!state.has(to)) visit(to)
    }
    path.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file)
  return out
}

/** providers/kit/ serves every engine; providers/moby/ is the Docker-API kit, for the providers that speak that API. */
const MOBY_USERS = new Set(['docker', 'podman', 'swarm'])

function siblingImports(graph: Graph): string[] {
  const folder = (rel: string) => /^providers\/([^/]+)\//.exec(rel)?.[1]
  const out: string[] = []
  for (const [from, targets] of graph) {
    const a = folder(from)
    if (a === undefined) continue
    for (const to of targets) {
      const b = folder(to)
      if (b === undefined || b === a || b === 'kit') continue
      if (b === 'moby' && MOBY_USERS.has(a)) continue // a provider on the Docker API uses the Moby kit
      out.push(`${from} → ${to}`)
    }
  }
  return out
}

function runtimeImports(graph: Graph): string[] {
  const allowed = (from: string, to: string): boolean => {
    if (/^providers\/[^/]+\/plugin\.ts$/.test(to)) return from === 'providers/plugins.ts'
    if (to === 'providers/plugins.ts') return from === 'providers/index.ts'
    if (to === 'providers/index.ts') return from === 'daemon.ts' || from === 'main.ts'
    return true
  }
  const out: string[] = []
  for (const [from, targets] of graph) for (const to of targets) if (!allowed(from, to)) out.push(`${from} → ${to}`)
  return out
}

/**
 * Outside providers/, nothing knows a provider kind: a file there may import the providers/*.ts
 * contracts and tables (index.ts, descriptors.ts, plugin.ts, …) and providers/kit/, never a kind's folder.
 */
function kindImports(graph: Graph): string[] {
  const out: string[] = []
  for (const [from, targets] of graph) {
    if (from.startsWith('providers/')) continue
    for (const to of targets) if (/^providers\/(?!kit\/)[^/]+\//.test(to)) out.push(`${from} → ${to}`)
  }
  return out
}

describe('architecture', () => {
  it('the scanner sees static, type-only, dynamic and side-effect imports', () => {
    const text = "import a from '../x.js'\nimport type { B } from './b.js'\nexport { c } from '../c/d.js'\nconst e = await import('../e.js')\nimport '../f.js'\n"
    assert.deepEqual(importsOf(text), ['../x.js', './b.js', '../c/d.js', '../e.js', '../f.js'])
  })

  it('every source file stands on a floor', () => {
    const homeless = tsFiles(SIDECAR)
      .map((file) => relative(SIDECAR, file))
      .filter((rel) => floorOf(rel) === undefined)
    assert.deepEqual(homeless, [], `files on no floor (add them to FLOORS in this test and to docs/architecture.md):\n${homeless.join('\n')}`)
  })

  it('no import goes up a floor', () => {
    assert.deepEqual(upwardImports(sourceGraph()), [], 'imports must point down or sideways on one floor (see docs/architecture.md)')
  })

  it('no import circle, type-only imports included', () => {
    assert.deepEqual(importCircles(sourceGraph()), [], 'import circles')
  })

  it('no provider imports a sibling provider; the kits import no provider', () => {
    assert.deepEqual(siblingImports(sourceGraph()), [], 'a provider folder may import its own files, providers/kit/, the Moby kit (Docker, Podman, Swarm only) and the providers/*.ts contracts')
  })

  it('runtime entries are imported only by the composition root', () => {
    assert.deepEqual(runtimeImports(sourceGraph()), [], 'providers/<kind>/plugin.ts ← providers/plugins.ts ← providers/index.ts ← daemon.ts, main.ts')
  })

  it('no file outside providers/ imports a provider kind', () => {
    assert.deepEqual(kindImports(sourceGraph()), [], 'main, daemon, reload, startup, server, … reach providers only through providers/index.ts and the providers/*.ts contracts')
  })

  it('the rules catch what they are for (fixtures)', () => {
    const graph = new Map([
      ['core/a.ts', ['config/schema.ts']], // upward
      ['config/schema.ts', ['providers/plugins.ts']], // upward, and the start of a circle
      ['providers/plugins.ts', ['config/schema.ts']],
      ['providers/kubernetes/workloads.ts', ['providers/docker/provider.ts', 'providers/kit/labels.ts']], // sibling
      ['providers/kit/labels.ts', ['providers/swarm/labels.ts']], // a kit knowing a provider
      ['server/app.ts', ['providers/docker/plugin.ts']], // a runtime entry outside the root
      ['main.ts', ['providers/process/child-records.ts', 'providers/index.ts']], // a kind named by the top
      ['startup/preflight.ts', ['providers/process/config.ts', 'providers/kit/labels.ts']], // even type-only
    ])
    assert.deepEqual(upwardImports(graph), [
      'core/a.ts (core) → config/schema.ts (config)',
      'config/schema.ts (config) → providers/plugins.ts (providers, server, ops, pages, reload)',
      'providers/kit/labels.ts (leaves) → providers/swarm/labels.ts (providers, server, ops, pages, reload)',
    ])
    assert.deepEqual(importCircles(graph), ['config/schema.ts → providers/plugins.ts → config/schema.ts'])
    assert.deepEqual(siblingImports(graph), ['providers/kubernetes/workloads.ts → providers/docker/provider.ts', 'providers/kit/labels.ts → providers/swarm/labels.ts'])
    assert.deepEqual(runtimeImports(graph), ['config/schema.ts → providers/plugins.ts', 'server/app.ts → providers/docker/plugin.ts'])
    assert.deepEqual(kindImports(graph), ['server/app.ts → providers/docker/plugin.ts', 'main.ts → providers/process/child-records.ts', 'startup/preflight.ts → providers/process/config.ts'])
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
