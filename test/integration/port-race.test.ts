/**
 * A local user cannot take an app's traffic during its wake (issue 23 item 1). The app is
 * spawned, writes its pid and waits for SIGUSR1 before it listens; meanwhile a racer running as
 * `nobody` binds the app's port (the start-time port check passed long before). The readiness
 * probe reaches the racer, and the wake must refuse it: 503 RELIGHT_ERR_PORT_IN_USE, the log
 * naming the racer, and never an x-relight-upstream pointing at it. Synchronised on the file the
 * app writes and the line the racer prints; no sleeps.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { freePort, tempDir } from '../helpers/net.js'
import { nobodySkip } from '../helpers/nobody.js'
import { startSidecarProcess, stopSidecarProcess, type SidecarProcess } from '../helpers/sidecar-process.js'
import { until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))


describe('the wake routes only to the app it started', { skip: nobodySkip() }, () => {
  const tmp = tempDir('relight-race-')
  let sc: SidecarProcess | undefined
  let racer: ChildProcess | undefined
  let sc2: SidecarProcess | undefined
  let racer2: ChildProcess | undefined
  after(async () => {
    racer?.kill('SIGKILL')
    racer2?.kill('SIGKILL')
    await stopSidecarProcess(sc)
    await stopSidecarProcess(sc2)
    tmp.remove()
  })

  it('a racer (nobody) that binds the port after the spawn gets 503 RELIGHT_ERR_PORT_IN_USE and no traffic', async () => {
    const [listen, port] = [await freePort(), await freePort()]
    const spawned = join(tmp.dir, 'spawned')
    const file = join(tmp.dir, 'relight.yaml')
    writeFileSync(
      file,
      `listen: 127.0.0.1:${listen}\nstate_dir: ${tmp.dir}/state\ndefaults: { wake_timeout: 30s }\nproviders:\n  process:\n    apps:\n` +
        `      - { name: web, hosts: [web.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", SPAWNED_FILE: ${spawned}, LISTEN_ON_SIGNAL: SIGUSR1 }, port: ${port}, stdout: "null", restart: never }\n`,
    )
    sc = await startSidecarProcess(file)
    const wake = request(`http://127.0.0.1:${listen}/_relight/auth`, { headers: { host: 'web.localhost', cookie: 'session=secret' } })
    await until(() => existsSync(spawned) && readFileSync(spawned, 'utf8') !== '', 'the app to be spawned')
    const appPid = Number(readFileSync(spawned, 'utf8'))

    const script = `require('net').createServer((s) => { console.log('GOT CONNECTION'); s.on('data', (d) => console.log('DATA ' + JSON.stringify(d.toString()))) }).listen(${port}, '127.0.0.1', () => console.log('listening'))`
    racer = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    racer.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    racer.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    await until(() => out.includes('listening') || racer?.exitCode !== null, 'the racer to listen')
    assert.match(out, /listening/, out)

    const res = await wake
    const body = await res.body.text()
    assert.equal(res.statusCode, 503, `the wake was answered ${res.statusCode} ${JSON.stringify(res.headers)} ${body}`)
    assert.equal(res.headers['x-relight-upstream'], undefined, 'no upstream is handed to Caddy')
    assert.equal(JSON.parse(body).code, 'RELIGHT_ERR_PORT_IN_USE')
    const logged = await sc.waitFor((l) => l.msg !== undefined && String(l.msg).includes('is answered by another program'), 'the log line naming the racer')
    assert.equal(logged.holder_pid, racer.pid, 'setpriv execs node: the racer is that pid')
    assert.equal(logged.holder_command, 'node')
    assert.doesNotMatch(out, /DATA/, 'the racer received no request bytes')

    // The app itself, once it tries to listen, cannot: EADDRINUSE, and it exits (restart: never).
    process.kill(appPid, 'SIGUSR1')
  })

  it('replicas: a replica that restarts is routed only after its probe and the ownership check (a racer on its port gets nothing)', async () => {
    const [listen, port] = [await freePort(), await freePort()]
    const dir = join(tmp.dir, 'replicas')
    mkdirSync(dir)
    const file = join(dir, 'relight.yaml')
    writeFileSync(
      file,
      `listen: 127.0.0.1:${listen}\nstate_dir: ${dir}/state\ndefaults: { wake_timeout: 30s }\nproviders:\n  process:\n    apps:\n` +
        `      - { name: web, hosts: [web.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", SPAWNED_FILE: "${dir}/spawned-{{replica}}", RESPAWN_LISTENS_ON_SIGNAL: SIGUSR1 }, port: ${port}, replicas: 2, stdout: "null" }\n`,
    )
    sc2 = await startSidecarProcess(file)
    const auth = async (): Promise<string> => {
      const res = await request(`http://127.0.0.1:${listen}/_relight/auth`, { headers: { host: 'web.localhost' } })
      await res.body.dump()
      return `${res.statusCode} ${String(res.headers['x-relight-upstream'])}`
    }
    const second = `200 127.0.0.1:${port + 1}`
    // Both replicas routed (round robin) once both probes succeeded.
    const seen = new Set<string>()
    await until(async () => {
      seen.add(await auth())
      return seen.has(second)
    }, 'replica 1 to be routed')
    const spawned1 = join(dir, 'spawned-1')
    const pid1 = Number(readFileSync(spawned1, 'utf8'))
    process.kill(pid1, 'SIGKILL')
    // The restarted replica writes its pid and waits for SIGUSR1 before it listens.
    await until(() => Number(readFileSync(spawned1, 'utf8') || '0') !== pid1 && readFileSync(spawned1, 'utf8') !== '', 'replica 1 to restart')
    const script = `require('net').createServer((s) => { console.log('GOT CONNECTION'); s.on('data', (d) => console.log('DATA ' + JSON.stringify(d.toString()))) }).listen(${port + 1}, '127.0.0.1', () => console.log('listening'))`
    racer2 = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    racer2.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    racer2.stderr?.on('data', (d: Buffer) => (out += d.toString()))
    await until(() => out.includes('listening') || racer2?.exitCode !== null, 'the racer to listen')
    assert.match(out, /listening/, out)
    const before: string[] = []
    for (let i = 0; i < 6; i++) before.push(await auth())
    assert.ok(!before.includes(second), `the restarted replica's port (held by the racer) was routed: ${before.join(', ')}`)
    const logged = await sc2.waitFor((l) => String(l.msg ?? '').includes(`127.0.0.1:${port + 1} is answered by another program`), 'the ownership check to refuse the racer')
    assert.equal(logged.holder_pid, racer2.pid)
    const afterCheck: string[] = []
    for (let i = 0; i < 6; i++) afterCheck.push(await auth())
    assert.deepEqual([...new Set(afterCheck)], [`200 127.0.0.1:${port}`], 'only replica 0 is routed')
    assert.doesNotMatch(out, /DATA/, 'the racer received no request bytes')
  })
})
