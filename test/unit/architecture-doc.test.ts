/**
 * docs/architecture.md names files; each must exist, so the text cannot silently drift from
 * the tree. `<kind>` in a path stands for every provider kind (a folder with a descriptor.ts).
 */
import assert from 'node:assert/strict'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const DOC = join(ROOT, 'docs/architecture.md')

/** Repository paths written in backticks: `sidecar/…`, `test/…`, `caddy/…`, `docs/…`, `examples/…`. */
export function namedPaths(markdown: string): string[] {
  const paths = new Set<string>()
  for (const m of markdown.matchAll(/`((?:sidecar|test|caddy|docs|examples)\/[\w./<>-]*)`/g)) paths.add((m[1] as string).replace(/\/$/, ''))
  return [...paths]
}

const kinds = readdirSync(join(ROOT, 'sidecar/providers')).filter((name) => existsSync(join(ROOT, 'sidecar/providers', name, 'descriptor.ts')))

describe('docs/architecture.md', () => {
  it('finds the paths it names (placeholder and trailing slash included)', () => {
    assert.deepEqual(namedPaths('see `sidecar/core/` and `sidecar/providers/<kind>/plugin.ts`, not `core/x.ts` or `<state_dir>/process`'), ['sidecar/core', 'sidecar/providers/<kind>/plugin.ts'])
  })

  it('every file path it names exists', () => {
    const paths = namedPaths(readFileSync(DOC, 'utf8'))
    assert.ok(paths.length > 40, `the document names files (found ${paths.length})`)
    assert.ok(kinds.length >= 6, `provider kinds found: ${kinds.join(', ')}`)
    const missing = paths.flatMap((path) => (path.includes('<kind>') ? kinds.map((kind) => path.replace('<kind>', kind)) : [path])).filter((path) => !existsSync(join(ROOT, path)))
    assert.deepEqual(missing, [], 'paths docs/architecture.md names that do not exist')
  })

  it('the README links it from its Development section', () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8')
    const development = readme.slice(readme.indexOf('## Development'))
    assert.match(development.slice(0, development.indexOf('\n## ', 1) >>> 0), /\]\(docs\/architecture\.md\)/)
  })
})
