import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { ConfigError, parseConfig } from '../../sidecar/config/load.js'
import { parseEndpoint, paths } from '../../sidecar/providers/slicer/client.js'

function problems(yaml: string): string {
  try {
    parseConfig(yaml, 'test.yaml', {})
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err))
    return err.problems.join('\n')
  }
  assert.fail('expected a config error')
}

describe('slicer config', () => {
  it('accepts a minimal block and fills the defaults', () => {
    const c = parseConfig('providers:\n  slicer:\n    url: http://127.0.0.1:8081\n    token: T\n    host_group: apps\n', 'test.yaml', {})
    const s = c.providers.slicer?.[0]
    assert.ok(s)
    assert.equal(s.app_port, 8080)
    assert.equal(s.resync_interval, undefined) // the top-level resync_interval applies
    assert.equal(s.sleep, undefined)
  })

  it('accepts a unix socket without a token, and per-backend overrides', () => {
    const c = parseConfig('providers:\n  slicer:\n    url: ~/slicer-mac/slicer.sock\n    idle_timeout: 10m\n    wake_timeout: 45s\n    sleep: suspend\n', 'test.yaml', {})
    assert.equal(c.providers.slicer?.[0]?.idle_timeout, 600_000)
    assert.equal(c.providers.slicer?.[0]?.sleep, 'suspend')
  })

  it('rejects sleep: stop on the block and says to tag persistent VMs instead', () => {
    const p = problems('providers:\n  slicer:\n    url: /s.sock\n    sleep: stop\n')
    assert.match(p, /providers\.slicer\.sleep/)
    assert.match(p, /persistent/)
    assert.match(p, /relight\.sleep=stop/)
  })

  it('rejects a mode Slicer lacks, an unknown key, a missing token on http, another scheme', () => {
    assert.match(problems('providers:\n  slicer:\n    url: /s.sock\n    sleep: checkpoint\n'), /pause or suspend/)
    assert.match(problems('providers:\n  slicer:\n    url: /s.sock\n    tokn: x\n'), /unknown key "tokn"/)
    assert.match(problems('providers:\n  slicer:\n    url: https://slicer.example:8080\n'), /providers\.slicer\.token: required/)
    assert.match(problems('providers:\n  slicer:\n    url: ftp://x\n    token: t\n'), /http\(s\)/)
    assert.match(problems('providers:\n  slicer:\n    url: /s.sock\n    app_port: 70000\n'), /app_port/)
    assert.match(problems('providers:\n  slicer:\n    url: /s.sock\n    watch_interval: "30"\n'), /not a duration/)
  })

  it('examples/slicer/relight.yaml and the provider README sample are valid', () => {
    const file = new URL('../../../examples/slicer/relight.yaml', import.meta.url)
    const c = parseConfig(readFileSync(file, 'utf8'), 'examples/slicer/relight.yaml', { SLICER_TOKEN: 'demo-token' })
    assert.equal(c.providers.slicer?.[0]?.host_group, 'apps')
    assert.equal(c.providers.slicer?.[0]?.token, 'demo-token')
    const readme = readFileSync(new URL('../../../sidecar/providers/slicer/README.md', import.meta.url), 'utf8')
    const blocks = [...readme.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string)
    assert.ok(blocks.length >= 1)
    for (const block of blocks) parseConfig(block, 'sidecar/providers/slicer/README.md', { SLICER_TOKEN: 't' })
  })

  it('expands ~/ and resolves a relative socket path against the config directory', () => {
    assert.deepEqual(parseEndpoint('~/slicer-mac/slicer.sock', '/etc/relight', '/home/u'), { base: 'http://localhost', socketPath: '/home/u/slicer-mac/slicer.sock', display: '/home/u/slicer-mac/slicer.sock' })
    assert.equal(parseEndpoint('unix:/run/slicer.sock').socketPath, '/run/slicer.sock')
    assert.equal(parseEndpoint('run/slicer.sock', '/etc/relight').socketPath, '/etc/relight/run/slicer.sock')
    assert.deepEqual(parseEndpoint('https://slicer.example:8443/api/'), { base: 'https://slicer.example:8443/api', display: 'https://slicer.example:8443/api' })
    assert.equal(parseEndpoint('https://user:secret@slicer.example/').display, 'https://slicer.example', 'credentials are never shown')
    assert.throws(() => paths.vm('..', 'resume'), /refusing the path segment/)
    assert.throws(() => paths.vm('%2E', 'pause'), /refusing the path segment/)
    assert.equal(paths.vm('a/b?c', 'pause'), '/vm/a%2Fb%3Fc/pause')
  })
})
