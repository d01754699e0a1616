/** The README's systemd unit: complete, valid for systemd, and consistent with the production config beside it. */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseConfig } from '../../sidecar/config/load.js'
import { tempDir } from '../helpers/net.js'
import { MAIN, startSidecarProcess } from '../helpers/sidecar-process.js'
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

  it('names user, group, runtime directory and mode, and waits for the sidecar of the production config to answer', () => {
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
    for (const address of [config.listen, config.access_log]) assert.match(address ?? '', /^unix:\/run\/relight\//, 'sockets live in the RuntimeDirectory')
    assert.ok(k.get('ExecStartPost')?.[0]?.includes('relight-sidecar health --config /etc/relight/relight.yaml'), 'ExecStartPost asks the sidecar, not the file system')
  })

  it('ExecStartPost returns once the sidecar answers, and not while only stale socket files exist', async (t) => {
    const post = keys(unit).get('ExecStartPost')?.[0] ?? ''
    assert.doesNotMatch(post, /\$/, 'no $ for systemd to expand')
    const run = join(tmp.dir, 'run')
    mkdirSync(run)
    const config = join(tmp.dir, 'relight.yaml')
    writeFileSync(config, `listen: unix:${run}/sidecar.sock\naccess_log: unix:${run}/access.sock\n`)
    const command = (seconds: number) =>
      post.replace('/usr/local/bin/relight-sidecar', `${process.execPath} ${MAIN}`).replace('/etc/relight/relight.yaml', config).replace(/timeout \d+/, `timeout ${seconds}`)

    // What a crash leaves: both socket files, nobody listening (a listener killed with SIGKILL
    // does not unlink them). The old wait (`[ -S … ]`) returned at once.
    const script = `const net = require('net'); let n = 0; for (const p of process.argv.slice(1)) net.createServer().listen(p, () => { if (++n === 2) process.kill(process.pid, 'SIGKILL') })`
    const crashed = spawnSync(process.execPath, ['-e', script, join(run, 'sidecar.sock'), join(run, 'access.sock')], { timeout: 10_000 })
    assert.equal(crashed.signal, 'SIGKILL')
    for (const name of ['sidecar.sock', 'access.sock']) assert.ok(statSync(join(run, name)).isSocket(), `${name} is left behind`)
    const stale = spawnSync('sh', ['-c', command(2)], { encoding: 'utf8', timeout: 20_000 })
    assert.notEqual(stale.status, 0, 'the wait must not succeed while no sidecar answers')

    // A sidecar that starts while the wait runs: when the wait returns, the sidecar answers.
    const wait = spawn('sh', ['-c', command(30)], { stdio: 'ignore' })
    t.after(() => wait.kill())
    const waited = new Promise<number | null>((resolve) => wait.once('exit', resolve))
    const sidecar = await startSidecarProcess(config)
    t.after(async () => {
      sidecar.child.kill('SIGTERM')
      await sidecar.exited
    })
    assert.equal(await waited, 0, 'the wait returns 0')
    const health = spawnSync(process.execPath, [MAIN, 'health', '--config', config], { encoding: 'utf8', timeout: 10_000 })
    assert.equal(health.status, 0, `the sidecar answers as soon as the wait returns: ${health.stdout}${health.stderr}`)
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
