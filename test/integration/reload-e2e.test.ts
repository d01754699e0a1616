/**
 * Hot reload end to end: `relight-sidecar serve` behind real Caddy, a client loop running the
 * whole time; SIGHUP and the admin API (`relight-sidecar reload`) apply a new file. Unchanged
 * apps keep their process and in-flight count with zero failed requests; added apps and stateful
 * sites are routable at once; removed apps stop and answer 404; a changed app keeps serving
 * until its next sleep and then runs the new config; settings apply live; restart-only keys
 * are named; an invalid file changes nothing and its problems come back from the admin call.
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { loadConfig } from '../../sidecar/config/load.js'
import { runningSidecarPid } from '../../sidecar/reload-client.js'
import { caddySkip, type RunningCaddy, startCaddy } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { MAIN, type SidecarProcess, startSidecarProcess, stopSidecarProcess } from '../helpers/sidecar-process.js'
import { pidAlive, until } from '../helpers/wait.js'
import { testSecret } from '../helpers/secret.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))
const skip = caddySkip()
const TOKEN = testSecret()

describe('hot reload behind Caddy, under traffic', { skip }, () => {
  const tmp = tempDir('relight-reload-')
  const file = join(tmp.dir, 'relight.yaml')
  let caddy: RunningCaddy
  let sc: SidecarProcess
  const ports: Record<string, number> = {}
  const pids = new Set<number>()

  const app = (name: string, extra = '', env = `NAME: ${name}`) =>
    `      - { name: ${name}, hosts: [${name}.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", ${env} }, port: ${ports[name]}, stdout: "null", grace_period: 2s${extra} }\n`
  const head = (listen: number, extra = '') =>
    `listen: 127.0.0.1:${listen}\naccess_log: unix:${tmp.dir}/access.sock\nstate_dir: ${tmp.dir}/state\nadmin: { token: ${TOKEN} }\nmin_idle_timeout: 500ms\ndefaults: { idle_timeout: 1500ms, wake_timeout: 10s }\n${extra}providers:\n  process:\n    apps:\n`
  let listen = 0

  async function get(host: string, path = '/') {
    const res = await request(`${caddy.url}${path}`, { headers: { host } })
    const body = await res.body.text()
    const pid = Number(/pid (\d+)/.exec(body)?.[1] ?? 0)
    if (pid) pids.add(pid)
    return { status: res.statusCode, body, pid }
  }

  /** An SSE stream through Caddy (a request in flight); resolves with its first event's text. */
  async function stream(host: string) {
    const res = await request(`${caddy.url}/sse`, { headers: { host } })
    assert.equal(res.statusCode, 200)
    const first = await new Promise<string>((resolve) => res.body.once('data', (d: Buffer) => resolve(d.toString())))
    const pid = Number(/ (\d+)/.exec(first)?.[1])
    pids.add(pid)
    res.body.on('data', () => undefined)
    res.body.on('error', () => undefined) // closed by the test
    return { first, pid, close: () => res.body.destroy() }
  }

  async function admin(path: string, method: 'GET' | 'POST' = 'GET') {
    const res = await request(`http://127.0.0.1:${listen}/_relight/admin/${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` } })
    return { status: res.statusCode, json: (await res.body.json()) as Record<string, unknown> }
  }

  before(async () => {
    for (const name of ['keep', 'change', 'remove', 'tuned', 'added']) ports[name] = await freePort()
    listen = await freePort()
    writeFileSync(file, head(listen) + app('keep') + app('change', '', 'NAME: before') + app('remove') + app('tuned', ', idle_timeout: 1h'))
    sc = await startSidecarProcess(file)
    caddy = await startCaddy({ sidecar: `127.0.0.1:${listen}`, accessLog: `unix/${tmp.dir}/access.sock` })
    await until(async () => {
      const res = await request(`http://127.0.0.1:${listen}/_relight/healthz`)
      // 'unproven' until Caddy's first line proves the connection is Caddy's
      return ['unproven', 'connected'].includes(((await res.body.json()) as { access_log: string }).access_log)
    }, 'Caddy to connect its access log')
  })
  after(async () => {
    await stopSidecarProcess(sc)
    await caddy?.close()
    for (const pid of pids) {
      try {
        process.kill(-pid, 'SIGKILL') // only if a test failed half-way
      } catch {
        // gone
      }
    }
    tmp.remove()
  })

  it('applies a new file on SIGHUP without touching unchanged apps (zero failed requests), and refuses an invalid one', async () => {
    const keepStream = await stream('keep.localhost') // keeps `keep` awake: in flight through the reloads
    const keep = await get('keep.localhost')
    assert.equal(keep.pid, keepStream.pid)
    const remove = await get('remove.localhost')
    const tuned = await get('tuned.localhost')
    assert.deepEqual([keep.status, remove.status, tuned.status], [200, 200, 200])
    const changeStream = await stream('change.localhost') // keeps `change` awake through the reload
    assert.match(changeStream.first, /^data: before /)

    // the client loop: back-to-back requests to the unchanged app for the whole test
    let loop = true
    const answers = new Map<number, number>()
    const loopPids = new Map<number, number>()
    const client = (async () => {
      while (loop) {
        const r = await get('keep.localhost')
        answers.set(r.status, (answers.get(r.status) ?? 0) + 1)
        loopPids.set(r.pid, (loopPids.get(r.pid) ?? 0) + 1)
      }
    })()

    // 1. SIGHUP with a changed file
    const secret = Buffer.alloc(32, 7).toString('base64')
    const stateful = `stateful:\n  - { hosts: [doors.localhost], secret: "${secret}", upstreams: [{ cidr: 127.0.0.0/8, host: 127.0.0.1, port: ${ports.keep} }] }\n`
    writeFileSync(
      file,
      head(listen, `shutdown_timeout: 20s\n${stateful}`) + app('keep') + app('change', '', 'NAME: after') + app('tuned', ', idle_timeout: 1s') + app('added'),
    )
    const appliedBefore = sc.lines().filter((l) => l.msg === 'config applied').length
    process.kill(sc.pid, 'SIGHUP')
    const applied = await sc.waitFor((l) => l.msg === 'config applied' && sc.lines().filter((x) => x.msg === 'config applied').length > appliedBefore, 'the reload to be applied')
    assert.deepEqual((applied.details as Record<string, unknown>).process, { added: ['added'], removed: ['remove'], updated: ['tuned'], replaced: ['change'] })
    assert.equal(applied.stateful, true)
    assert.deepEqual(applied.restart_needed, ['shutdown_timeout'])
    assert.ok(sc.lines().some((l) => l.level === 40 && /need a restart.*shutdown_timeout/.test(String(l.msg))), 'the restart-only key is named in the log')

    // added app and stateful site: routable at once
    const added = await get('added.localhost')
    assert.equal(added.status, 200)
    assert.match(added.body, /^added pid/)
    const doors = await get('doors.localhost')
    assert.equal(doors.status, 200)
    assert.match(doors.body, /^keep pid/, 'the stateful site routes to its upstream')
    // removed app: 404 at once, its process stopped
    assert.equal((await get('remove.localhost')).status, 404)
    await until(() => !pidAlive(remove.pid), 'the removed app to stop')
    // changed app: the old process serves while busy…
    const during = await get('change.localhost')
    assert.equal(during.status, 200)
    assert.match(during.body, new RegExp(`^before pid ${changeStream.pid} `))
    // …and the new config runs after its next sleep
    changeStream.close()
    await until(() => !pidAlive(changeStream.pid), 'the changed app to sleep (its old process stops)', 15_000)
    const changed = await get('change.localhost')
    assert.equal(changed.status, 200)
    assert.match(changed.body, /^after pid/, 'the next request starts the new config')
    // settings apply live: tuned now sleeps after 1 s (it had 1 h), same process until then
    await until(() => !pidAlive(tuned.pid), 'tuned to sleep under its new idle_timeout', 10_000)
    // the unchanged app: same process, its stream still counted in flight
    const backends = (await admin('backends')).json.backends as { key: string; inflight: number; phase: string }[]
    const keepStatus = backends.find((b) => b.key === 'process:keep')
    assert.equal(keepStatus?.phase, 'running')
    assert.ok((keepStatus?.inflight ?? 0) >= 1, `the open stream is still in flight: ${JSON.stringify(keepStatus)}`)

    // 2. an invalid file: the admin call returns the problems, nothing changes
    writeFileSync(file, `${head(listen)}${app('keep')}      - { name: broken, command: [x], bogus_key: 1 }\n`)
    const refused = await admin('reload', 'POST')
    assert.equal(refused.status, 422)
    assert.equal(refused.json.ok, false)
    assert.match(String(refused.json.errors), /bogus_key/)
    await sc.waitFor((l) => l.msg === 'config reload refused: the file is invalid; the running configuration stays', 'the refusal in the log')
    assert.equal((await get('added.localhost')).status, 200, 'the running config stays')

    // 3. `relight-sidecar reload` (admin API) with the previous valid file: nothing changes
    writeFileSync(
      file,
      head(listen, `shutdown_timeout: 20s\n${stateful}`) + app('keep') + app('change', '', 'NAME: after') + app('tuned', ', idle_timeout: 1s') + app('added'),
    )
    const cli = spawnSync(process.execPath, [MAIN, 'reload', '--config', file], { encoding: 'utf8', timeout: 60_000 })
    assert.equal(cli.status, 0, cli.stderr)
    assert.match(cli.stdout, /^config applied: nothing changed/)

    loop = false
    await client
    keepStream.close()
    assert.deepEqual([...answers.keys()], [200], `every request of the loop succeeded: ${JSON.stringify(Object.fromEntries(answers))}`)
    assert.ok((answers.get(200) ?? 0) > 20, `the loop ran: ${JSON.stringify(Object.fromEntries(answers))}`)
    assert.deepEqual([...loopPids.keys()], [keep.pid], `the unchanged app kept its process: ${JSON.stringify([...loopPids])} (first ${keep.pid})\n${sc.lines().filter((l) => l.app === 'keep' || l.backend === 'keep').map((l) => JSON.stringify(l)).join('\n')}`)
    assert.equal(keepStream.pid, keep.pid)
  })

  it('`relight-sidecar reload` finds the running sidecar through its pid file', () => {
    const found = runningSidecarPid(loadConfig(file), tmp.dir)
    assert.deepEqual(found, { pid: sc.pid })
  })

  it('leaves nothing running after SIGTERM', async () => {
    assert.equal(await stopSidecarProcess(sc), 0)
    for (const pid of pids) assert.equal(pidAlive(pid), false, `app process ${pid} still runs`)
  })
})

