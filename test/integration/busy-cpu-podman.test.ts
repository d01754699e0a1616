/**
 * busy_cpu with a real Podman service (issue 26): like the Docker test, a container that burns
 * CPU with no HTTP traffic is kept awake (reason busy) and put to sleep once its job is over.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import type { LifecycleEvent } from '../../sidecar/core/events.js'
import { type PodmanFixture, podmanSkip, startPodman } from '../helpers/podman.js'
import { startTestSidecar, type TestSidecar } from '../helpers/sidecar.js'
import { until } from '../helpers/wait.js'

const skip = podmanSkip()
/** How long the container's job burns a core after it starts. */
const BURN_S = 8

describe('busy_cpu: a Podman container busy with no HTTP traffic', { skip, timeout: 180_000 }, () => {
  let podman: PodmanFixture
  let sc: TestSidecar
  const events: { at: number; event: LifecycleEvent }[] = []
  let started = 0

  before(async () => {
    podman = await startPodman()
    started = Date.now()
    await podman.container({
      hosts: 'job.podman.localhost',
      labels: { [`${podman.prefix}.busy_cpu`]: '5%' },
      command: (port) => ['/bin/busybox', 'sh', '-c', `busybox httpd -p 127.0.0.1:${port} -h /www; busybox timeout ${BURN_S} sh -c 'while :; do :; done'; exec busybox sleep 100000`],
    })
    sc = await startTestSidecar(
      ['min_idle_timeout: 1s', 'defaults: { idle_timeout: 2s, wake_timeout: 60s }', 'providers:', '  podman:', `    socket: ${podman.socket}`, `    label_prefix: ${podman.prefix}`, ''].join('\n'),
      { accessLog: false },
    )
    sc.sidecar.registry.events.subscribe((event) => void events.push({ at: Date.now(), event }))
  })
  after(async () => {
    await sc?.close()
    await podman?.cleanup()
  })

  it('refuses to sleep with reason busy while the job burns CPU, and sleeps after it ends', async () => {
    const job = () => [...sc.sidecar.registry.all()].find((b) => b.info.hosts.includes('job.podman.localhost'))
    assert.equal(job()?.settings.busy_cpu, 5, 'read from the label')
    await until(() => events.some((e) => e.event.type === 'sleep.refused' && e.event.reason === 'busy'), 'a busy refusal', 30_000)
    assert.equal(job()?.phase, 'running')
    await until(() => job()?.phase === 'asleep', 'the container to sleep once its job ended', 90_000)
    const slept = events.find((e) => e.event.type === 'sleep.done')
    assert.ok(slept && slept.at - started >= BURN_S * 1000, `slept ${slept ? slept.at - started : '?'} ms after start, the job burnt ${BURN_S} s`)
  })
})
