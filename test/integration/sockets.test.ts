/**
 * Unix sockets as a production host has them: a root sidecar, Debian's Caddy running as its
 * unprivileged `caddy` user. `socket_group: caddy` gives both sockets (listen, access_log) mode
 * 0660 and that group, so Caddy's `log { output net unix//… }` and forward_auth work, while
 * another unprivileged user cannot connect to either; without socket_group they are 0600.
 */
import assert from 'node:assert/strict'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { chmodSync, chownSync, mkdirSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { Agent, request } from 'undici'
import { caddySkip, startCaddy, stopChild } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'
import { testSecret } from '../helpers/secret.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const MAIN = join(ROOT, 'dist/sidecar/main.js')
const APP = join(ROOT, 'test/fixtures/http-app.mjs')
const TOKEN = testSecret()

/** undefined when users can be switched (root, setpriv, Debian's caddy user); else the reason. */
function usersSkip(): string | undefined {
  const caddy = caddySkip()
  if (caddy) return caddy
  let reason: string | undefined
  if (process.getuid?.() !== 0) reason = 'not root: cannot run Caddy as the caddy user'
  else if (spawnSync('id', ['caddy']).status !== 0) reason = 'no caddy user (Debian\'s caddy package creates it)'
  else if (spawnSync('setpriv', ['--version']).status !== 0) reason = 'setpriv (util-linux) is missing'
  if (reason && process.env.CI) throw new Error(`${reason}; CI requires the socket permission tests (see .ci/run)`)
  if (reason) process.stderr.write(`# ${reason}; skipping\n`)
  return reason
}

function gidOf(group: string): number {
  return Number(spawnSync('getent', ['group', group], { encoding: 'utf8' }).stdout.split(':')[2])
}

/** Connect to a unix socket as `user` (no supplementary groups but its own): 'ok' or the errno code. */
function connectAs(user: string, path: string): string {
  const script = `require('net').connect(${JSON.stringify(path)}).on('connect', function () { console.log('ok'); this.destroy() }).on('error', (e) => console.log(e.code))`
  const r = spawnSync('setpriv', [`--reuid=${user}`, `--regid=${user === 'nobody' ? 'nogroup' : user}`, '--init-groups', '--', process.execPath, '-e', script], { encoding: 'utf8', timeout: 15_000 })
  return (r.stdout || r.stderr).trim()
}

function serve(config: string): { child: ChildProcess; output: () => string; listening: Promise<unknown> } {
  const child = spawn(process.execPath, [MAIN, 'serve', '--config', config, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()))
  const listening = until(() => output.includes('relight-sidecar listening') || child.exitCode !== null, 'the sidecar to listen', 60_000).then(() => {
    if (child.exitCode !== null) throw new Error(`sidecar exited ${child.exitCode}:\n${output}`)
  })
  return { child, output: () => output, listening }
}

describe('unix sockets for a Caddy running as another user', { skip: usersSkip() }, () => {
  const tmp = tempDir('relight-sockets-')
  chmodSync(tmp.dir, 0o755) // like /run: any user may traverse it
  after(() => tmp.remove())

  async function configFile(name: string, extra: string): Promise<{ file: string; run: string; appPort: number }> {
    const run = join(tmp.dir, name, 'run/relight') // does not exist yet: serve creates it
    const appPort = await freePort()
    const file = join(tmp.dir, `${name}.yaml`)
    writeFileSync(
      file,
      `listen: unix:${run}/sidecar.sock\naccess_log: unix:${run}/access.sock\n${extra}min_idle_timeout: 1s\nproviders:\n  process:\n    apps:\n      - { name: web, hosts: [web.localhost], command: [${process.execPath}, ${APP}], env: { PORT: "{{port}}", NAME: web }, port: ${appPort}, stdout: "null" }\n`,
    )
    return { file, run, appPort }
  }

  it('without socket_group both sockets are owner-only: the caddy user cannot connect', async (t) => {
    const { file, run } = await configFile('private', '')
    const sidecar = serve(file)
    t.after(() => stopChild(sidecar.child))
    await sidecar.listening
    for (const sock of ['sidecar.sock', 'access.sock']) {
      const st = statSync(join(run, sock))
      assert.equal(st.mode & 0o777, 0o600, `${sock} mode`)
      assert.equal(st.uid, process.getuid?.())
      assert.equal(connectAs('caddy', join(run, sock)), 'EACCES', `caddy cannot connect to ${sock}`)
    }
    assert.equal(statSync(run).mode & 0o777, 0o755, 'the missing directory was created, traversable')
  })

  it('with socket_group: caddy, Caddy as the caddy user logs to and asks the root sidecar; nobody cannot connect', async (t) => {
    const { file, run } = await configFile('shared', `socket_group: caddy\nadmin: { token: ${TOKEN} }\n`)
    const sidecar = serve(file)
    t.after(() => stopChild(sidecar.child))
    await sidecar.listening
    const gid = gidOf('caddy')
    for (const sock of ['sidecar.sock', 'access.sock']) {
      const st = statSync(join(run, sock))
      assert.equal(st.mode & 0o777, 0o660, `${sock} mode`)
      assert.equal(st.gid, gid, `${sock} group`)
      assert.equal(connectAs('nobody', join(run, sock)), 'EACCES', `nobody cannot connect to ${sock}`)
    }
    // Caddy 2.6 refuses to start if it cannot connect its `output net` log: starting is the first proof.
    const caddy = await startCaddy({ sidecar: `unix/${run}/sidecar.sock`, accessLog: `unix/${run}/access.sock`, user: 'caddy' })
    t.after(() => caddy.close())
    const ps = spawnSync('ps', ['-o', 'user=', '-p', String(caddy.pid)], { encoding: 'utf8' }).stdout.trim()
    assert.equal(ps, 'caddy', 'Caddy runs as the caddy user')
    const res = await request(caddy.url, { headers: { host: 'web.localhost' } })
    assert.equal(res.statusCode, 200)
    assert.match(await res.body.text(), /^web pid \d+ GET \//)
    await until(() => sidecar.output().includes('caddy access log connected'), 'the access log to connect')
    // In-flight counting works only if Caddy's log lines arrive: an open stream counts 1, its end 0.
    const admin = new Agent({ connect: { socketPath: `${run}/sidecar.sock` } })
    t.after(() => admin.close())
    const inflight = async () => {
      const r = await request('http://sidecar/_relight/admin/backends', { dispatcher: admin, headers: { authorization: `Bearer ${TOKEN}` } })
      const body = (await r.body.json()) as { backends: { name: string; inflight: number }[] }
      return body.backends.find((b) => b.name === 'web')?.inflight
    }
    const stream = await request(caddy.url + '/sse', { headers: { host: 'web.localhost' } })
    assert.equal(stream.statusCode, 200)
    assert.equal(await inflight(), 1)
    stream.body.destroy()
    await until(async () => (await inflight()) === 0, 'the finished stream to be counted from the access log')
  })

  it('check and serve refuse a socket directory the caddy group cannot traverse; their verdict is what the kernel does to the caddy user', async () => {
    const dir = join(tmp.dir, 'reach')
    mkdirSync(dir)
    const file = join(tmp.dir, 'reach.yaml')
    writeFileSync(file, `listen: unix:${dir}/sidecar.sock\naccess_log: unix:${dir}/access.sock\nsocket_group: caddy\nstate_dir: ${tmp.dir}/reach-state\n`)
    // A bare listener beside them, with the mode and group the sidecar gives its sockets: can caddy connect?
    const probePath = join(dir, 'probe.sock')
    const probe = createServer().listen(probePath)
    await once(probe, 'listening')
    chownSync(probePath, -1, gidOf('caddy'))
    chmodSync(probePath, 0o660)
    try {
      for (const [mode, group, reachable] of [[0o700, 0, false], [0o750, 0, false], [0o710, gidOf('caddy'), true], [0o711, 0, true], [0o755, 0, true]] as const) {
        chmodSync(dir, mode)
        chownSync(dir, 0, group)
        const what = `directory mode 0${mode.toString(8)} gid ${group}`
        assert.equal(connectAs('caddy', probePath), reachable ? 'ok' : 'EACCES', `${what}: the kernel`)
        const check = spawnSync(process.execPath, [MAIN, 'check', '--config', file], { encoding: 'utf8', timeout: 60_000 })
        const refused = /members of group caddy \(Caddy\) cannot reach/.test(check.stdout)
        assert.equal(refused, !reachable, `${what}: check says ${check.stdout}`)
        if (reachable) continue
        assert.equal(check.status, 1)
        for (const key of ['listen', 'access_log']) assert.match(check.stdout, new RegExp(`PROBLEM  ${key}: members of group caddy \\(Caddy\\) cannot reach ${dir}/`))
        const served = spawnSync(process.execPath, [MAIN, 'serve', '--config', file], { encoding: 'utf8', timeout: 60_000 })
        assert.equal(served.status, 1)
        assert.match(served.stderr, new RegExp(`cannot start: listen: members of group caddy \\(Caddy\\) cannot reach ${dir}/sidecar.sock: ${dir} is mode 0${mode.toString(8)}`))
      }
    } finally {
      probe.close()
    }
  })
})
