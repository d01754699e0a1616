/** The Slicer provider against the simulator and a recording server: errors, path encoding, freshness. */
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { after, before, describe, it } from 'node:test'
import pino from 'pino'
import { isRelightError } from '../../sidecar/core/errors.js'
import type { ProviderEvent } from '../../sidecar/core/provider.js'
import { paths, SlicerClient } from '../../sidecar/providers/slicer/client.js'
import { slicerConfigSchema } from '../../sidecar/providers/slicer/config.js'
import { SlicerProvider } from '../../sidecar/providers/slicer/provider.js'
import { SlicerSimulator } from '../fakes/slicer/simulator.js'
import { freePort } from '../helpers/net.js'

const silent = pino({ level: 'silent' })
const signal = () => AbortSignal.timeout(20_000)

describe('slicer API paths are encoded', () => {
  it('encodes hostnames, groups and tags as single path segments or query values', () => {
    assert.equal(paths.vm('a/../b?x#y', 'resume'), '/vm/a%2F..%2Fb%3Fx%23y/resume')
    assert.equal(paths.vm('apps-1', 'restore', '?wait=agent'), '/vm/apps-1/restore?wait=agent')
    assert.equal(paths.groupNode('../g', 'h/1'), '/hostgroup/..%2Fg/nodes/h%2F1')
    assert.equal(paths.nodes('a&tag=b'), '/nodes?tag=a%26tag%3Db')
  })

  it('a hostile hostname from the API is never routed and never put in a path', async () => {
    const seen: string[] = []
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`)
      if (req.url === '/nodes') {
        res.setHeader('content-type', 'application/json')
        return res.end(JSON.stringify([{ hostname: '../../nodes?x=1', ip: '127.0.0.1', tags: ['evil.localhost'], status: 'Paused' }]))
      }
      res.end('{}')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
    const provider = new SlicerProvider(slicerConfigSchema.parse({ url, token: 't' }), silent)
    try {
      assert.deepEqual(await provider.list(signal()), [])
      await assert.rejects(provider.wake('../../nodes?x=1', signal()), (e: unknown) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
      assert.ok(seen.length >= 1 && seen.every((r) => r === 'GET /nodes'), seen.join(', '))
    } finally {
      await provider.close()
      server.close()
    }
  })
})

describe('slicer nodes listed without status', () => {
  it('a healthy agent counts as running: no wake call is made', async () => {
    const seen: string[] = []
    const server = createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`)
      if (req.url === '/nodes') return res.end(JSON.stringify([{ hostname: 'apps-1', ip: '127.0.0.1', tags: ['nostatus.localhost'] }]))
      res.end('{}')
    })
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    const provider = new SlicerProvider(slicerConfigSchema.parse({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' }), silent)
    try {
      assert.equal((await provider.list(signal()))[0]?.state, 'unknown')
      await provider.wake('apps-1', signal())
      assert.deepEqual(seen, ['GET /nodes', 'HEAD /vm/apps-1/health'])
    } finally {
      await provider.close()
      server.close()
    }
  })
})

