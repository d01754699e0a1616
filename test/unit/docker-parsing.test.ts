import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import { fileURLToPath } from 'node:url'
import pino from 'pino'
import { isRelightError } from '../../sidecar/core/errors.js'
import { configSchema } from '../../sidecar/config/schema.js'
import { dockerConfigSchema } from '../../sidecar/providers/docker/config.js'
import type { ContainerInspect } from '../../sidecar/providers/moby/containers.js'
import { groupOf, readLabels } from '../../sidecar/providers/kit/labels.js'
import { DockerProvider, backendState } from '../../sidecar/providers/docker/provider.js'
import { chooseUpstream } from '../../sidecar/providers/moby/upstream.js'
import { tempDir } from '../helpers/net.js'

const fixture = (name: string): ContainerInspect =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`../../../test/fixtures/docker/${name}`, import.meta.url)), 'utf8')) as ContainerInspect

describe('docker labels', () => {
  it('reads domains, port, settings and group', () => {
    const facts = readLabels(
      {
        'relight.domain': ' a.example.com, b.example.com ,',
        'relight.port': '3000',
        'relight.idle_timeout': '90s',
        'relight.sleep': 'pause',
        'relight.strategy': 'waiting_page',
        'relight.group': 'shop',
        'com.docker.compose.project': 'ignored-when-group-set',
      },
      'relight',
    )
    assert.deepEqual(facts.hosts, ['a.example.com', 'b.example.com'])
    assert.equal(facts.port, 3000)
    assert.equal(facts.group, 'shop')
    assert.deepEqual(facts.settings, { idle_timeout: 90_000, sleep: 'pause', strategy: 'waiting_page' })
    assert.deepEqual(facts.problems, [])
  })

  it('uses the compose project as the group, and a custom prefix', () => {
    assert.equal(groupOf({ 'com.docker.compose.project': 'blog' }, 'relight'), 'blog')
    const facts = readLabels({ 'apps.domain': 'x.localhost', 'relight.domain': 'y.localhost' }, 'apps')
    assert.deepEqual(facts.hosts, ['x.localhost'])
    assert.equal(facts.group, undefined)
  })

  it('reports unusable labels in words and ignores them', () => {
    const facts = readLabels({ 'relight.domain': 'a.localhost', 'relight.port': '80a', 'relight.sleep': 'checkpoint', 'relight.idle_timeout': '300' }, 'relight')
    assert.equal(facts.port, undefined)
    assert.deepEqual(facts.settings, {})
    assert.equal(facts.problems.length, 3)
  })
})

