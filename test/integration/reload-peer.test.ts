/**
 * `relight-sidecar reload` proves its peer before it sends the admin token (issue 23 item 2):
 * another local user (`nobody`, via setpriv) listening on the configured port gets nothing —
 * neither while the sidecar is down, nor when the pid file names a live process that is not the
 * one listening. The racer answers like the admin API would, so the old client printed "config
 * applied" and exited 0. And the token comes from admin.token_file, so an operator's shell
 * without RELIGHT_ADMIN_TOKEN reloads a real sidecar (issue 22 item 5).
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { connect } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { procStat } from '../../sidecar/core/proc-stat.js'
import { freePort, tempDir } from '../helpers/net.js'
import { nobodySkip } from '../helpers/nobody.js'
import { testSecret } from '../helpers/secret.js'
import { MAIN, startSidecarProcess, stopSidecarProcess } from '../helpers/sidecar-process.js'
import { until } from '../helpers/wait.js'


/** A listener run as `nobody` that answers like the admin API and prints every byte it gets. */
const RACER = `
const net = require('net')
const answer = JSON.stringify({ ok: true, changed: false, summary: {} })
net.createServer((s) => {
  s.on('data', (d) => {
    console.log('DATA ' + JSON.stringify(d.toString()))
    if (d.toString().startsWith('POST')) s.end('HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: ' + answer.length + '\\r\\nconnection: close\\r\\n\\r\\n' + answer)
  })
}).listen(Number(process.argv[1]), '127.0.0.1', () => console.log('listening'))
`

function racer(port: number): { child: ChildProcess; out: () => string } {
  const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath, '-e', RACER, String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  return { child, out: () => out }
}

/** Everything the racer received before a marker we send ourselves (so nothing is still in flight). */
async function receivedBefore(r: ReturnType<typeof racer>, port: number): Promise<string[]> {
  const marker = `END-${Date.now()}`
  const socket = connect(port, '127.0.0.1', () => socket.write(marker))
  await until(() => r.out().includes(marker), 'the racer to print our marker')
  socket.destroy()
  return r.out().split('\n').filter((l) => l.startsWith('DATA ') && !l.includes(marker))
}

describe('reload sends the admin token only to the sidecar', { skip: nobodySkip() }, () => {
  const tmp = tempDir('relight-peer-')
  mkdirSync(join(tmp.dir, 'state'), { mode: 0o700 })
  const tokenFile = join(tmp.dir, 'admin-token')
  const token = testSecret()
  writeFileSync(tokenFile, `${token}\n`, { mode: 0o600 })
  const children: ChildProcess[] = []
  after(() => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
    tmp.remove()
  })
  const env = { ...process.env, RELIGHT_ADMIN_TOKEN: '' }
  const reload = (file: string) => spawnSync(process.execPath, [MAIN, 'reload', '--config', file], { encoding: 'utf8', timeout: 30_000, env })

  async function withRacer(port: number) {
    const r = racer(port)
    children.push(r.child)
    await until(() => r.out().includes('listening') || r.child.exitCode !== null, 'the racer to listen')
    assert.match(r.out(), /listening/, r.out())
    return r
  }

  it('the sidecar is down and nobody listens on its port: nothing is sent, exit 1', async () => {
    const port = await freePort()
    const file = join(tmp.dir, 'down.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\nstate_dir: ${tmp.dir}/state\nadmin: { token_file: ${tokenFile} }\n`)
    const r = await withRacer(port)
    const cli = reload(file)
    assert.equal(cli.status, 1, `${cli.stdout}${cli.stderr}`)
    assert.doesNotMatch(cli.stdout, /config applied/)
    assert.match(cli.stderr, /cannot reach the sidecar/)
    assert.deepEqual(await receivedBefore(r, port), [], 'the racer received nothing')
    r.child.kill('SIGKILL')
  })

  it('the pid file names a live process, but nobody holds the port: the token is not sent', async () => {
    const port = await freePort()
    const state = join(tmp.dir, 'state2')
    mkdirSync(state, { mode: 0o700 })
    const file = join(tmp.dir, 'stale.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\nstate_dir: ${state}\nadmin: { token_file: ${tokenFile} }\n`)
    // A live process of ours in a trusted 0600 pid file (a sidecar that crashed, its pid reused).
    const stand = spawn('sleep', ['60'], { stdio: 'ignore' })
    children.push(stand)
    await until(() => procStat(stand.pid as number), 'sleep to run')
    writeFileSync(join(state, 'sidecar.pid'), JSON.stringify({ pid: stand.pid, start_ticks: procStat(stand.pid as number)?.startTicks }), { mode: 0o600 })
    const r = await withRacer(port)
    const cli = reload(file)
    assert.equal(cli.status, 1, `${cli.stdout}${cli.stderr}`)
    assert.match(cli.stderr, new RegExp(`not sending the admin token: port ${port} is held by a process other than the sidecar \\(pid ${stand.pid}\\)`))
    const got = await receivedBefore(r, port)
    assert.deepEqual(got, [], 'the racer received nothing')
    assert.doesNotMatch(got.join('\n'), new RegExp(token))
    r.child.kill('SIGKILL')
  })

  it('a real sidecar with admin.token_file: reload from a shell without the variable applies the file', async () => {
    const port = await freePort()
    const file = join(tmp.dir, 'real.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\nstate_dir: ${tmp.dir}/state3\nadmin: { token_file: ${tokenFile} }\n`)
    const sc = await startSidecarProcess(file)
    try {
      const cli = reload(file)
      assert.equal(cli.status, 0, `${cli.stdout}${cli.stderr}`)
      assert.match(cli.stdout, /^config applied: nothing changed/)
    } finally {
      await stopSidecarProcess(sc)
    }
  })
})
