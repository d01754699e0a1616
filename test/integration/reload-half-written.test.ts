/**
 * A config file written in place is not applied half-written (issue 23 item 7). A writer
 * process truncates the file and writes it cut at a line boundary (valid YAML with one app
 * instead of three), keeps it open, and a SIGHUP arrives: the reload must wait for the writer to
 * close the file and apply the whole file — never the half that removes two apps.
 * Synchronised on the writer's output and the sidecar's log lines.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { request } from 'undici'
import { freePort, tempDir } from '../helpers/net.js'
import { startSidecarProcess, stopSidecarProcess, type SidecarProcess } from '../helpers/sidecar-process.js'
import { until } from '../helpers/wait.js'

const WRITER = `
const fs = require('fs')
const [file, first, rest] = process.argv.slice(1)
const fd = fs.openSync(file, 'r+')
fs.ftruncateSync(fd, 0)
fs.writeSync(fd, first, 0)
console.log('half')
process.stdin.once('data', () => {
  fs.writeSync(fd, rest, Buffer.byteLength(first))
  fs.closeSync(fd)
  console.log('done')
  process.exit(0)
})
`

describe('a half-written config file is not applied', () => {
  const tmp = tempDir('relight-half-')
  let sc: SidecarProcess | undefined
  after(async () => {
    await stopSidecarProcess(sc)
    tmp.remove()
  })

  it('the reload waits for the writer to close the file, then applies all of it', async () => {
    const listen = await freePort()
    const file = join(tmp.dir, 'relight.yaml')
    const app = async (name: string) => `      - { name: ${name}, hosts: [${name}.localhost], command: [sleep, "60"], port: ${await freePort()} }\n`
    const head = `listen: 127.0.0.1:${listen}\nstate_dir: ${tmp.dir}/state\nproviders:\n  process:\n    apps:\n`
    const [a, b, c] = [await app('a'), await app('b'), await app('c')]
    writeFileSync(file, head + a + b + c)
    sc = await startSidecarProcess(file)
    const ask = async (name: string) => {
      const res = await request(`http://127.0.0.1:${listen}/_relight/ask?domain=${name}.localhost`)
      await res.body.dump()
      return res.statusCode
    }
    assert.deepEqual([await ask('a'), await ask('b'), await ask('c')], [200, 200, 200])

    // The same three apps, b's port changed: written in two parts, cut after app a's line.
    const b2 = await app('b')
    const writer = spawn(process.execPath, ['-e', WRITER, file, head + a, b2 + c], { stdio: ['pipe', 'pipe', 'inherit'] })
    let out = ''
    writer.stdout?.on('data', (d: Buffer) => (out += d.toString()))
    after(() => {
      if (writer.exitCode === null) writer.kill('SIGKILL')
    })
    await until(() => out.includes('half'), 'the writer to write the first half')
    sc.child.kill('SIGHUP')
    const first = await sc.waitFor((l) => l.msg === 'config file is open for writing: the reload waits until it is closed' || String(l.msg).startsWith('config applied'), 'the reload to wait or apply')
    assert.equal(first.msg, 'config file is open for writing: the reload waits until it is closed', `the half-written file was applied: ${JSON.stringify(first)}`)
    assert.deepEqual((first.writers as { pid: number }[]).map((w) => w.pid), [writer.pid])
    writer.stdin?.write('go\n')
    await until(() => out.includes('done'), 'the writer to finish')
    const applied = await sc.waitFor((l) => String(l.msg).startsWith('config applied'), 'the reload to apply the whole file')
    assert.deepEqual((applied.details as { process?: { removed: string[] } }).process?.removed ?? [], [], 'no app removed')
    assert.deepEqual([await ask('a'), await ask('b'), await ask('c')], [200, 200, 200])
  })
})