describe('docker upstream rules', () => {
  it('host network → 127.0.0.1:port', () => {
    assert.deepEqual(chooseUpstream(fixture('inspect-host.json'), 18555), { upstream: '127.0.0.1:18555', rule: 'host-network' })
  })

  it('a published port → the host binding (running and stopped)', () => {
    assert.deepEqual(chooseUpstream(fixture('inspect-bridge-published.json'), 80), { upstream: '127.0.0.1:18556', rule: 'published' })
    assert.deepEqual(chooseUpstream(fixture('inspect-bridge-stopped.json'), 80), { upstream: '127.0.0.1:18556', rule: 'published' })
  })

  it('an unpublished port on a bridge → the container IP; stopped → none', () => {
    assert.deepEqual(chooseUpstream(fixture('inspect-bridge-published.json'), 8080), { upstream: '172.17.0.2:8080', rule: 'container-ip' })
    assert.deepEqual(chooseUpstream(fixture('inspect-bridge-stopped.json'), 8080), { rule: 'none' })
  })

  it('0.0.0.0 and :: bindings become loopback', () => {
    const c = { HostConfig: { NetworkMode: 'default' }, NetworkSettings: { Ports: { '80/tcp': [{ HostIp: '::', HostPort: '8081' }] }, Networks: {} } }
    assert.equal(chooseUpstream(c, 80).upstream, '[::1]:8081')
    const d = { HostConfig: { NetworkMode: 'default' }, NetworkSettings: { Ports: { '80/tcp': [{ HostIp: '0.0.0.0', HostPort: '8082' }] }, Networks: {} } }
    assert.equal(chooseUpstream(d, 80).upstream, '127.0.0.1:8082')
  })

  it('several networks: the configured one wins over a published port; without it the first by name, with a warning', () => {
    const c = {
      HostConfig: { NetworkMode: 'front' },
      NetworkSettings: {
        Ports: { '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '9000' }] },
        Networks: { front: { IPAddress: '172.20.0.5' }, back: { IPAddress: '172.21.0.5' } },
      },
    }
    assert.deepEqual(chooseUpstream(c, 80, 'back'), { upstream: '172.21.0.5:80', rule: 'network' })
    assert.deepEqual(chooseUpstream(c, 80), { upstream: '127.0.0.1:9000', rule: 'published' })
    const unpublished = { ...c, NetworkSettings: { ...c.NetworkSettings, Ports: {} } }
    const choice = chooseUpstream(unpublished, 80)
    assert.equal(choice.upstream, '172.21.0.5:80')
    assert.equal(choice.rule, 'container-ip')
    assert.match(choice.warning ?? '', /several networks/)
    assert.match(chooseUpstream(unpublished, 80, 'other').warning ?? '', /not on network "other"/)
  })

  it('network_mode none or container:… has no address', () => {
    assert.equal(chooseUpstream({ HostConfig: { NetworkMode: 'none' } }, 80).rule, 'none')
    assert.equal(chooseUpstream({ HostConfig: { NetworkMode: 'container:abc' } }, 80).upstream, undefined)
  })
})

describe('docker provider (no engine)', () => {
  it('maps container states', () => {
    assert.equal(backendState('running'), 'running')
    assert.equal(backendState('paused'), 'paused')
    assert.equal(backendState('exited'), 'stopped')
    assert.equal(backendState('created'), 'stopped')
    assert.equal(backendState('restarting'), 'starting')
  })

  it('builds a backend from an inspect answer', () => {
    const provider = new DockerProvider(dockerConfigSchema.parse({ idle_timeout: '2m' }), pino({ level: 'silent' }))
    const info = provider.toBackend(fixture('inspect-bridge-stopped.json'))
    assert.ok(info)
    assert.equal(info.name, 'try2')
    assert.deepEqual(info.hosts, ['b.localhost'])
    assert.equal(info.state, 'stopped')
    assert.deepEqual(info.upstreams, ['127.0.0.1:18556']) // single exposed port 80, published
    assert.equal(info.settings.idle_timeout, 120_000)
    assert.equal(info.details?.exit_code, 137)
    void provider.close()
  })

  it('a missing socket: list and wake reject with RELIGHT_ERR_PROVIDER_UNAVAILABLE, check says why in words', async () => {
    const tmp = tempDir('relight-nodocker-')
    const provider = new DockerProvider(dockerConfigSchema.parse({ socket: `${tmp.dir}/docker.sock` }), pino({ level: 'silent' }))
    try {
      await assert.rejects(provider.list(AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'))
      await assert.rejects(provider.wake('abc', AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'))
      const results = await provider.check(AbortSignal.timeout(5000))
      assert.equal(results.length, 1)
      assert.equal(results[0]?.ok, false)
      assert.match(results[0]?.message ?? '', /does not exist: is the docker daemon running/)
    } finally {
      await provider.close()
      tmp.remove()
    }
    await assert.rejects(provider.list(AbortSignal.timeout(5000)), (e) => isRelightError(e, 'RELIGHT_ERR_CLOSED'))
  })
})

describe('docker config', () => {
  it('has defaults and rejects unknown keys and unsupported modes', () => {
    const cfg = configSchema.parse({ providers: { docker: {} } }).providers.docker?.[0]
    assert.ok(cfg)
    assert.equal(cfg.socket, '/var/run/docker.sock')
    assert.equal(cfg.label_prefix, 'relight')
    assert.equal(cfg.stop_timeout, 10_000)
    assert.equal(cfg.auto_sleep_on_start, true)
    assert.equal(dockerConfigSchema.safeParse({ sokcet: '/x' }).success, false)
    assert.equal(dockerConfigSchema.safeParse({ sleep: 'checkpoint' }).success, false)
    assert.equal(dockerConfigSchema.parse({ socket: 'tcp://127.0.0.1:2375', network: 'web', idle_timeout: '1m' }).idle_timeout, 60_000)
  })
})
