/**
 * Crash recovery, end to end behind real Caddy: `kill -9` of the sidecar with its apps awake,
 * and again with an app paused; the restarted sidecar ends what the dead one left, serves every
 * app within seconds, puts it to sleep when idle, and leaves nothing running after SIGTERM.
 */
import assert from 'node:assert/strict'
import { readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { groupMembers } from '../../sidecar/providers/process/child-records.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { type SidecarProcess, startSidecarProcess, stopSidecarProcess } from '../helpers/sidecar-process.js'
import { pidAlive, pidState, until } from '../helpers/wait.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const skip = caddySkip()

describe('crash recovery behind Caddy', { skip }, () => {
  const tmp = tempDir('relight-crash-')
  const config = join(tmp.dir, 'relight.yaml')
  let caddy: RunningCaddy
  const running: SidecarProcess[] = []
  const seenPids = new Set<number>()

  async function get(host: string): Promise<{ status: number; pid: number; body: string }> {
    const res = await request(`${caddy.url}/`, { headers: { host } })
    const body = await res.body.text()
    const pid = Number(/pid (\d+)/.exec(body)?.[1] ?? 0)
    if (pid) seenPids.add(pid)
    return { status: res.statusCode, pid, body }
  }

  async function start(): Promise<SidecarProcess> {
    const sc = await startSidecarProcess(config)
    running.push(sc)
    return sc
  }

  async function killHard(sc: SidecarProcess): Promise<void> {
    sc.child.kill('SIGKILL')
    assert.equal(await sc.exited, 'SIGKILL')
  }

  /** SIGTERM: exits 0, and no process of any app we ever saw (nor its group) is left. */
  async function stopAndCheckNothingLeft(sc: SidecarProcess): Promise<void> {
    assert.equal(await stopSidecarProcess(sc), 0)
    for (const pid of seenPids) {
      assert.equal(pidAlive(pid), false, `app process ${pid} still runs`)
      assert.deepEqual(groupMembers(pid), [], `process group ${pid} still has members`)
    }
    assert.deepEqual(readdirSync(join(tmp.dir, 'state', 'process')), [], 'no child records left')
  }

  before(async () => {
    const [listen, p1, p2] = [await freePort(), await freePort(), await freePort()]
    const app = (name: string, port: number, sleep: string) =>
      `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: ${name} }, port: ${port}, stdout: "null", grace_period: 2s, sleep: ${sleep} }\n`
    writeFileSync(
      config,
      `listen: 127.0.0.1:${listen}\nstate_dir: ${tmp.dir}/state\nlog_level: info\nmin_idle_timeout: 500ms\ndefaults: { idle_timeout: 3s, wake_timeout: 10s }\nproviders:\n  process:\n    apps:\n${app('stopper', p1, 'stop')}${app('pauser', p2, 'pause')}`,
    )
    caddy = await startCaddy({ sidecar: `127.0.0.1:${listen}` })
  })
  after(async () => {
    for (const sc of running) await stopSidecarProcess(sc)
    await caddy?.close()
    for (const pid of seenPids) {
      try {
        process.kill(-pid, 'SIGKILL') // only if a test failed half-way
      } catch {
        // gone
      }
    }
    tmp.remove()
  })

  it('after kill -9 with both apps awake, a restarted sidecar ends the orphans, serves within seconds, sleeps, and stops cleanly', async (t) => {
    const first = await start()
    const stopper = await get('stopper.localhost')
    const pauser = await get('pauser.localhost')
    assert.equal(stopper.status, 200)
    assert.equal(pauser.status, 200)
    await killHard(first)
    assert.ok(pidAlive(stopper.pid) && pidAlive(pauser.pid), 'the apps outlive a kill -9 of their sidecar (orphans)')

    const second = await start()
    const t0 = Date.now()
    const again = [await get('stopper.localhost'), await get('pauser.localhost')]
    const ms = Date.now() - t0
    assert.deepEqual(
      again.map((r) => r.status),
      [200, 200],
    )
    assert.ok(ms < 5000, `served within seconds (${ms} ms)`)
    t.diagnostic(`both apps served ${ms} ms after the restarted sidecar listened`)
    assert.notEqual(again[0]?.pid, stopper.pid, 'a new process serves, not the orphan')
    assert.notEqual(again[1]?.pid, pauser.pid)
    assert.equal(pidAlive(stopper.pid), false, 'the orphan was ended')
    assert.equal(pidAlive(pauser.pid), false)
    const ended = second.lines().filter((l) => l.msg === 'a previous sidecar left this process running; stopping it')
    assert.deepEqual(ended.map((l) => l.app).sort(), ['pauser', 'stopper'])

    await until(() => !pidAlive(again[0]?.pid), 'stopper to be stopped when idle', 15_000)
    await until(() => pidState(again[1]?.pid as number) === 'T', 'pauser to be paused when idle', 15_000)
    await stopAndCheckNothingLeft(second)
  })

  it('after kill -9 with an app paused, a restarted sidecar ends the frozen orphan (no hanging requests), serves, sleeps, and stops cleanly', async (t) => {
    const first = await start()
    const pauser = await get('pauser.localhost')
    assert.equal(pauser.status, 200)
    await until(() => pidState(pauser.pid) === 'T', 'pauser to be paused when idle', 15_000)
    await killHard(first)
    assert.equal(pidState(pauser.pid), 'T', 'the paused orphan is left frozen')

    const second = await start()
    const t0 = Date.now()
    const again = await get('pauser.localhost')
    const ms = Date.now() - t0
    assert.equal(again.status, 200)
    assert.ok(ms < 5000, `served within seconds (${ms} ms)`)
    t.diagnostic(`the paused app served ${ms} ms after the restarted sidecar listened`)
    assert.notEqual(again.pid, pauser.pid)
    assert.equal(pidAlive(pauser.pid), false, 'the frozen orphan was ended')
    await until(() => pidState(again.pid) === 'T', 'pauser to be paused when idle', 15_000)
    // a paused app at shutdown is resumed to handle its stop signal
    await stopAndCheckNothingLeft(second)
  })
})