describe('slicer API answers map to error codes', () => {
  for (const [status, code] of [
    [503, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE'],
    [500, 'RELIGHT_ERR_PROVIDER_FAILED'],
    [403, 'RELIGHT_ERR_PROVIDER_AUTH'],
    [404, 'RELIGHT_ERR_BACKEND_NOT_FOUND'],
  ] as const) {
    it(`HTTP ${status} on resume → ${code}`, async () => {
      const server = createServer((req, res) => {
        if (req.url === '/nodes') return res.end(JSON.stringify([{ hostname: 'apps-1', ip: '127.0.0.1', tags: ['x.localhost'], status: 'Paused' }]))
        res.statusCode = status
        res.end(JSON.stringify({ error: 'simulated', code: 'simulated' }))
      })
      server.listen(0, '127.0.0.1')
      await once(server, 'listening')
      const provider = new SlicerProvider(slicerConfigSchema.parse({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, token: 't' }), silent)
      try {
        await provider.list(signal())
        await assert.rejects(provider.wake('apps-1', signal()), (e) => isRelightError(e, code) && (status === 404 || /simulated/.test(e.message)))
      } finally {
        await provider.close()
        server.close()
      }
    })
  }
})

describe('slicer provider against the simulator', () => {
  let sim: SlicerSimulator
  let provider: SlicerProvider
  before(async () => {
    sim = await SlicerSimulator.start({ token: 'right', appPort: await freePort(), hostGroups: ['apps', 'other'] })
    provider = new SlicerProvider(slicerConfigSchema.parse({ url: sim.url, token: 'right', host_group: 'apps' }), silent)
  })
  after(async () => {
    await provider.close()
    await sim.close()
  })

  it('lists only tagged nodes of its host group, with the upstream the VM listens on', async () => {
    const a = await sim.createNode('apps', { tags: ['alpha'] })
    await sim.createNode('apps', { tags: [] }) // untagged: not routed, never put to sleep
    await sim.createNode('other', { tags: ['beta'] }) // another host group
    const list = await provider.list(signal())
    assert.deepEqual(
      list.map((b) => [b.id, b.hosts, b.state, b.upstreams]),
      [[a.hostname, ['alpha'], 'running', [`${a.ip}:${provider.config.app_port}`]]],
    )
    const res = await fetch(`http://${a.ip}:${a.port}/`)
    assert.match(await res.text(), new RegExp(`^${a.hostname} pid`))
  })

  it('a wrong token: list and check say the token is wrong (RELIGHT_ERR_PROVIDER_AUTH)', async () => {
    const wrong = new SlicerProvider(slicerConfigSchema.parse({ url: sim.url, token: 'wrong', host_group: 'apps' }), silent)
    try {
      await assert.rejects(wrong.list(signal()), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_AUTH') && /token/.test(e.message))
      const results = await wrong.check(signal())
      assert.equal(results[0]?.ok, false)
      assert.match(results[0]?.message ?? '', /rejected the token \(HTTP 401: missing or invalid bearer token \(unauthorized\)\): set providers\.slicer\.token/)
      const good = await provider.check(signal())
      assert.ok(good.every((r) => r.ok), JSON.stringify(good))
      const typo = new SlicerProvider(slicerConfigSchema.parse({ url: sim.url, token: 'right', host_group: 'aps' }), silent)
      const bad = await typo.check(signal()).finally(() => typo.close())
      assert.match(bad.filter((r) => !r.ok).map((r) => r.message).join('\n'), /host group aps does not exist/)
    } finally {
      await wrong.close()
    }
  })

  it('API down: RELIGHT_ERR_PROVIDER_UNAVAILABLE with a Retry-After, and recovery when it is back', async () => {
    await sim.stopApi()
    try {
      await assert.rejects(provider.list(signal()), (e) => isRelightError(e, 'RELIGHT_ERR_PROVIDER_UNAVAILABLE') && e.context.retryAfter === 5)
      const results = await provider.check(signal())
      assert.equal(results[0]?.ok, false)
      assert.match(results[0]?.message ?? '', /cannot reach the Slicer API .*ECONNREFUSED.*is slicerd running/)
    } finally {
      await sim.startApi()
    }
    assert.ok((await provider.list(signal())).length > 0)
  })

  it('404 on resume: the node is gone, wake rejects with RELIGHT_ERR_BACKEND_NOT_FOUND and a remove event is emitted', async () => {
    const vm = await sim.createNode('apps', { tags: ['gone'] })
    await sim.pause(vm.hostname)
    await provider.list(signal())
    const controller = new AbortController()
    const events: ProviderEvent[] = []
    provider.watch((e) => events.push(e), controller.signal)
    try {
      await sim.deleteNode(vm.hostname)
      await assert.rejects(provider.wake(vm.hostname, signal()), (e) => isRelightError(e, 'RELIGHT_ERR_BACKEND_NOT_FOUND'))
      assert.deepEqual(events, [{ type: 'remove', id: vm.hostname }])
      assert.equal(sim.calls.get('POST /vm/:h/resume'), 1) // the 404 came from the resume call
    } finally {
      controller.abort()
    }
  })

  it('sleep stop is refused for a non-persistent VM (the core then uses fallback_sleep)', async () => {
    const vm = await sim.createNode('apps', { tags: ['ephemeral'] })
    await provider.list(signal())
    await assert.rejects(provider.sleep(vm.hostname, 'stop', signal()), (e) => isRelightError(e, 'RELIGHT_ERR_SLEEP_MODE_UNSUPPORTED'))
    assert.equal(sim.node(vm.hostname)?.status, 'Running')
  })

  it('a closed client refuses work with RELIGHT_ERR_CLOSED; close is idempotent', async () => {
    const client = new SlicerClient(sim.url, 'right')
    await client.close()
    await client.close()
    await assert.rejects(client.listNodes(signal()), (e) => isRelightError(e, 'RELIGHT_ERR_CLOSED'))
  })
})
