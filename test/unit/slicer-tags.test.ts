import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { HostIndex } from '../../sidecar/core/host-index.js'
import { slicerConfigSchema } from '../../sidecar/providers/slicer/config.js'
import { nodeAddress, nodeGroup, nodeState, nodeToBackend } from '../../sidecar/providers/slicer/nodes.js'
import { parseTags } from '../../sidecar/providers/slicer/tags.js'
import { wakeOps } from '../../sidecar/providers/slicer/vm-wake.js'

const config = slicerConfigSchema.parse({ url: '/run/slicer.sock', host_group: 'apps' })

describe('slicer tags', () => {
  it('splits host tags from relight.* settings and reports what it ignores', () => {
    const t = parseTags(['myapp', 'myapp.com', '*.preview.example.com', 'relight.port=3000', 'relight.sleep=suspend', 'relight.idle_timeout=10m', 'team=blue', 'relight.prot=1', 'not a host!', 'relight.port=99999'])
    assert.deepEqual(t.hosts, ['myapp', 'myapp.com', '*.preview.example.com'])
    assert.equal(t.port, 3000)
    assert.deepEqual(t.settings, { sleep: 'suspend', idle_timeout: 600_000 })
    assert.equal(t.problems.length, 3, t.problems.join('\n'))
    assert.match(t.problems.join('\n'), /relight\.prot/)
    assert.match(t.problems.join('\n'), /not a host!/)
    assert.match(t.problems.join('\n'), /relight\.port=99999/)
  })

  it('ignores non-string tags and a missing tag list', () => {
    assert.deepEqual(parseTags(undefined).hosts, [])
    assert.deepEqual(parseTags([1, null, 'ok.example.com']).hosts, ['ok.example.com'])
  })

  it('matches an exact host tag first, then a first-label tag only under base_domains', () => {
    const a = nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', status: 'Running', tags: ['myapp', 'myapp.com'] }, config, undefined).info
    const b = nodeToBackend({ hostname: 'apps-2', ip: '127.0.0.3', status: 'Running', tags: ['myapp.apps.example.com'] }, config, undefined).info
    const c = nodeToBackend({ hostname: 'apps-3', ip: '127.0.0.4', status: 'Running', tags: ['other'] }, config, undefined).info
    const index = new HostIndex(
      [a, b, c].map((info) => ({ target: info.id, key: info.id, hosts: info.hosts })),
      ['apps.example.com'],
    )
    assert.equal(index.resolve('myapp.com'), 'apps-1') // exact tag
    assert.equal(index.resolve('myapp.apps.example.com'), 'apps-2') // exact beats first label
    assert.equal(index.resolve('other.apps.example.com'), 'apps-3') // first label under a base domain
    assert.equal(index.resolve('other.attacker.example'), undefined) // not under a base domain
    assert.equal(index.resolve('x.other.apps.example.com'), undefined) // only the first label
    assert.equal(index.resolve('other'), undefined)
  })
})

describe('slicer nodes', () => {
  it('routes to ip:app_port, or to the relight.port tag', () => {
    assert.deepEqual(nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a'] }, config, undefined).info.upstreams, ['127.0.0.2:8080'])
    assert.deepEqual(nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a', 'relight.port=3000'] }, config, undefined).info.upstreams, ['127.0.0.2:3000'])
    const custom = slicerConfigSchema.parse({ url: '/s.sock', app_port: 9000 })
    assert.deepEqual(nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2/8', tags: ['a'] }, custom, undefined).info.upstreams, ['127.0.0.2:9000'])
    assert.deepEqual(nodeToBackend({ hostname: 'apps-1', ip: '::1', tags: ['a'] }, custom, undefined).info.upstreams, ['[::1]:9000'])
    assert.deepEqual(nodeToBackend({ hostname: 'apps-1', ip: 'nonsense', tags: ['a'] }, custom, undefined).info.upstreams, [])
  })

  it('strips a CIDR suffix and refuses what is not an address', () => {
    assert.equal(nodeAddress('192.0.2.7/24'), '192.0.2.7')
    assert.equal(nodeAddress('127.0.0.1'), '127.0.0.1')
    assert.equal(nodeAddress('evil/../x'), undefined)
    assert.equal(nodeAddress(undefined), undefined)
  })

  it('maps status to state; a VM it suspended reads as suspended, a missing status as unknown', () => {
    assert.equal(nodeState('Running', undefined), 'running')
    assert.equal(nodeState('Paused', undefined), 'paused')
    assert.equal(nodeState('Stopped', undefined), 'stopped')
    assert.equal(nodeState('Stopped', 'suspend'), 'suspended')
    assert.equal(nodeState(undefined, undefined), 'unknown')
  })

  it('takes the host group from the field, else from the hostname', () => {
    assert.equal(nodeGroup({ hostname: 'x-1', hostgroup: 'apps' }), 'apps')
    assert.equal(nodeGroup({ hostname: 'my-apps-12' }), 'my-apps')
    assert.equal(nodeGroup({ hostname: 'solo' }), undefined)
  })

  it('replaces sleep=stop by pause on a non-persistent VM, with a warning; keeps it on a persistent one', () => {
    const eph = nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a', 'relight.sleep=stop'] }, config, undefined)
    assert.equal(eph.info.settings.sleep, 'pause')
    assert.match(eph.warnings.join('\n'), /persistent/)
    const kept = nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a', 'relight.sleep=stop'], persistent: true }, config, undefined)
    assert.equal(kept.info.settings.sleep, 'stop')
    assert.deepEqual(kept.warnings, [])
  })

  it('sleeps with pause unless told otherwise (never the global default stop) and carries block overrides', () => {
    const block = slicerConfigSchema.parse({ url: '/s.sock', sleep: 'suspend', idle_timeout: '2m', wake_timeout: '45s' })
    const s = nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a'] }, config, undefined).info.settings
    assert.equal(s.sleep, 'pause')
    assert.equal(s.fallback_sleep, 'pause')
    const o = nodeToBackend({ hostname: 'apps-1', ip: '127.0.0.2', tags: ['a', 'relight.idle_timeout=1m'] }, block, undefined).info.settings
    assert.deepEqual([o.sleep, o.idle_timeout, o.wake_timeout], ['suspend', 60_000, 45_000])
  })

  it('picks the wake call from the state and what the provider did to it', () => {
    assert.deepEqual(wakeOps('running', false, undefined), [])
    assert.deepEqual(wakeOps('paused', false, undefined), ['resume'])
    assert.deepEqual(wakeOps('suspended', false, 'suspend'), ['restore'])
    assert.deepEqual(wakeOps('stopped', true, 'stop'), ['relaunch'])
    assert.deepEqual(wakeOps('stopped', true, undefined), ['restore', 'relaunch'])
    assert.deepEqual(wakeOps('stopped', false, undefined), ['restore'])
  })
})
