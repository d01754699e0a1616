/** Docker provider stats() (for the heartbeat) against real dockerd, and the figures' arithmetic. */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { CpuRate } from '../../sidecar/providers/kit/cpu-rate.js'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import { dockerFigures, memoryBytes } from '../../sidecar/providers/docker/container-stats.js'
import { DockerProvider } from '../../sidecar/providers/docker/provider.js'
import { isRelightError } from '../../sidecar/core/errors.js'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { until } from '../helpers/wait.js'

describe('docker stats figures', () => {
  it('memory without page cache; CPU from the engine delta first, then between calls', () => {
    assert.equal(memoryBytes({ memory_stats: { usage: 10_000_000, stats: { inactive_file: 2_000_000 } } }), 8_000_000)
    assert.equal(memoryBytes({ memory_stats: { usage: 10_000_000, stats: { total_inactive_file: 1_000_000 } } }), 9_000_000)
    const rate = new CpuRate()
    const first = dockerFigures(
      {
        read: '2026-01-01T00:00:00Z',
        cpu_stats: { cpu_usage: { total_usage: 3e9 }, system_cpu_usage: 20e9, online_cpus: 2 },
        precpu_stats: { cpu_usage: { total_usage: 2e9 }, system_cpu_usage: 10e9 },
        memory_stats: { usage: 50 * 1024 * 1024 },
      },
      rate,
      'c',
    )
    assert.deepEqual(first, { cpu_pct: 20, mem_mb: 50 }) // 1 s of 10 s host CPU time over 2 CPUs
    // 0.5 s of CPU over the 1 s between two calls
    assert.equal(dockerFigures({ read: '2026-01-01T00:00:01Z', cpu_stats: { cpu_usage: { total_usage: 3.5e9 } } }, rate, 'c').cpu_pct, 50)
    assert.deepEqual(dockerFigures({ read: '0001-01-01T00:00:00Z' }, rate, 'c'), { cpu_pct: 0, mem_mb: 0 })
  })
})

const skip = await dockerSkip()

describe('docker provider stats (real dockerd)', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  before(async () => {
    await docker.importImage()
  })
  after(async () => {
    await docker.cleanup()
  })

  it('reports a running container\'s memory, zero once stopped, not found once removed', async () => {
    const port = await freePort()
    const id = await docker.container({ cmd: docker.busyHttpd(port), labels: { [`${docker.run}.domain`]: 'stats.localhost', [`${docker.run}.port`]: String(port) } })
    const provider = new DockerProvider(dockerConfigSchema.parse({ socket: DOCKER_SOCKET, label_prefix: docker.run, stop_timeout: '2s' }), pino({ level: 'silent' }))
    try {
      await provider.wake(id, AbortSignal.timeout(30_000))
      const running = await provider.stats(id, AbortSignal.timeout(10_000))
      assert.ok(running.mem_mb > 0, `httpd uses memory (got ${running.mem_mb})`)
      // A busy container reads above 0 once the engine's counter moved between two calls; a
      // broken figure (NaN reports as 0) never does.
      await until(async () => (await provider.stats(id, AbortSignal.timeout(10_000))).cpu_pct > 0, 'a busy container\'s CPU to read above 0', 20_000)
      await provider.sleep(id, 'stop', AbortSignal.timeout(30_000))
      assert.deepEqual(await provider.stats(id, AbortSignal.timeout(10_000)), { cpu_pct: 0, mem_mb: 0 })
      await docker.remove(id)
      await assert.rejects(provider.stats(id, AbortSignal.timeout(10_000)), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
    } finally {
      await provider.close()
    }
  })
})
