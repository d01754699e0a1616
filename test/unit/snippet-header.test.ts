/** The snippet's header names a released version of this package, never a future one (it once said 0.2 while the package was 0.1.0). */
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

describe('caddy/relight.caddy header', () => {
  it('names no version of relight-sidecar later than package.json', (t) => {
    const snippet = readFileSync(`${ROOT}caddy/relight.caddy`, 'utf8')
    const named = /relight-sidecar (\d+)\.(\d+)(?:\.(\d+))?/.exec(snippet.split('\n(relight)')[0] ?? '')
    if (!named) return t.diagnostic('the header names no package version')
    const pkg = (JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string }).version.split('.').map(Number)
    const header = [Number(named[1]), Number(named[2]), Number(named[3] ?? 0)]
    const cmp = header.findIndex((n, i) => n !== pkg[i])
    assert.ok(cmp === -1 || (header[cmp] as number) < (pkg[cmp] as number), `the header says ${header.join('.')}, the package is ${pkg.join('.')}`)
  })
})
