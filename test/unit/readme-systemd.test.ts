/** The README's systemd unit: complete, valid for systemd, and consistent with the production config beside it. */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../sidecar/config/load.js'
import { tempDir } from '../helpers/net.js'
import { testSecret } from '../helpers/secret.js'

const README = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8')
const unit = /```ini\n([\s\S]*?)```/.exec(README)?.[1] ?? ''
const production = [...README.matchAll(/```yaml\n([\s\S]*?)```/g)].map((m) => m[1] as string).find((b) => b.startsWith('# /etc/relight/relight.yaml'))

function keys(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>()
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line)
    if (m) map.set(m[1] as string, [...(map.get(m[1] as string) ?? []), m[2] as string])
  }
  return map
}

describe('README systemd unit', () => {
  const tmp = tempDir('relight-unit-')
  after(() => tmp.remove())

  it('names user, group, runtime directory and mode, and waits for both sockets of the production config', () => {
    const k = keys(unit)
    for (const key of ['User', 'Group', 'ExecStart', 'ExecStartPost', 'RuntimeDirectory', 'RuntimeDirectoryMode', 'KillMode', 'Before']) assert.ok(k.has(key), `${key}= is set`)
    assert.equal(k.get('RuntimeDirectory')?.[0], 'relight')
    assert.equal(k.get('RuntimeDirectoryMode')?.[0], '0755')
    assert.equal(k.get('RuntimeDirectoryPreserve')?.[0], 'restart')
    assert.match(k.get('ExecStart')?.[0] ?? '', /^\/usr\/local\/bin\/relight-sidecar serve --config \/etc\/relight\/relight\.yaml$/)
    assert.ok(production, 'the production config block is in the README')
    const tokenFile = join(tmp.dir, 'admin-token')
    writeFileSync(tokenFile, `${testSecret()}\n`, { mode: 0o600 })
    const config = parseConfig((production as string).replaceAll('/etc/relight/admin-token', tokenFile), 'README.md', {})
    assert.ok(config.admin?.token_file, 'the production config reads the admin token from a file')
    assert.doesNotMatch(unit, /^Environment=.*(TOKEN|SECRET)/m, 'no secret in the world-readable unit file')
    assert.equal(config.socket_group, 'caddy')
    for (const address of [config.listen, config.access_log]) {
      assert.match(address ?? '', /^unix:\/run\/relight\//, 'sockets live in the RuntimeDirectory')
      assert.ok(k.get('ExecStartPost')?.[0]?.includes(`[ -S ${address?.slice('unix:'.length)} ]`), `ExecStartPost waits for ${address}`)
    }
  })

  it('ExecStartPost returns once both sockets exist', async () => {
    const post = keys(unit).get('ExecStartPost')?.[0] ?? ''
    const { createServer } = await import('node:net')
    const servers = ['sidecar.sock', 'access.sock'].map((name) => createServer().listen(join(tmp.dir, name)))
    await Promise.all(servers.map((s) => new Promise((r) => s.once('listening', r))))
    const command = post.replaceAll('/run/relight', tmp.dir)
    const r = spawnSync('sh', ['-c', command], { encoding: 'utf8', timeout: 10_000 })
    for (const s of servers) s.close()
    assert.equal(r.status, 0, r.stderr)
    assert.doesNotMatch(post, /\$/, 'no $ for systemd to expand')
  })

  it('passes systemd-analyze verify without warnings', (t) => {
    if (spawnSync('systemd-analyze', ['--version']).status !== 0) return t.skip('systemd-analyze is not installed')
    const file = join(tmp.dir, 'relight-sidecar.service')
    writeFileSync(file, unit.replace('/usr/local/bin/relight-sidecar', process.execPath)) // an executable that exists here
    const r = spawnSync('systemd-analyze', ['verify', file], { encoding: 'utf8', timeout: 30_000 })
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stderr.split('\n').filter((l) => l.includes(file)).join('\n'), '', 'no warning about the unit')
  })
})
