/** `npm run demo` as a user runs it (scripted with --once), and the Caddy files we ship. */
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import { caddySkip, stopChild } from '../helpers/caddy.js'

function busyPorts(ports: number[]): Promise<number[]> {
  return Promise.all(
    ports.map(
      (port) =>
        new Promise<number | undefined>((resolve) => {
          const s = createServer()
          s.once('error', () => resolve(port))
          s.listen(port, '127.0.0.1', () => s.close(() => resolve(undefined)))
        }),
    ),
  ).then((r) => r.filter((p): p is number => p !== undefined))
}

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const skip = caddySkip()

describe('shipped Caddy files and the demo', { skip }, () => {
  it('caddy/Caddyfile.example and examples/processes/Caddyfile are valid for real Caddy', () => {
    for (const file of ['caddy/Caddyfile.example', 'examples/processes/Caddyfile']) {
      const r = spawnSync('caddy', ['adapt', '--config', join(ROOT, file), '--adapter', 'caddyfile'], { encoding: 'utf8' })
      assert.equal(r.status, 0, `${file}: ${r.stderr}`)
      const json = JSON.parse(r.stdout)
      assert.ok(JSON.stringify(json).includes('/_relight/auth'), `${file} routes through the sidecar`)
    }
  })

  it('npm run demo starts Caddy and the sidecar, cold-starts an app, sees it stop and wakes it again', { timeout: 90_000 }, async (t) => {
    const busy = await busyPorts([8080, 9123, 3001, 3002])
    if (busy.length > 0 && !process.env.CI) {
      t.skip(`demo ports in use on this machine: ${busy.join(', ')}`)
      return
    }
    const child = spawn(process.execPath, [join(ROOT, 'dist/examples/demo.js'), '--once'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    t.after(() => stopChild(child)) // SIGTERM: the demo stops Caddy, the sidecar and the apps
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)))
    assert.equal(code, 0, output)
    assert.match(output, /200 in \d+ ms: hello from pid/)
    assert.match(output, /nope\.localhost → 404 RELIGHT_ERR_HOST_UNKNOWN/)
    assert.match(output, /hello asleep\s+mode=stop/)
    assert.match(output, /woke again: 200/)
  })

  it('a demo that fails once Caddy is up leaves neither Caddy nor the sidecar running', { timeout: 60_000 }, async (t) => {
    const busy = await busyPorts([8080, 9123, 3001, 3002])
    if (busy.length > 0 && !process.env.CI) {
      t.skip(`demo ports in use on this machine: ${busy.join(', ')}`)
      return
    }
    const child = spawn(process.execPath, [join(ROOT, 'dist/examples/demo.js'), '--fail-after-caddy'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    t.after(() => stopChild(child))
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const code = await new Promise<number | null>((r) => child.once('exit', (c) => r(c)))
    assert.equal(code, 1, output)
    assert.match(output, /demo failed: failing on purpose/)
    assert.deepEqual(await busyPorts([8080, 9123]), [], 'Caddy (8080) and the sidecar (9123) are gone')
  })
})
