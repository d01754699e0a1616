/**
 * Two Docker provider instances (`providers.docker` as a list) on the same real dockerd, with
 * different label prefixes: each lists, routes, wakes and keys only its own containers.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { request } from 'undici'
import { DOCKER_SOCKET, TestDocker, dockerSkip } from '../helpers/docker.js'
import { freePort } from '../helpers/net.js'
import { type TestSidecar, startTestSidecar } from '../helpers/sidecar.js'

const skip = await dockerSkip()

describe('two docker provider instances on one dockerd', { skip, timeout: 120_000 }, () => {
  const docker = new TestDocker()
  const a = `${docker.run}a` // label prefix of instance docker-a
  const b = `${docker.run}b` // label prefix of instance docker-b
  let sc: TestSidecar
  let portA = 0
  let portB = 0
  let idA = ''
  let idB = ''

  const auth = async (host: string) => {
    const res = await request(`${sc.url}/_relight/auth`, { headers: { host }, headersTimeout: 60_000 })
    await res.body.dump()
    return { status: res.statusCode, upstream: res.headers['x-relight-upstream'] }
  }

  before(async () => {
    if (skip) return
    await docker.importImage()
    portA = await freePort()
    portB = await freePort()
    // Instance a's container runs; instance b's is created stopped, so routing it needs a wake.
    idA = await docker.container({ name: `seam-${docker.run}-a`, cmd: docker.httpd(portA), labels: { [`${a}.domain`]: 'one.localhost', [`${a}.port`]: String(portA) } })
    idB = await docker.container({ name: `seam-${docker.run}-b`, cmd: docker.httpd(portB), labels: { [`${b}.domain`]: 'two.localhost', [`${b}.port`]: String(portB) }, created: true })
    sc = await startTestSidecar(
      [
        'resync_interval: 1h',
        'defaults: { idle_timeout: 1h, wake_timeout: 20s }',
        'providers:',
        '  docker:',
        `    - { id: docker-a, socket: ${DOCKER_SOCKET}, label_prefix: ${a}, stop_timeout: 1s, auto_sleep_on_start: false }`,
        `    - { id: docker-b, socket: ${DOCKER_SOCKET}, label_prefix: ${b}, stop_timeout: 1s }`,
        '',
      ].join('\n'),
      { accessLog: false },
    )
  })

  after(async () => {
    await sc?.close()
    await docker.cleanup()
  })

  it('keys each container by its own instance, and each instance sees only its prefix', () => {
    const keys = [...sc.sidecar.registry.all()].map((x) => x.key).sort()
    assert.deepEqual(keys, [`docker-a:${idA}`, `docker-b:${idB}`])
    assert.deepEqual([...sc.sidecar.registry.status.keys()].sort(), ['docker-a', 'docker-b'])
    assert.equal(sc.sidecar.registry.status.get('docker-a')?.backends, 1)
    assert.equal(sc.sidecar.registry.status.get('docker-b')?.backends, 1)
  })

  it('routes each host to its own container, waking the stopped one through its instance', async () => {
    const one = await auth('one.localhost')
    assert.equal(one.status, 200)
    assert.equal(one.upstream, `127.0.0.1:${portA}`)
    const two = await auth('two.localhost')
    assert.equal(two.status, 200)
    assert.equal(two.upstream, `127.0.0.1:${portB}`)
    assert.equal(await docker.state(idB), 'running')
    const res = await request(`http://127.0.0.1:${portB}/`)
    assert.equal(res.statusCode, 200)
    await res.body.dump()
  })

  it('names both instances in healthz', async () => {
    const res = await request(`${sc.url}/_relight/healthz`)
    const body = (await res.body.json()) as { providers: Record<string, { ok: boolean; backends: number }> }
    assert.equal(body.providers['docker-a']?.ok, true)
    assert.equal(body.providers['docker-b']?.ok, true)
  })
})
