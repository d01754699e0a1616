/**
 * Signals from the first line of serve (issue 23 item 6). The config file is a FIFO, so the
 * sidecar is held inside its config load — after the first line of serve, before anything is
 * ready — until the test writes it: opening the FIFO for writing returns only once the sidecar
 * opened it for reading. A SIGHUP sent then must neither kill it (Node's default, exit 129)
 * nor be dropped: it is applied once the sidecar is ready (the file it reads by then has an app
 * more). A SIGTERM at the same point ends it cleanly (exit 0, not killed).
 */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { open, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { MAIN } from '../helpers/sidecar-process.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const HOLD = fileURLToPath(new URL('../../../test/fixtures/hold-module-load.mjs', import.meta.url))

function serveFifo(config: string, nodeArgs: string[] = [], env: NodeJS.ProcessEnv = process.env) {
  const child = spawn(process.execPath, [...nodeArgs, MAIN, 'serve', '--config', config, '--log-format', 'json'], { stdio: ['ignore', 'pipe', 'pipe'], env })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')))
  return { child, out: () => out, exited }
}

describe('signals from the first line of serve', { timeout: 120_000 }, () => {
  const tmp = tempDir('relight-sig-')
  const children: ReturnType<typeof serveFifo>[] = []
  after(async () => {
    // A clean stop (its apps get their stop signal); SIGKILL only if it does not end in time.
    for (const c of children) {
      if (c.child.exitCode !== null || c.child.signalCode !== null) continue
      c.child.kill('SIGTERM')
      const timer = setTimeout(() => c.child.kill('SIGKILL'), 15_000)
      await c.exited
      clearTimeout(timer)
    }
    tmp.remove()
  })

  /**
   * Start serve with its module loading held (a loader hook) at daemon.js, which the program
   * loads whatever its entry looks like; resolves once the hook holds it. `go()` lets it load on.
   */
  async function heldInModuleLoad(name: string, config: string) {
    const mark = join(tmp.dir, `${name}.held`)
    const goFile = join(tmp.dir, `${name}.go`)
    const sc = serveFifo(config, ['--import', HOLD], { ...process.env, HOLD_MODULE: '/sidecar/daemon.js', HOLD_MARK_FILE: mark, HOLD_GO_FILE: goFile })
    children.push(sc)
    await until(() => existsSync(mark) || sc.child.exitCode !== null || sc.child.signalCode !== null, 'the module load to be held', 30_000)
    assert.ok(existsSync(mark), `the sidecar ended before its modules loaded:\n${sc.out()}`)
    return { sc, go: () => writeFile(goFile, 'go\n') }
  }

  it('a SIGHUP while the modules still load does not kill serve and is applied once ready', async () => {
    const port = await freePort()
    const config = join(tmp.dir, 'loading-hup.yaml')
    await writeFile(config, `listen: 127.0.0.1:${port}\nstate_dir: ${tmp.dir}/state-lh\n`)
    const { sc, go } = await heldInModuleLoad('lh', config)
    sc.child.kill('SIGHUP')
    // The kernel delivers it before the process runs any more of its code: go on at once.
    await go()
    await until(() => sc.out().includes('relight-sidecar listening') || sc.child.exitCode !== null || sc.child.signalCode !== null, 'the sidecar to listen', 60_000)
    assert.equal(sc.child.signalCode, null, `the SIGHUP killed the sidecar while it loaded its modules:\n${sc.out()}`)
    assert.equal(sc.child.exitCode, null, `the sidecar exited:\n${sc.out()}`)
    // The same file: the reload finds nothing to change, and says so.
    await until(() => sc.out().includes('"msg":"config applied: nothing changed"'), `the deferred reload to be applied; log:\n${sc.out()}`, 30_000)
    sc.child.kill('SIGTERM')
    assert.equal(await sc.exited, 0)
  })

  it('a SIGTERM while the modules still load stops serve cleanly (exit 0)', async () => {
    const config = join(tmp.dir, 'loading-term.yaml')
    await writeFile(config, `listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state-lt\n`)
    const { sc, go } = await heldInModuleLoad('lt', config)
    sc.child.kill('SIGTERM')
    await go()
    assert.equal(await sc.exited, 0, `not a clean stop:\n${sc.out()}`)
  })

  /** Start serve on a FIFO config and resolve once it is blocked reading it; the FIFO's write end. */
  async function heldInConfigLoad(name: string) {
    const fifo = join(tmp.dir, `${name}.yaml`)
    assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo')
    const sc = serveFifo(fifo)
    children.push(sc)
    // Resolves only when the sidecar has opened the FIFO (i.e. serve runs); bounded by the exit.
    const writer = await Promise.race([
      open(fifo, 'w'),
      sc.exited.then((code) => {
        throw new Error(`the sidecar exited (${code}) before reading its config:\n${sc.out()}`)
      }),
    ])
    return { fifo, sc, writer }
  }

  it('a SIGHUP during start-up is deferred and applied once ready', async () => {
    const port = await freePort()
    const head = `listen: 127.0.0.1:${port}\nstate_dir: ${tmp.dir}/state\n`
    const { fifo, sc, writer } = await heldInConfigLoad('hup')
    // What a reload will read: the same with one app. Renamed over the FIFO's name; the sidecar's
    // open FIFO is unaffected.
    const next = join(tmp.dir, 'next.yaml')
    await writeFile(next, `${head}providers:\n  process:\n    apps:\n      - { name: late, hosts: [late.localhost], command: [sleep, "60"], port: ${await freePort()} }\n`)
    await rename(next, fifo)
    sc.child.kill('SIGHUP')
    await writer.writeFile(head)
    await writer.close()
    await until(() => sc.out().includes('relight-sidecar listening') || sc.child.exitCode !== null || sc.child.signalCode !== null, 'the sidecar to listen', 30_000)
    assert.equal(sc.child.signalCode, null, `the SIGHUP killed the sidecar:\n${sc.out()}`)
    assert.equal(sc.child.exitCode, null, `the sidecar exited:\n${sc.out()}`)
    await until(() => sc.out().includes('"msg":"config applied"'), `the deferred reload to be applied; log:\n${sc.out()}`, 30_000)
    const res = await request(`http://127.0.0.1:${port}/_relight/ask?domain=late.localhost`)
    await res.body.dump()
    assert.equal(res.statusCode, 200, 'the app from the reloaded file is routable')
    sc.child.kill('SIGTERM')
    assert.equal(await sc.exited, 0)
  })

  it('a SIGTERM during start-up ends the sidecar at once with exit 0', async () => {
    const { sc, writer } = await heldInConfigLoad('term')
    sc.child.kill('SIGTERM')
    await writer.writeFile(`listen: 127.0.0.1:${await freePort()}\nstate_dir: ${tmp.dir}/state2\n`)
    await writer.close()
    // Handled at the first turn of the event loop after the config load (which may come after
    // the server started listening): a clean stop either way, never a death by signal.
    assert.equal(await sc.exited, 0, sc.out())
  })
})
