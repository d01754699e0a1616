/**
 * `relight-sidecar health` against a real sidecar process: the exec probe the container image's
 * HEALTHCHECK and the Kubernetes manifests use.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { chmodSync, writeFileSync } from 'node:fs'
import { createServer, type Socket } from 'node:net'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { stopChild } from '../helpers/caddy.js'
import { freePort, tempDir } from '../helpers/net.js'
import { nobodySkip } from '../helpers/nobody.js'
import { MAIN, startSidecarProcess } from '../helpers/sidecar-process.js'

const APP = fileURLToPath(new URL('../../../test/fixtures/http-app.mjs', import.meta.url))

/** `relight-sidecar health …` as a separate process (never blocking this one's event loop). */
function health(...args: string[]): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  return run([process.execPath], args)
}

/** `relight-sidecar health …` as the local user nobody (README: `runuser -u caddy -- relight-sidecar health …`). */
function healthAsNobody(...args: string[]): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  return run(['setpriv', '--reuid=nobody', '--regid=nogroup', '--clear-groups', '--', process.execPath], args)
}

function run(command: string[], args: string[]): Promise<{ code: number | null; out: string; err: string; ms: number }> {
  const started = Date.now()
  const [program, ...pre] = command as [string, ...string[]]
  const child = spawn(program, [...pre, MAIN, 'health', ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr.on('data', (d: Buffer) => (err += d.toString()))
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000)
  return new Promise((resolve) =>
    child.once('exit', (code) => {
      clearTimeout(killer)
      resolve({ code, out, err, ms: Date.now() - started })
    }),
  )
}

describe('relight-sidecar health', () => {
  const tmp = tempDir('relight-health-')
  after(() => tmp.remove())

  async function running(name: string, yaml: string) {
    const file = join(tmp.dir, `${name}.yaml`)
    writeFileSync(file, yaml)
    const sc = await startSidecarProcess(file)
    after(() => stopChild(sc.child))
    await sc.waitFor((l) => l.msg === 'relight-sidecar listening', 'the sidecar to listen')
    return file
  }
  const processApp = async () =>
    `providers:\n  process:\n    apps:\n      - { name: a, hosts: [a.localhost], command: [${process.execPath}, ${APP}], port: ${await freePort()} }\n`

  it('exits 0 with one line when the sidecar answers ok (wildcard listen asked on loopback)', async () => {
    const port = await freePort()
    const file = await running('tcp', `listen: 0.0.0.0:${port}\n${await processApp()}`)
    const r = await health('--config', file)
    assert.equal(r.code, 0, r.out + r.err)
    assert.equal(r.out, `healthy: http://127.0.0.1:${port}: 1 backend(s), access_log not configured\n`)
    assert.equal(r.err, '')
  })

  it('asks over a unix socket when listen is unix:/path', async () => {
    const sock = join(tmp.dir, 'sidecar.sock')
    const file = await running('unix', `listen: unix:${sock}\n${await processApp()}`)
    const r = await health('-c', file)
    assert.equal(r.code, 0, r.out + r.err)
    assert.match(r.out, new RegExp(`^healthy: unix:${sock}: 1 backend\\(s\\)`))
  })

  it('exits 1 on degraded (a provider cannot be listed), 0 with --degraded-ok', async () => {
    const file = await running('degraded', `listen: 127.0.0.1:${await freePort()}\nproviders:\n  docker:\n    socket: ${tmp.dir}/no-docker.sock\n`)
    const strict = await health('--config', file)
    assert.equal(strict.code, 1, strict.out + strict.err)
    assert.match(strict.err, /^degraded: .*failing: docker \(the docker socket .*no-docker\.sock does not exist/)
    const live = await health('--config', file, '--degraded-ok')
    assert.equal(live.code, 0, live.out + live.err)
    assert.match(live.out, /^degraded: /)
  })

  it('exits 1 when nothing listens there', async () => {
    const port = await freePort()
    const file = join(tmp.dir, 'down.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\n${await processApp()}`)
    const r = await health('--config', file)
    assert.equal(r.code, 1)
    assert.equal(r.err, `unreachable: http://127.0.0.1:${port}: ECONNREFUSED (connect ECONNREFUSED 127.0.0.1:${port})\n`)
  })

  it('--wait asks again until the sidecar answers, or gives up after --timeout', async () => {
    const port = await freePort()
    const file = join(tmp.dir, 'later.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\n${await processApp()}`)
    const gaveUp = await health('--config', file, '--wait', '--timeout', '600ms')
    assert.equal(gaveUp.code, 1)
    assert.match(gaveUp.err, /^unreachable: .*ECONNREFUSED.*\(still, after waiting 600 ms\)\n$/)
    // Asked before the sidecar exists; answered once it listens.
    const waiting = health('--config', file, '--wait', '--timeout', '60s')
    const sc = await startSidecarProcess(file)
    after(() => stopChild(sc.child))
    const r = await waiting
    assert.equal(r.code, 0, r.out + r.err)
    assert.match(r.out, /^healthy: /)
  })

  it('exits 1 within --timeout when the listener never answers', async () => {
    const sockets = new Set<Socket>()
    const silent = createServer((s) => sockets.add(s)) // accepts, reads nothing, answers nothing
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    after(() => {
      for (const s of sockets) s.destroy()
      silent.close()
    })
    const port = (silent.address() as { port: number }).port
    const file = join(tmp.dir, 'silent.yaml')
    writeFileSync(file, `listen: 127.0.0.1:${port}\n${await processApp()}`)
    const r = await health('--config', file, '--timeout', '300ms')
    assert.equal(r.code, 1, r.out + r.err)
    assert.equal(r.err, `unhealthy: http://127.0.0.1:${port} did not answer within 300 ms\n`)
    assert.ok(sockets.size > 0, 'it did connect')
  })

  it('sends no token, so a user who cannot read admin.token_file still gets an answer; a broken config still fails', { skip: nobodySkip('health') }, async () => {
    chmodSync(tmp.dir, 0o755) // nobody reads the config file, not the token file
    const tokenFile = join(tmp.dir, 'admin-token')
    writeFileSync(tokenFile, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 })
    const port = await freePort()
    const file = await running('token-file', `listen: 127.0.0.1:${port}\nadmin: { token_file: ${tokenFile} }\n${await processApp()}`)
    chmodSync(file, 0o644)
    const r = await healthAsNobody('--config', file)
    assert.equal(r.code, 0, r.out + r.err)
    assert.equal(r.out, `healthy: http://127.0.0.1:${port}: 1 backend(s), access_log not configured\n`)
    // the rest of the config is still checked, and a relative token_file is still refused
    const broken = join(tmp.dir, 'token-file-broken.yaml')
    writeFileSync(broken, `listen: 127.0.0.1:${port}\nadmin: { token_file: ${tokenFile} }\nidle_timout: 5m\n`, { mode: 0o644 })
    const bad = await healthAsNobody('--config', broken)
    assert.equal(bad.code, 1, bad.out + bad.err)
    assert.match(bad.err, /invalid configuration\n.*\n  - line 3: idle_timout: unknown key "idle_timout"/)
    const relative = join(tmp.dir, 'token-file-relative.yaml')
    writeFileSync(relative, `listen: 127.0.0.1:${port}\nadmin: { token_file: admin-token }\n`, { mode: 0o644 })
    const rel = await healthAsNobody('--config', relative)
    assert.equal(rel.code, 1, rel.out + rel.err)
    assert.match(rel.err, /line 2: admin\.token_file: use an absolute path \(got admin-token\)/)
  })

  it('refuses a bad --timeout and --timeout on another command', async () => {
    const file = join(tmp.dir, 'down.yaml')
    const bad = await health('--config', file, '--timeout', '5')
    assert.equal(bad.code, 2)
    assert.match(bad.err, /--timeout: "5" is not a duration/)
    const r = spawn(process.execPath, [MAIN, 'check', '--config', file, '--timeout', '1s'])
    const code = await new Promise((res) => r.once('exit', res))
    assert.equal(code, 2)
  })
})
