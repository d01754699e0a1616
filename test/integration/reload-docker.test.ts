/**
 * Reload replacing a provider instance against a real dockerd: a changed `providers.docker`
 * block swaps in a new instance without a routing gap (the running container stays routed, its
 * in-flight count carries over, the new settings apply), and the new instance follows events.
 */
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { loadConfig } from '../../sidecar/config/load.js'
import { type Sidecar, startSidecar } from '../../sidecar/daemon.js'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort, tempDir } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

const skip = await dockerSkip()

describe('reload replaces the docker provider', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  const p = docker.run
  const tmp = tempDir('relight-rld-')
  const file = join(tmp.dir, 'relight.yaml')
  let sidecar: Sidecar | undefined
  const config = (idle: string) =>
    `listen: 127.0.0.1:0\nstate_dir: ${tmp.dir}/state\nresync_interval: 1h\nproviders:\n  docker: { socket: ${DOCKER_SOCKET}, label_prefix: ${p}, stop_timeout: 1s, idle_timeout: ${idle} }\n`
  const auth = (host: string) => sidecar?.app.inject({ url: '/_relight/auth', headers: { host } })

  before(async () => {
    await docker.importImage()
  })
  after(async () => {
    await sidecar?.close()
    await docker.cleanup()
    tmp.remove()
  })

  it('keeps the container routed across the swap, with its in-flight count and the new idle_timeout', async () => {
    const port = await freePort()
    await docker.container({ cmd: docker.httpd(port), labels: { [`${p}.domain`]: 'one.localhost', [`${p}.port`]: String(port) } })
    writeFileSync(file, config('1h'))
    sidecar = await startSidecar(loadConfig(file), { logger: pino({ level: 'silent' }), baseDir: tmp.dir, configFile: file })
    const before = sidecar.registry.index.resolve('one.localhost')
    assert.equal(before?.phase, 'running')
    before?.started(true)
    const oldProvider = before?.provider

    writeFileSync(file, config('2h'))
    const result = await sidecar.reload()
    assert.ok(result.ok)
    assert.deepEqual(result.summary.providers.replaced, ['docker'])
    const after = sidecar.registry.index.resolve('one.localhost')
    assert.ok(after && after !== before)
    assert.notEqual(after.provider, oldProvider)
    assert.equal(after.key, before?.key)
    assert.equal(after.inflight, 1, 'the request in flight is still counted')
    assert.equal(after.settings.idle_timeout, 2 * 3600_000)
    const res = await auth('one.localhost')
    assert.equal(res?.statusCode, 200)
    assert.equal(res?.headers['x-relight-upstream'], `127.0.0.1:${port}`)

    // the new instance follows the engine's events (resync is 1 h: only events can tell it)
    const port2 = await freePort()
    await docker.container({ cmd: docker.httpd(port2), labels: { [`${p}.domain`]: 'two.localhost', [`${p}.port`]: String(port2) } })
    await until(() => sidecar?.registry.index.resolve('two.localhost'), 'the new instance to see a new container', 20_000)
  })
})
