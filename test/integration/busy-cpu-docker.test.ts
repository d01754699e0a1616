/**
 * busy_cpu with real dockerd (issue 26): a container that burns CPU with no HTTP traffic is kept
 * awake (reason busy), and put to sleep once its job is over. The setting comes from a label
 * here, as most Docker users will write it.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { DOCKER_SOCKET, dockerSkip, TestDocker } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = await dockerSkip()
/** How long the container's job burns a core after it starts. */
const BURN_S = 8

describe('busy_cpu: a Docker container busy with no HTTP traffic', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  const p = docker.run
  let sc: TestSidecar
  const events: { at: number; event: LifecycleEvent }[] = []
  let started = 0

  before(async () => {
    await docker.importImage()
    const port = await freePort()
    started = Date.now()
    await docker.container({
      cmd: ['busybox', 'sh', '-c', `busybox httpd -p 127.0.0.1:${port} -h /www; busybox timeout ${BURN_S} sh -c 'while :; do :; done'; exec busybox sleep 100000`],
      labels: { [`${p}.domain`]: 'job.localhost', [`${p}.port`]: String(port), [`${p}.busy_cpu`]: '5%' },
    })
    sc = await startTestSidecar(
      ['min_idle_timeout: 1s', 'defaults: { idle_timeout: 2s, wake_timeout: 20s }', 'providers:', `  docker: { socket: ${DOCKER_SOCKET}, label_prefix: ${p}, stop_timeout: 2s }`, ''].join('\n'),
      { accessLog: false },
    )
    sc.sidecar.registry.events.subscribe((event) => void events.push({ at: Date.now(), event }))
  })
  after(async () => {
    await sc?.close()
    await docker.cleanup()
  })

  it('refuses to sleep with reason busy while the job burns CPU, and sleeps after it ends', async () => {
    const job = () => [...sc.sidecar.registry.all()].find((b) => b.info.hosts.includes('job.localhost'))
    assert.equal(job()?.settings.busy_cpu, 5, 'read from the label')
    await until(() => events.some((e) => e.event.type === 'sleep.refused' && e.event.reason === 'busy'), 'a busy refusal', 20_000)
    assert.equal(job()?.phase, 'running')
    await until(() => job()?.phase === 'asleep', 'the container to sleep once its job ended', 60_000)
    const slept = events.find((e) => e.event.type === 'sleep.done')
    assert.ok(slept && slept.at - started >= BURN_S * 1000, `slept ${slept ? slept.at - started : '?'} ms after start, the job burnt ${BURN_S} s`)
  })
})