describe('`relight-sidecar reload` without an admin token', () => {
  it('sends SIGHUP to the pid in <state_dir>/sidecar.pid; the sidecar applies the file', async () => {
    const tmp = tempDir('relight-hup-')
    const file = join(tmp.dir, 'relight.yaml')
    const port = await freePort()
    const head = `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state\n`
    writeFileSync(file, head)
    const sc = await startSidecarProcess(file)
    try {
      writeFileSync(file, `${head}providers:\n  process:\n    apps:\n      - { name: late, hosts: [late.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}" }, port: ${port}, stdout: "null" }\n`)
      const cli = spawnSync(process.execPath, [MAIN, 'reload', '--config', file], { encoding: 'utf8', timeout: 60_000 })
      assert.equal(cli.status, 0, cli.stderr)
      assert.match(cli.stdout, new RegExp(`sent SIGHUP to the sidecar \\(pid ${sc.pid}\\)`))
      const applied = await sc.waitFor((l) => l.msg === 'config applied', 'the reload to be applied')
      assert.deepEqual((applied.providers as { added: string[] }).added, ['process'])
      assert.equal(await stopSidecarProcess(sc), 0)
      const gone = spawnSync(process.execPath, [MAIN, 'reload', '--config', file], { encoding: 'utf8', timeout: 60_000 })
      assert.equal(gone.status, 1)
      assert.match(gone.stderr, /cannot reach the sidecar/)
    } finally {
      await stopSidecarProcess(sc)
      tmp.remove()
    }
  })
})
