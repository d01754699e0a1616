/**
 * startup_grace with real dockerd (issue 26): a container started by hand while the sidecar runs
 * (`docker start`, a deploy) is not put to sleep before its grace, though idle long before; a
 * `sleep.refused` event says why once, and it sleeps when the grace ends.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { DOCKER_SOCKET, dockerSkip, TestDocker } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = await dockerSkip()
const GRACE_MS = 4000

describe('startup_grace: a Docker container started outside the sidecar', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  const p = docker.run
  let sc: TestSidecar
  let id = ''
  const events: { at: number; event: LifecycleEvent }[] = []

  before(async () => {
    await docker.importImage()
    const port = await freePort()
    id = await docker.container({
      cmd: docker.httpd(port),
      labels: { [`${p}.domain`]: 'deploy.localhost', [`${p}.port`]: String(port), [`${p}.idle_timeout`]: '1s', [`${p}.startup_grace`]: '4s' },
      created: true,
    })
    sc = await startTestSidecar(['min_idle_timeout: 1s', 'defaults: { wake_timeout: 20s }', 'providers:', `  docker: { socket: ${DOCKER_SOCKET}, label_prefix: ${p}, stop_timeout: 2s }`, ''].join('\n'), {
      accessLog: false,
    })
    sc.sidecar.registry.events.subscribe((event) => void events.push({ at: Date.now(), event }))
  })
  after(async () => {
    await sc?.close()
    await docker.cleanup()
  })

  it('is left awake for startup_grace, then put to sleep', async () => {
    const app = () => [...sc.sidecar.registry.all()].find((b) => b.info.hosts.includes('deploy.localhost'))
    await until(() => app()?.phase === 'asleep', 'the created container to be listed asleep')
    const startedAt = Date.now()
    await docker.post(id, 'start') // by hand: the sidecar learns it from the engine's events
    await until(() => events.some((e) => e.event.type === 'sleep.refused' && e.event.reason === 'startup_grace'), 'the grace to be reported', 20_000)
    assert.equal(app()?.phase, 'running', 'idle past its idle_timeout, held by startup_grace')
    assert.equal(events.filter((e) => e.event.type === 'sleep.refused' && e.event.reason === 'startup_grace').length, 1, 'said once')
    await until(() => app()?.phase === 'asleep', 'the container to sleep once the grace ended', 30_000)
    const slept = events.find((e) => e.event.type === 'sleep.done')
    assert.ok(slept && slept.at - startedAt >= GRACE_MS, `slept ${slept ? slept.at - startedAt : '?'} ms after docker start (grace ${GRACE_MS} ms)`)
    assert.equal(await docker.state(id), 'exited')
  })
})
